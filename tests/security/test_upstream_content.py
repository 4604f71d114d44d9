"""What Nekzus takes from an upstream it proxies: favicons only as raster images served inert, and
health-check redirects only within the upstream's own origin (no blind SSRF with a status oracle)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from aiohttp import web

from tests.nekzus_server import NekzusServer
from tests.proxy.conftest import PNG
from tests.security.upstream import ScriptedUpstream

SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>'


def route(app_id: str, to: str, **extra: object) -> dict[str, object]:
    return {"id": f"r_{app_id}", "app_id": app_id, "path_base": f"/apps/{app_id}/", "to": to, **extra}


def test_svg_favicon_is_refused_and_raster_is_served_inert(make_server: Callable[..., NekzusServer]) -> None:
    async def svg(_r: web.Request) -> web.Response:
        return web.Response(body=SVG, content_type="image/svg+xml")

    async def png_labelled_svg(_r: web.Request) -> web.Response:
        return web.Response(body=SVG, content_type="image/png")  # lying about its type

    async def png(_r: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    with ScriptedUpstream() as evil, ScriptedUpstream() as liar, ScriptedUpstream() as good:
        evil.handlers["/favicon.ico"] = svg
        liar.handlers["/favicon.ico"] = png_labelled_svg
        good.handlers["/favicon.ico"] = png
        srv = make_server(
            {
                "routes": [route("evil", evil.url), route("liar", liar.url), route("good", good.url)],
                "health_checks": {"enabled": False},
            }
        )
        with srv.client() as c:
            assert c.get("/api/v1/apps/evil/favicon").status_code == 404
            assert c.get("/api/v1/apps/liar/favicon").status_code == 404
            r = c.get("/api/v1/apps/good/favicon")
    assert r.status_code == 200 and r.content == PNG
    assert r.headers["content-type"] == "image/png"
    assert r.headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert r.headers["cache-control"].startswith("private")
    assert r.headers["x-content-type-options"] == "nosniff"


def test_health_checks_follow_redirects_only_within_the_origin(
    make_server: Callable[..., NekzusServer],
) -> None:
    with ScriptedUpstream() as app, ScriptedUpstream() as elsewhere:

        async def away(_r: web.Request) -> web.Response:
            raise web.HTTPFound(elsewhere.url + "/internal")

        async def home(_r: web.Request) -> web.Response:
            raise web.HTTPFound("/ok")

        async def ok(_r: web.Request) -> web.Response:
            return web.Response(text="ok")

        app.handlers.update({"/away": away, "/home": home, "/ok": ok})
        elsewhere.handlers["/internal"] = ok
        srv = make_server(
            {
                "routes": [
                    route("leaky", app.url, health_check_path="/away"),
                    route("local", app.url, health_check_path="/home"),
                ],
                "health_checks": {"interval": "200ms", "unhealthy_threshold": 1},
            }
        )

        def statuses() -> dict[str, str]:
            with srv.client() as c:
                routes = c.get("/api/v1/routes").json()
            return {r["appId"]: r["healthInfo"]["status"] for r in routes}

        deadline = time.monotonic() + 15
        seen: dict[str, str] = {}
        while time.monotonic() < deadline:
            seen = statuses()
            if seen.get("leaky") == "unhealthy" and seen.get("local") == "healthy":
                break
            time.sleep(0.1)
        assert seen == {"leaky": "unhealthy", "local": "healthy"}
        assert app.hits.count("/away") >= 1
        assert elsewhere.hits == []  # never followed off the upstream's origin
        with httpx.Client() as c:  # the other origin answers, so only the rule kept us away
            assert c.get(elsewhere.url + "/internal").status_code == 200
