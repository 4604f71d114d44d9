"""The archive: a gzip'd tar holding `manifest.json` first, then the members it lists with their SHA-256.

Reading verifies everything before anything is used: only the listed names, only regular files, sizes and
checksums equal to the manifest. A truncated or tampered archive fails here as BACKUP_CORRUPT.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zlib
from pathlib import Path
from typing import Any

from nekzus.errors import Invalid

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MEMBER_NAMES = ("nexus.db", "secrets.enc")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_archive(dest: Path, manifest: dict[str, Any], members: dict[str, Path]) -> dict[str, Any]:
    """Write atomically (temp + rename), mode 0600: the archive holds password and key hashes."""
    import tarfile  # loaded when a backup is made or read, not at start-up

    manifest = dict(manifest)
    manifest["members"] = {
        name: {"sha256": sha256_file(path), "size": path.stat().st_size} for name, path in members.items()
    }
    body = json.dumps(manifest, indent=2, sort_keys=True).encode()
    tmp = dest.with_name(dest.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mode = len(body), 0o600
        tar.addfile(info, io.BytesIO(body))
        for name, path in members.items():
            tar.add(str(path), arcname=name, recursive=False)
    os.replace(tmp, dest)
    return manifest


def _corrupt(message: str) -> Invalid:
    return Invalid(f"backup archive is corrupt: {message}", code="BACKUP_CORRUPT")


def read_manifest(path: Path) -> dict[str, Any]:
    """Just the manifest (for listings); does not verify the members."""
    import tarfile  # loaded when a backup is made or read, not at start-up

    try:
        with tarfile.open(path, mode="r:gz") as tar:
            member = tar.next()
            if member is None or member.name != MANIFEST or not member.isfile():
                raise _corrupt("the manifest is missing")
            fh = tar.extractfile(member)
            if fh is None:
                raise _corrupt("the manifest is unreadable")
            data = json.loads(fh.read(1 << 20))
    except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError) as exc:
        raise _corrupt(type(exc).__name__) from exc
    if not isinstance(data, dict):
        raise _corrupt("the manifest is not an object")
    return data


def extract_verified(path: Path, dest_dir: Path) -> dict[str, Any]:
    """Unpack into `dest_dir` and check every member against the manifest; return the manifest."""
    import tarfile  # loaded when a backup is made or read, not at start-up

    manifest: dict[str, Any] | None = None
    seen: set[str] = set()
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for member in tar:
                if manifest is None:
                    if member.name != MANIFEST or not member.isfile():
                        raise _corrupt("the manifest must come first")
                    fh = tar.extractfile(member)
                    manifest = json.loads(fh.read(1 << 20)) if fh is not None else None
                    if not isinstance(manifest, dict) or not isinstance(manifest.get("members"), dict):
                        raise _corrupt("the manifest lists no members")
                    continue
                listed = manifest["members"].get(member.name)
                if member.name not in MEMBER_NAMES or listed is None or not member.isfile():
                    raise _corrupt(f"unexpected member {member.name!r}")
                if member.name in seen:
                    raise _corrupt(f"duplicate member {member.name!r}")
                seen.add(member.name)
                src = tar.extractfile(member)
                if src is None:
                    raise _corrupt(f"unreadable member {member.name!r}")
                digest = hashlib.sha256()
                size = 0
                target = dest_dir / member.name
                with open(target, "wb") as out:
                    for chunk in iter(lambda: src.read(1 << 20), b""):  # noqa: B023 - consumed at once
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                if digest.hexdigest() != listed.get("sha256") or size != listed.get("size"):
                    raise _corrupt(f"checksum mismatch for {member.name!r}")
    except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError) as exc:
        raise _corrupt(type(exc).__name__) from exc
    if manifest is None:
        raise _corrupt("empty archive")
    missing = set(manifest["members"]) - seen
    if missing:
        raise _corrupt(f"missing members: {', '.join(sorted(missing))}")
    return manifest
