"""Browser sessions for the dashboard.

A session maps an opaque random id (kept by the browser in an HttpOnly cookie) to the user token issued at
login and a per-session CSRF token. The user token never reaches page scripts. A session ends at logout, when
it has been idle longer than the configured timeout, or when its user token stops being accepted.

Sessions live in memory on purpose: a restart signs everyone out, which is the safe failure for a cookie
credential, and nothing secret is written to disk. With several worker processes the table lives in memory
they share (`share`), since a browser's connections may be served by different workers.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from nekzus.domains import Key

SESSION_COOKIE = "nekzus_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_SESSIONS = 1000


@dataclass(slots=True)
class Session:
    id: str
    token: str
    username: str
    csrf: str
    created: float
    last_seen: float = field(default=0.0)


# created, last seen, CSRF token, user name, user token
Record = tuple[float, float, str, str, str]


class SharedTable(Protocol):
    """A session table shared by worker processes (`nekzus.workers.shared.SharedSessions`)."""

    def put(self, session_id: str, record: Record, idle: float, now: float) -> bool: ...

    def get(self, session_id: str) -> Record | None: ...

    def touch(self, session_id: str, now: float) -> None: ...

    def drop(self, session_id: str) -> None: ...

    def count(self, idle: float, now: float) -> int: ...


class SessionStore:
    """In-memory session table with an idle timeout (seconds)."""

    def __init__(self, idle_timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_timeout = idle_timeout
        self._clock = clock  # CLOCK_MONOTONIC: one clock for every process of the machine
        self._sessions: dict[str, Session] = {}
        self.shared: SharedTable | None = None

    def share(self, table: SharedTable) -> None:
        """Keep the sessions in `table` (memory shared by the worker processes) from now on."""
        self.shared = table

    def create(self, token: str, username: str) -> Session:
        if self.shared is not None:
            return self._create_shared(token, username)
        self._prune()
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions.values(), key=lambda s: s.last_seen)
            self._sessions.pop(oldest.id, None)
        now = self._clock()
        session = Session(
            id=secrets.token_urlsafe(32),
            token=token,
            username=username,
            csrf=secrets.token_urlsafe(32),
            created=now,
            last_seen=now,
        )
        self._sessions[session.id] = session
        return session

    def _create_shared(self, token: str, username: str) -> Session:
        assert self.shared is not None
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), token, username, secrets.token_urlsafe(32), now, now)
        record = (now, now, session.csrf, username, token)
        if not self.shared.put(session.id, record, self.idle_timeout, now):
            raise ValueError("session does not fit the shared table")
        return session

    def _get_shared(self, session_id: str, touch: bool) -> Session | None:
        assert self.shared is not None
        record = self.shared.get(session_id)
        if record is None:
            return None
        created, last_seen, csrf, username, token = record
        now = self._clock()
        if now - last_seen > self.idle_timeout:
            self.shared.drop(session_id)
            return None
        if touch:
            self.shared.touch(session_id, now)
        return Session(session_id, token, username, csrf, created, now)

    def get(self, session_id: str, *, touch: bool = True) -> Session | None:
        """The live session for this id (refreshing its idle clock), or None if unknown or idle too long."""
        if self.shared is not None:
            return self._get_shared(session_id, touch)
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = self._clock()
        if now - session.last_seen > self.idle_timeout:
            self._sessions.pop(session_id, None)
            return None
        if touch:
            session.last_seen = now
        return session

    def token_from_cookies(self, cookies: Mapping[str, str]) -> str:
        """The user token behind the session cookie among `cookies` ("" without a live session).

        Used by the WebSocket hub: the upgrade carries the cookie, the page's scripts never see the token.
        Reading it does not count as activity (an open socket must not keep an idle session alive).
        """
        session_id = cookies.get(SESSION_COOKIE)
        session = self.get(session_id, touch=False) if session_id else None
        return session.token if session is not None else ""

    def drop(self, session_id: str) -> Session | None:
        if self.shared is not None:
            session = self._get_shared(session_id, touch=False)
            self.shared.drop(session_id)
            return session
        return self._sessions.pop(session_id, None)

    def csrf_ok(self, session: Session, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(session.csrf, presented or "")

    def __len__(self) -> int:
        if self.shared is not None:
            return self.shared.count(self.idle_timeout, self._clock())
        return len(self._sessions)

    def _prune(self) -> None:
        now = self._clock()
        for sid in [s.id for s in self._sessions.values() if now - s.last_seen > self.idle_timeout]:
            self._sessions.pop(sid, None)


# The credential check (`nekzus.api.security`) finds the store under this key when the dashboard is on.
UI_SESSIONS: Key[SessionStore] = Key("ui_sessions")
