"""Pure-logic edges that real-socket tests cannot reach without waiting minutes: the bootstrap token's
expiry is judged when it is claimed, and the account-wide login lock spares trusted networks."""

from __future__ import annotations

import pytest

from nekzus.auth.pairing import CODE_TTL, PairingStore
from nekzus.auth.passwords import ACCOUNT_LOCK_AFTER, LoginLockout, source_key
from nekzus.errors import NekzusError


def test_bootstrap_expiry_is_judged_at_claim_time() -> None:
    now = [1000.0]
    store = PairingStore(clock=lambda: now[0])
    entry = store.create(lambda code, token, exp: {"bootstrapToken": token})
    token = store.redeem(entry.code, "127.0.0.1")["bootstrapToken"]
    now[0] += CODE_TTL + 1  # the request "started" before expiry, but claims after it
    with pytest.raises(NekzusError) as refused:
        store.claim(token)
    assert refused.value.code == "INVALID_BOOTSTRAP"


def test_claim_is_single_use() -> None:
    store = PairingStore()
    entry = store.create(lambda code, token, exp: {"bootstrapToken": token})
    token = store.redeem(entry.code)["bootstrapToken"]
    assert store.claim(token).kind == "temp"
    with pytest.raises(NekzusError):
        store.claim(token)


def test_account_wide_lock_spares_trusted_sources() -> None:
    lockout = LoginLockout()
    for i in range(ACCOUNT_LOCK_AFTER):
        lockout.failed("owner", f"10.0.{i // 250}.{i % 250}")
    assert lockout.locked_for("owner", "192.0.2.1") > 0
    assert lockout.locked_for("owner", "192.0.2.1", trusted=True) == 0
    assert lockout.locked_for("someone-else", "192.0.2.1") == 0


def test_ipv6_sources_share_their_64() -> None:
    assert source_key("2001:db8:1:2::1") == source_key("2001:db8:1:2:ffff::9")
    assert source_key("2001:db8:1:3::1") != source_key("2001:db8:1:2::1")
    assert source_key("::ffff:192.0.2.7") == "192.0.2.7"
