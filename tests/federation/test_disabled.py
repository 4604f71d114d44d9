"""With federation off, its endpoints answer clearly instead of pretending."""

from __future__ import annotations

from tests.nekzus_server import NekzusServer


def test_disabled_stubs() -> None:
    with NekzusServer() as srv, srv.client() as c:
        st = c.get("/api/v1/federation/status")
        assert st.status_code == 200 and st.json()["enabled"] is False and st.json()["running"] is False
        for method, path in (
            ("GET", "/peers"),
            ("GET", "/peers/x"),
            ("DELETE", "/peers/x"),
            ("POST", "/sync"),
        ):
            r = c.request(method, "/api/v1/federation" + path)
            assert r.status_code == 503, (method, path, r.text)
            assert r.json()["error"]["code"] == "FEDERATION_DISABLED"
