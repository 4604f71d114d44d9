"""Browser sessions for the dashboard.

A session maps an opaque random id (kept by the browser in an HttpOnly cookie) to the user token issued at
login and a per-session CSRF token. The user token never reaches page scripts. A session ends at logout, when
it has been idle longer than the configured timeout, or when its user token stops being accepted.

Sessions live in memory on purpose: a restart signs everyone out, which is the safe failure for a cookie
credential, and nothing secret is written to disk.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

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


class SessionStore:
    """In-memory session table with an idle timeout (seconds)."""

    def __init__(self, idle_timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_timeout = idle_timeout
        self._clock = clock
        self._sessions: dict[str, Session] = {}

    def create(self, token: str, username: str) -> Session:
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

    def get(self, session_id: str, *, touch: bool = True) -> Session | None:
        """The live session for this id (refreshing its idle clock), or None if unknown or idle too long."""
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
        return self._sessions.pop(session_id, None)

    def csrf_ok(self, session: Session, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(session.csrf, presented or "")

    def __len__(self) -> int:
        return len(self._sessions)

    def _prune(self) -> None:
        now = self._clock()
        for sid in [s.id for s in self._sessions.values() if now - s.last_seen > self.idle_timeout]:
            self._sessions.pop(sid, None)


# The credential check (`nekzus.api.security`) finds the store under this key when the dashboard is on.
UI_SESSIONS: Key[SessionStore] = Key("ui_sessions")
