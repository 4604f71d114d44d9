"""The one authorization decision (REST, hub and proxy call it): a table of who may do what."""

from __future__ import annotations

import pytest

from nekzus.auth.authorize import decide
from nekzus.auth.principal import TRUSTED, Principal

DEVICE = Principal("device", "phone", frozenset({"read:catalog", "read:events"}), token_id="j1")
KEY = Principal("apikey", "key_1", frozenset({"read:*"}))
WRITER = Principal("apikey", "key_2", frozenset({"write:*"}))
USER = Principal("user", "user-admin", frozenset({"access:admin"}), token_id="j2")
BOOT = Principal("bootstrap", "bootstrap")


@pytest.mark.parametrize(
    ("principal", "scopes", "kwargs", "expected"),
    [
        (None, (), {}, (401, "UNAUTHORIZED", False)),
        (None, ("read:events",), {"public": True}, (200, "", False)),
        (TRUSTED, ("access:admin",), {}, (200, "", False)),
        (TRUSTED, (), {"jwt_only": True}, (401, "UNAUTHORIZED", False)),
        (KEY, (), {"jwt_only": True}, (401, "UNAUTHORIZED", False)),
        (DEVICE, (), {"jwt_only": True}, (200, "", False)),
        (BOOT, (), {}, (403, "FORBIDDEN", False)),
        (DEVICE, ("read:events",), {}, (200, "", False)),
        (DEVICE, ("write:routes",), {}, (403, "FORBIDDEN", True)),
        (KEY, ("read:events",), {}, (200, "", False)),
        (KEY, ("write:catalog",), {}, (403, "FORBIDDEN", True)),
        (WRITER, ("write:catalog",), {}, (200, "", False)),
        (WRITER, ("access:admin",), {}, (403, "FORBIDDEN", True)),
        (USER, ("access:admin", "write:x"), {}, (200, "", False)),
    ],
)
def test_decide(
    principal: Principal | None,
    scopes: tuple[str, ...],
    kwargs: dict[str, bool],
    expected: tuple[int, str, bool],
) -> None:
    decision = decide(principal, scopes, **kwargs)
    assert (decision.status, decision.code, decision.audit) == expected
    assert decision.allowed == (expected[0] == 200)
    assert (decision.as_tuple() is None) == decision.allowed
