"""The one rule for client-supplied request ids (`X-Request-ID`), shared by the API envelope and the proxy.

A client's id is echoed (and forwarded upstream) only when it is 1-128 characters of letters, digits and
`.`, `_`, `:`, `-`: safe in headers and log lines, long enough for UUIDs and trace ids. Anything else is
replaced by a fresh random id.
"""

from __future__ import annotations

import secrets

MAX_REQUEST_ID = 128
_ALLOWED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"


def valid_request_id(value: bytes) -> bool:
    """Whether a client's id may be used as is (no regex: this runs on every proxied request)."""
    return 0 < len(value) <= MAX_REQUEST_ID and not value.translate(None, _ALLOWED)


def new_request_id() -> bytes:
    return secrets.token_hex(8).encode()


def request_id_or_new(value: bytes) -> bytes:
    return value if valid_request_id(value) else new_request_id()
