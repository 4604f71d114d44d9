"""Session cookies for mobile webviews (`persistCookies` routes), kept per (device, app).

Values are encrypted at rest with AES-256-GCM (random 12-byte nonce prepended); the key lives in
`<data dir>/cookie_key`, not in the database that backups copy. Reads come from memory after the first
load, so the proxy does no database work per request. Writes go to memory at once and to the database
behind, in batches: the latest change per cookie is kept until one background flush writes all pending
changes in one transaction (at most one flush runs at a time, `FLUSH_DELAY` after the first change, and
the rest at shutdown). A cookie expired or deleted by the app (`Max-Age<=0`) is removed on its own,
not the app's other cookies.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, bindparam, delete, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from nekzus.catalog.models import proxy_session_cookies as cookies_table
from nekzus.events import EventBus
from nekzus.events.types import EventType
from nekzus.secretfiles import load_or_create
from nekzus.store import Database
from nekzus.timefmt import rfc3339

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger("nekzus.proxy.cookies")

MAX_COOKIES_PER_APP = 64
FLUSH_DELAY = 0.25  # seconds changes gather before one transaction writes them
RETRY_DELAY = 5.0  # after a failed write (storage unavailable), before the next try
Jar = dict[str, tuple[str, float | None, float]]  # name -> (value, expires_at, updated_at)
Change = tuple[str, float | None, bool]  # (value, expires_at, delete)
Spawn = Callable[[Awaitable[Any], str], "asyncio.Task[Any]"]


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
    def __init__(self, db: Database, bus: EventBus, spawn: Spawn, data_dir: Path) -> None:
        self.db = db
        self.bus = bus
        self.spawn = spawn
        self._key_file = data_dir / "cookie_key"
        self._aead_: AESGCM | None = None
        self._jars: dict[tuple[str, str], Jar] = {}
        # Written behind: the latest change per (device, app, cookie name), and the one flush task.
        self._pending: dict[tuple[str, str, str], Change] = {}
        self._flusher: asyncio.Task[Any] | None = None
        self._writing = False

    @property
    def _aead(self) -> AESGCM:
        """The cipher sealing stored cookies: `cryptography` loads when a first cookie is sealed or opened,
        not with an idle server."""
        if self._aead_ is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            secret = load_or_create(self._key_file)
            self._aead_ = AESGCM(hashlib.sha256(secret.encode()).digest())
        return self._aead_

    def start(self) -> None:
        load_or_create(self._key_file)  # the key exists from the first start on, as before
        self.bus.subscribe(self._on_revoked, {EventType.DEVICE_REVOKED})

    async def stop(self) -> None:
        """Write what is still pending (shutdown)."""
        await self.flush()

    def _on_revoked(self, event: Any) -> None:
        data = event.data if isinstance(event.data, dict) else {}
        device_id = data.get("deviceId") or data.get("device_id") or event.device_id
        if device_id:
            self.spawn(self.clear(str(device_id)), "session-cookies-revoke")

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
            t = cookies_table
            rows = await self.db.rows(
                select(t.c.name, t.c.value, t.c.expires_at, t.c.updated_at).where(
                    t.c.device_id == device_id, t.c.app_id == app_id
                )
            )
            for row in rows:
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
        changed = False
        pending = self._pending
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
            pending[(device_id, app_id, name)] = (value, expires, remove)
            changed = True
        if changed:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = self.spawn(self._flush_later(), "session-cookies-flush")

    async def _flush_later(self, delay: float = FLUSH_DELAY) -> None:
        await asyncio.sleep(delay)
        await self._write_pending()

    async def flush(self) -> None:
        """Write every pending change now (waits for a flush already under way first)."""
        flusher = self._flusher
        if flusher is not None and not flusher.done() and flusher is not asyncio.current_task():
            if not self._writing:
                flusher.cancel()  # still waiting for its batch to fill: write now instead
            await asyncio.wait([flusher])
        await self._write_pending()

    async def _write_pending(self) -> None:
        """One transaction for everything pending; changes made meanwhile wait for the next batch."""
        batch, self._pending = self._pending, {}
        if not batch:
            return
        self._writing = True
        try:
            await self._write_batch(batch)
        except Exception:
            log.warning("storing %d session cookie change(s) failed; retrying", len(batch), exc_info=True)
            for key, change in batch.items():
                self._pending.setdefault(key, change)
            self._flusher = self.spawn(self._flush_later(RETRY_DELAY), "session-cookies-flush")
            return
        finally:
            self._writing = False
        if self._pending:
            self._flusher = self.spawn(self._flush_later(), "session-cookies-flush")

    async def _write_batch(self, batch: dict[tuple[str, str, str], Change]) -> None:
        """Upsert the stored cookies and delete the removed ones, in one transaction."""
        t = cookies_table
        now = time.time()
        removed = [{"d": d, "a": a, "n": n} for (d, a, n), (_v, _e, remove) in batch.items() if remove]
        stored = [
            {
                "device_id": d,
                "app_id": a,
                "name": n,
                "value": self._encrypt(d, a, n, value),
                "expires_at": expires,
                "updated_at": now,
            }
            for (d, a, n), (value, expires, remove) in batch.items()
            if not remove
        ]
        async with self.db.transaction() as tx:
            if removed:
                await tx.execute(
                    delete(t).where(
                        t.c.device_id == bindparam("d"),
                        t.c.app_id == bindparam("a"),
                        t.c.name == bindparam("n"),
                    ),
                    removed,
                )
            if stored:
                upsert = sqlite_insert(t)
                await tx.execute(
                    upsert.on_conflict_do_update(
                        index_elements=["device_id", "app_id", "name"],
                        set_={
                            "value": upsert.excluded.value,
                            "expires_at": upsert.excluded.expires_at,
                            "updated_at": upsert.excluded.updated_at,
                        },
                    ),
                    stored,
                )

    async def summaries(self, device_id: str) -> list[dict[str, Any]]:
        now = time.time()
        t = cookies_table
        rows = await self.db.rows(
            select(t.c.app_id, t.c.expires_at, t.c.updated_at).where(t.c.device_id == device_id)
        )
        by_app: dict[str, list[Row[Any]]] = {}
        for row in rows:
            if row.expires_at is None or row.expires_at > now:
                by_app.setdefault(row.app_id, []).append(row)
        out = []
        for app_id in sorted(by_app):
            items = by_app[app_id]
            entry: dict[str, Any] = {
                "appId": app_id,
                "cookieCount": len(items),
                "lastUpdated": rfc3339(max(r.updated_at for r in items)),
            }
            expiries = [r.expires_at for r in items if r.expires_at is not None]
            if expiries:
                entry["expiresAt"] = rfc3339(min(expiries))
            out.append(entry)
        return out

    async def clear(self, device_id: str, app_id: str | None = None) -> None:
        def matches(key: tuple[str, ...]) -> bool:
            return key[0] == device_id and (app_id is None or key[1] == app_id)

        for key in [k for k in self._pending if matches(k)]:
            del self._pending[key]
        flusher = self._flusher
        if flusher is not None and not flusher.done() and flusher is not asyncio.current_task():
            # A batch being written may hold this device's cookies: let it land before deleting.
            await asyncio.wait([flusher])
        stmt = delete(cookies_table).where(cookies_table.c.device_id == device_id)
        if app_id is not None:
            stmt = stmt.where(cookies_table.c.app_id == app_id)
        await self.db.execute(stmt)
        for jar_key in [k for k in self._jars if matches(k)]:
            del self._jars[jar_key]
