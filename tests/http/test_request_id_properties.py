"""Property tests for the request-id rule: a client's X-Request-ID is echoed only when it is a short
token of safe characters; anything else is replaced by a fresh id."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from nekzus.http.envelope import request_id_from

SAFE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def scope_with(value: bytes) -> dict[str, object]:
    return {"headers": [(b"x-request-id", value)]}


@given(value=st.binary(max_size=200))
def test_only_safe_ids_are_echoed(value: bytes) -> None:
    chosen = request_id_from(scope_with(value))
    assert SAFE.fullmatch(chosen), chosen
    if chosen != value.decode("latin-1"):
        assert re.fullmatch(r"[0-9a-f]{16}", chosen)


@given(value=st.from_regex(SAFE, fullmatch=True))
def test_safe_ids_are_kept(value: str) -> None:
    assert request_id_from(scope_with(value.encode())) == value


@given(value=st.from_regex(SAFE, fullmatch=True), tail=st.sampled_from(["\n", "\r\n", "\r", " ", "\x00"]))
def test_trailing_control_characters_are_refused(value: str, tail: str) -> None:
    """A trailing newline must not slip through (it would be echoed into a response header)."""
    assert request_id_from(scope_with((value + tail).encode())) != value + tail


def test_missing_header_gets_a_fresh_id() -> None:
    first, second = request_id_from({"headers": []}), request_id_from({"headers": []})
    assert first != second and re.fullmatch(r"[0-9a-f]{16}", first)
