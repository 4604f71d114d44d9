"""Secrets that live outside the database, sealed with the user's backup passphrase.

scrypt turns the passphrase into an AES-256-GCM key; the salt and nonce travel with the ciphertext. Without
a passphrase these files are simply not put in the archive.
"""

from __future__ import annotations

import base64
import json
import os

from nekzus.errors import Invalid

# `cryptography` is imported by the functions below: only a backup or restore with a passphrase loads it.

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


def _key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())


def seal(files: dict[str, bytes], passphrase: str) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    salt, nonce = os.urandom(16), os.urandom(12)
    plain = json.dumps({name: base64.b64encode(data).decode() for name, data in files.items()}).encode()
    sealed = AESGCM(_key(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)).encrypt(
        nonce, plain, b"nekzus-backup"
    )
    envelope = {
        "kdf": "scrypt",
        "n": SCRYPT_N,
        "r": SCRYPT_R,
        "p": SCRYPT_P,
        "salt": base64.b64encode(salt).decode(),
        "nonce": base64.b64encode(nonce).decode(),
        "cipher": "AES-256-GCM",
        "data": base64.b64encode(sealed).decode(),
    }
    return json.dumps(envelope).encode()


def unseal(blob: bytes, passphrase: str) -> dict[str, bytes]:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        env = json.loads(blob)
        key = _key(passphrase, base64.b64decode(env["salt"]), int(env["n"]), int(env["r"]), int(env["p"]))
        plain = AESGCM(key).decrypt(
            base64.b64decode(env["nonce"]), base64.b64decode(env["data"]), b"nekzus-backup"
        )
        files = json.loads(plain)
        return {str(name): base64.b64decode(data) for name, data in files.items()}
    except (InvalidTag, ValueError, KeyError, TypeError) as exc:
        raise Invalid(
            "the backup's secrets cannot be decrypted with the configured passphrase",
            code="BACKUP_DECRYPT_FAILED",
        ) from exc
