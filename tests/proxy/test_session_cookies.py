"""The session-cookie store on real storage: encrypted at rest, round trip, per-cookie deletion, revocation.

The proxy hands it cookies only for device principals (identity branch); here the store is driven directly.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from nekzus.config import Config
from nekzus.events import Event
from nekzus.proxy.cookies import SessionCookieStore, parse_set_cookie
from nekzus.services import Services


def _services(tmp_path: Path) -> Services:
    config = Config.model_validate({"storage": {"database_path": str(tmp_path / "nexus.db")}})
    return Services.build(config, base_url="http://127.0.0.1")


def _store(services: Services) -> SessionCookieStore:
    return SessionCookieStore(services.db, services.bus, services.spawn, services.data_dir)


def test_cookie_round_trip_encrypted_at_rest(tmp_path: Path) -> None:
    async def run() -> None:
        services = _services(tmp_path)
        await services.db.open()
        store = _store(services)
        store.capture(
            "dev1",
            "grafana",
            [b"grafana_session=s3cr3t-value; Path=/; Max-Age=3600; HttpOnly", b"theme=dark; Path=/"],
        )
        store.capture("dev2", "grafana", [b"grafana_session=other; Path=/"])
        await asyncio.gather(*list(services._tasks))
        raw = (
            sqlite3.connect(tmp_path / "nexus.db")
            .execute("SELECT value FROM proxy_session_cookies")
            .fetchall()
        )
        assert raw and all(b"s3cr3t-value" not in bytes(v[0]) for v in raw)
        # A fresh store (as after a restart) reads and decrypts them.
        again = _store(services)
        assert await again.cookie_header("dev1", "grafana") == {
            "grafana_session": "s3cr3t-value",
            "theme": "dark",
        }
        summary = await again.summaries("dev1")
        assert (
            summary[0]["appId"] == "grafana" and summary[0]["cookieCount"] == 2 and "expiresAt" in summary[0]
        )
        # Max-Age=0 deletes that cookie only (not all of the app's cookies, as the old service did).
        again.capture("dev1", "grafana", [b"theme=; Max-Age=0"])
        await asyncio.gather(*list(services._tasks))
        third = _store(services)
        assert await third.cookie_header("dev1", "grafana") == {"grafana_session": "s3cr3t-value"}
        # Revoking a device drops its cookies.
        third.start()
        services.bus.publish(Event("device_revoked", {"deviceId": "dev1"}))
        await asyncio.gather(*list(services._tasks))
        assert await _store(services).summaries("dev1") == []
        assert await _store(services).cookie_header("dev2", "grafana") == {"grafana_session": "other"}
        key = tmp_path / "cookie_key"
        assert key.exists() and (key.stat().st_mode & 0o777) == 0o600
        await services.db.close()

    asyncio.run(run())


def test_parse_set_cookie() -> None:
    assert parse_set_cookie("a=b; Path=/") == ("a", "b", None, False)
    parsed = parse_set_cookie("a=b; Max-Age=10")
    assert parsed is not None
    name, value, expires, delete = parsed
    assert (name, value, delete) == ("a", "b", False) and expires is not None and expires > time.time()
    expired = parse_set_cookie("a=b; Expires=Thu, 01 Jan 1970 00:00:00 GMT")
    assert expired is not None and expired[3] is True
    assert parse_set_cookie("garbage") is None
