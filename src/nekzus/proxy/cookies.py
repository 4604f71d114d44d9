"""Session cookies for mobile webviews (`persistCookies` routes), kept per (device, app).

Values are encrypted at rest with AES-256-GCM (random 12-byte nonce prepended); the key lives in
`<data dir>/cookie_key`, not in the database that backups copy. Reads come from memory after the first
load, so the proxy does no database work per request. A cookie expired or deleted by the app
(`Max-Age<=0`) is removed on its own (ORIG deleted every cookie of the app).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, select

from nekzus.catalog.models import SessionCookieRow
from nekzus.events.types import EventType
from nekzus.secretfiles import load_or_create
from nekzus.services import Services

log = logging.getLogger("nekzus.proxy.cookies")

MAX_COOKIES_PER_APP = 64
Jar = dict[str, tuple[str, float | None, float]]  # name -> (value, expires_at, updated_at)


def parse_set_cookie(value: str) -> tuple[str, str, float | None, bool] | None:
    """(name, value, expires_at, delete) for one Set-Cookie header value."""
    parts = value.split(";")
    name, sep, val = parts[0].partition("=")
    name = name.strip()
    if not sep or not name:
        return None
    expires: float | None = None
    max_age: int | None = None
    for attr in parts[1:]:
        key, _, arg = attr.strip().partition("=")
        key = key.lower()
        if key == "max-age":
            try:
                max_age = int(arg.strip())
            except ValueError:
                continue
        elif key == "expires":
            try:
                expires = parsedate_to_datetime(arg.strip()).timestamp()
            except (TypeError, ValueError):
                continue
    now = time.time()
    if max_age is not None:
        if max_age <= 0:
            return name, "", None, True
        expires = now + max_age
    if expires is not None and expires <= now:
        return name, "", None, True
    return name, val.strip(), expires, False


class SessionCookieStore:
    def __init__(self, services: Services) -> None:
        self.services = services
        secret = load_or_create(services.data_dir / "cookie_key")
        self._aead = AESGCM(hashlib.sha256(secret.encode()).digest())
        self._jars: dict[tuple[str, str], Jar] = {}

    def start(self) -> None:
        self.services.bus.subscribe(self._on_revoked, {EventType.DEVICE_REVOKED})

    def _on_revoked(self, event: Any) -> None:
        data = event.data if isinstance(event.data, dict) else {}
        device_id = data.get("deviceId") or data.get("device_id") or event.device_id
        if device_id:
            self.services.spawn(self.clear(str(device_id)), "session-cookies-revoke")

    def _encrypt(self, device_id: str, app_id: str, name: str, value: str) -> bytes:
        nonce = os.urandom(12)
        aad = f"{device_id}\x00{app_id}\x00{name}".encode()
        return nonce + self._aead.encrypt(nonce, value.encode(), aad)

    def _decrypt(self, device_id: str, app_id: str, name: str, blob: bytes) -> str:
        aad = f"{device_id}\x00{app_id}\x00{name}".encode()
        return self._aead.decrypt(blob[:12], blob[12:], aad).decode()

    async def _jar(self, device_id: str, app_id: str) -> Jar:
        key = (device_id, app_id)
        jar = self._jars.get(key)
        if jar is None:
            jar = {}
            async with self.services.db.session() as session:
                rows = await session.scalars(
                    select(SessionCookieRow).where(
                        SessionCookieRow.device_id == device_id, SessionCookieRow.app_id == app_id
                    )
                )
                for row in rows.all():
                    try:
                        value = self._decrypt(device_id, app_id, row.name, row.value)
                    except Exception:
                        log.warning("dropping an undecryptable stored cookie for app %s", app_id)
                        continue
                    jar[row.name] = (value, row.expires_at, row.updated_at)
            self._jars[key] = jar
        return jar

    async def cookie_header(self, device_id: str, app_id: str) -> dict[str, str]:
        jar = await self._jar(device_id, app_id)
        now = time.time()
        return {name: v for name, (v, exp, _u) in jar.items() if exp is None or exp > now}

    def capture(self, device_id: str, app_id: str, set_cookies: list[bytes]) -> None:
        """Remember cookies from an upstream response (memory now, database in the background)."""
        jar = self._jars.setdefault((device_id, app_id), {})
        changes: list[tuple[str, str, float | None, bool]] = []
        for raw in set_cookies:
            parsed = parse_set_cookie(raw.decode("latin-1"))
            if parsed is None:
                continue
            name, value, expires, remove = parsed
            if remove:
                jar.pop(name, None)
            elif name in jar or len(jar) < MAX_COOKIES_PER_APP:
                jar[name] = (value, expires, time.time())
            else:
                continue
            changes.append(parsed)
        if changes:
            self.services.spawn(self._persist(device_id, app_id, changes), "session-cookies-save")

    async def _persist(
        self, device_id: str, app_id: str, changes: list[tuple[str, str, float | None, bool]]
    ) -> None:
        async with self.services.db.session() as session:
            for name, value, expires, remove in changes:
                row = await session.scalar(
                    select(SessionCookieRow).where(
                        SessionCookieRow.device_id == device_id,
                        SessionCookieRow.app_id == app_id,
                        SessionCookieRow.name == name,
                    )
                )
                if remove:
                    if row is not None:
                        await session.delete(row)
                    continue
                blob = self._encrypt(device_id, app_id, name, value)
                if row is None:
                    session.add(
                        SessionCookieRow(
                            device_id=device_id,
                            app_id=app_id,
                            name=name,
                            value=blob,
                            expires_at=expires,
                            updated_at=time.time(),
                        )
                    )
                else:
                    row.value = blob
                    row.expires_at = expires
                    row.updated_at = time.time()

    async def summaries(self, device_id: str) -> list[dict[str, Any]]:
        now = time.time()
        async with self.services.db.session() as session:
            rows = (
                await session.scalars(select(SessionCookieRow).where(SessionCookieRow.device_id == device_id))
            ).all()
        by_app: dict[str, list[SessionCookieRow]] = {}
        for row in rows:
            if row.expires_at is None or row.expires_at > now:
                by_app.setdefault(row.app_id, []).append(row)
        out = []
        for app_id in sorted(by_app):
            items = by_app[app_id]
            entry: dict[str, Any] = {
                "appId": app_id,
                "cookieCount": len(items),
                "lastUpdated": _rfc3339(max(r.updated_at for r in items)),
            }
            expiries = [r.expires_at for r in items if r.expires_at is not None]
            if expiries:
                entry["expiresAt"] = _rfc3339(min(expiries))
            out.append(entry)
        return out

    async def clear(self, device_id: str, app_id: str | None = None) -> None:
        async with self.services.db.session() as session:
            stmt = delete(SessionCookieRow).where(SessionCookieRow.device_id == device_id)
            if app_id is not None:
                stmt = stmt.where(SessionCookieRow.app_id == app_id)
            await session.execute(stmt)
        for key in [k for k in self._jars if k[0] == device_id and (app_id is None or k[1] == app_id)]:
            del self._jars[key]


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
