"""Peer authentication: every federation message is HMAC-signed with a key derived from `cluster_secret`.

A signature covers the protocol version, method, path, sender id, a timestamp, a random nonce and a digest of
the body (or of the asserted caller identity for proxied requests). The receiver refuses messages outside a
short time window, forged or wrong-secret signatures, and any nonce it has already seen (replays). Answers are
signed too, bound to the request's nonce, so the caller knows the other side holds the secret as well.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from nekzus.errors import Unauthorized

MAX_SKEW = 30.0
NONCE_CAPACITY = 100_000

H_PEER = "X-Nekzus-Peer"
H_TIME = "X-Nekzus-Timestamp"
H_NONCE = "X-Nekzus-Nonce"
H_SIG = "X-Nekzus-Signature"
H_REPLY = "X-Nekzus-Reply-Signature"
H_IDENTITY = "X-Nekzus-Identity"


def derive_key(cluster_secret: str) -> bytes:
    """A dedicated signing key, so the raw secret never keys anything directly."""
    return hmac.new(cluster_secret.encode(), b"nekzus-federation-v1/hmac", hashlib.sha256).digest()


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _message(method: str, path: str, peer: str, ts: str, nonce: str, digest: str) -> bytes:
    return "\n".join(("nekzus-fed-v1", method.upper(), path, peer, ts, nonce, digest)).encode()


def sign_request(
    key: bytes,
    *,
    peer_id: str,
    method: str,
    path: str,
    digest: str,
    ts: float | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Headers that authenticate one request."""
    stamp = str(int(ts if ts is not None else time.time()))
    once = nonce or secrets.token_hex(16)
    sig = hmac.new(key, _message(method, path, peer_id, stamp, once, digest), hashlib.sha256).hexdigest()
    return {H_PEER: peer_id, H_TIME: stamp, H_NONCE: once, H_SIG: sig}


def sign_reply(key: bytes, *, nonce: str, responder: str, body: bytes) -> str:
    msg = "\n".join(("nekzus-fed-v1-reply", nonce, responder, body_digest(body))).encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def verify_reply(key: bytes, *, nonce: str, responder: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign_reply(key, nonce=nonce, responder=responder, body=body), signature or "")


def encode_identity(identity: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(dict(identity), sort_keys=True).encode()).decode()


def decode_identity(value: str) -> dict[str, Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(value.encode()))
    except (ValueError, TypeError):
        raise Unauthorized("Malformed identity assertion", code="FEDERATION_AUTH_FAILED") from None
    if not isinstance(data, dict):
        raise Unauthorized("Malformed identity assertion", code="FEDERATION_AUTH_FAILED")
    return data


def identity_digest(value: str) -> str:
    return "identity:" + hashlib.sha256(value.encode()).hexdigest()


class AuthFailure(Unauthorized):
    """A federation message that does not prove knowledge of the cluster secret (always audited)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, code="FEDERATION_AUTH_FAILED")
        self.reason = reason


class Verifier:
    """Checks request signatures and remembers nonces for as long as their timestamp stays acceptable."""

    def __init__(self, key: bytes, *, max_skew: float = MAX_SKEW) -> None:
        self.key = key
        self.max_skew = max_skew
        self._seen: OrderedDict[str, float] = OrderedDict()

    def verify(self, headers: Mapping[str, str], *, method: str, path: str, digest: str) -> str:
        """The authenticated sender's peer id, or AuthFailure."""
        peer = headers.get(H_PEER) or ""
        stamp = headers.get(H_TIME) or ""
        nonce = headers.get(H_NONCE) or ""
        sig = headers.get(H_SIG) or ""
        if not (peer and stamp and nonce and sig) or len(nonce) > 128 or len(peer) > 64:
            raise AuthFailure("missing", "Federation signature missing")
        try:
            when = int(stamp)
        except ValueError:
            raise AuthFailure("malformed", "Federation timestamp malformed") from None
        now = time.time()
        if abs(now - when) > self.max_skew:
            raise AuthFailure("expired", "Federation message outside the accepted time window")
        expected = hmac.new(self.key, _message(method, path, peer, stamp, nonce, digest), hashlib.sha256)
        if not hmac.compare_digest(expected.hexdigest(), sig):
            raise AuthFailure("bad_signature", "Federation signature invalid (wrong cluster secret?)")
        # Only authentic messages reach the nonce cache, so forgers cannot flood it.
        self._expire(now)
        token = f"{peer}:{nonce}"
        if token in self._seen:
            raise AuthFailure("replayed", "Federation message replayed")
        self._seen[token] = when + self.max_skew
        while len(self._seen) > NONCE_CAPACITY:
            self._seen.popitem(last=False)
        return peer

    def _expire(self, now: float) -> None:
        seen = self._seen
        while seen:
            _token, until = next(iter(seen.items()))
            if until >= now - self.max_skew:
                break
            seen.popitem(last=False)
