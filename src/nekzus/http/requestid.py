"""The one rule for client-supplied request ids (`X-Request-ID`), shared by the API envelope and the proxy.

A client's id is echoed (and forwarded upstream) only when it is 1-128 characters of letters, digits and
`.`, `_`, `:`, `-`: safe in headers and log lines, long enough for UUIDs and trace ids. Anything else is
replaced by a fresh random id.
"""

from __future__ import annotations

import os

MAX_REQUEST_ID = 128
# Fresh ids are cut from one batch of random bytes: a `getrandom` system call per request cost more than
# the rest of making the id. The batch is dropped in a forked child, so workers never share ids.
_BATCH = 512
_fresh: list[bytes] = []
_ALLOWED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"


def valid_request_id(value: bytes) -> bool:
    """Whether a client's id may be used as is (no regex: this runs on every proxied request)."""
    return 0 < len(value) <= MAX_REQUEST_ID and not value.translate(None, _ALLOWED)


def new_request_id() -> bytes:
    """16 hex digits (64 random bits)."""
    if not _fresh:
        batch = os.urandom(8 * _BATCH).hex().encode()
        _fresh.extend(batch[i : i + 16] for i in range(0, len(batch), 16))
    return _fresh.pop()


os.register_at_fork(after_in_child=_fresh.clear)


def request_id_or_new(value: bytes) -> bytes:
    return value if valid_request_id(value) else new_request_id()
