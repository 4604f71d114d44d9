"""The dashboard session table: idle timeout, CSRF comparison, bounded size (no browser needed)."""

from __future__ import annotations

import pytest

from nekzus.ui import sessions
from nekzus.ui.sessions import SessionStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_idle_timeout_ends_session_and_activity_extends_it() -> None:
    clock = Clock()
    store = SessionStore(idle_timeout=60, clock=clock)
    s = store.create("jwt", "admin")
    clock.now += 50
    assert store.get(s.id) is s  # touched: idle clock restarts
    clock.now += 50
    assert store.get(s.id, touch=False) is s
    clock.now += 11  # 61 s since the last touch
    assert store.get(s.id) is None
    assert len(store) == 0


def test_csrf_token_must_match() -> None:
    store = SessionStore(idle_timeout=60)
    s = store.create("jwt", "admin")
    assert store.csrf_ok(s, s.csrf)
    assert not store.csrf_ok(s, None)
    assert not store.csrf_ok(s, "")
    assert not store.csrf_ok(s, s.csrf[:-1] + "x")
    other = store.create("jwt2", "admin")
    assert other.id != s.id and other.csrf != s.csrf


def test_store_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions, "MAX_SESSIONS", 3)
    clock = Clock()
    store = SessionStore(idle_timeout=600, clock=clock)
    first = store.create("a", "u")
    for token in "bcd":
        clock.now += 1
        store.create(token, "u")
    assert len(store) == 3 and store.get(first.id) is None
