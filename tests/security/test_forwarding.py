"""Behind a trusted proxy that appends its own X-Forwarded-For line, a client cannot pick its address
(and with it the trusted network's admin rights or a fresh rate-limit bucket)."""

from __future__ import annotations

from collections.abc import Callable

from tests.nekzus_server import NekzusServer


def test_forged_first_line_does_not_make_a_remote_client_trusted(
    make_server: Callable[..., NekzusServer],
) -> None:
    srv = make_server({"server": {"trusted_proxies": ["127.0.0.0/8"]}})
    with srv.client() as c:
        assert c.get("/api/v1/apikeys").status_code == 200  # the proxy host itself is trusted
        forged = [("X-Forwarded-For", "127.0.0.1"), ("X-Forwarded-For", "203.0.113.9")]
        assert c.get("/api/v1/apikeys", headers=forged).status_code == 401
        one_line = [("X-Forwarded-For", "127.0.0.1, 203.0.113.9")]
        assert c.get("/api/v1/apikeys", headers=one_line).status_code == 401
        broken = [("X-Forwarded-For", "not-an-ip"), ("X-Real-IP", "127.0.0.1")]
        assert c.get("/api/v1/apikeys", headers=broken).status_code == 401
