"""Rate-limit buckets: only a credential that validates gets its own; everything else shares the
caller's address bucket (an IPv6 caller's whole /64)."""

from __future__ import annotations

from collections.abc import Callable

from nekzus.http.ratelimit import address_key
from tests.events.conftest import create_api_key
from tests.nekzus_server import NekzusServer


def test_dead_credentials_share_the_address_bucket(make_server: Callable[..., NekzusServer]) -> None:
    first = make_server()
    live = create_api_key(first, ["read:catalog"], name="live")
    dead = [create_api_key(first, ["read:catalog"], name=f"dead{n}") for n in range(4)]
    with first.client() as c:
        for item in c.get("/api/v1/apikeys").json():
            if item["name"].startswith("dead"):
                assert c.delete(f"/api/v1/apikeys/{item['id']}").status_code in (200, 204)
    first.stop()
    srv = make_server(
        {"auth": {"local_networks": []}, "rate_limits": {"general": {"rate": "1/min", "burst": 3}}},
        data_dir=first.data_dir,
        rate_limits=True,
    )
    with srv.client() as c:
        statuses = [c.get("/api/v1/apps", headers={"X-API-Key": key}).status_code for key in dead]
        # Each revoked key is refused, and they all draw from the one address bucket: the 4th is limited.
        assert statuses == [401, 401, 401, 429], statuses
        # A valid key has its own bucket, untouched by the dead ones.
        assert c.get("/api/v1/apps", headers={"X-API-Key": live}).status_code == 200


def test_ipv6_callers_are_bucketed_by_slash_64() -> None:
    same = address_key("2001:db8:1:2:aaaa::1")
    assert same == address_key("2001:db8:1:2:ffff::9") == "ip:2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("192.0.2.7") == "ip:192.0.2.7"
