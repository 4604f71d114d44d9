"""Password hashing (argon2id) off the event loop, with equal cost for unknown users, and lockouts."""

from __future__ import annotations

import asyncio
import time
from collections import deque

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

LOCK_AFTER = 5
FAILURE_WINDOW = 900.0
LOCK_SECONDS = 300.0
MAX_TRACKED = 10_000


class Passwords:
    def __init__(self) -> None:
        # argon2id with OWASP's recommended minimum (19 MiB, 2 passes, 1 lane): ~50 ms per check,
        # costly for an attacker yet cheap enough that login cannot be used to exhaust the server.
        self._hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Check a password; with no stored hash, verify against a dummy so timing matches."""
        if stored_hash is None:
            if self._dummy is None:
                self._dummy = await self.hash("nekzus-dummy-password-for-timing")
            stored_hash = self._dummy
            await asyncio.to_thread(self._check, stored_hash, password)
            return False
        return await asyncio.to_thread(self._check, stored_hash, password)

    def _check(self, stored_hash: str, password: str) -> bool:
        try:
            return bool(self._hasher.verify(stored_hash, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


class LoginLockout:
    """After LOCK_AFTER failures within FAILURE_WINDOW an account is locked for LOCK_SECONDS."""

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}

    def locked_for(self, username: str) -> float:
        until = self._locked_until.get(username, 0.0)
        remaining = until - time.time()
        if remaining <= 0:
            self._locked_until.pop(username, None)
            return 0.0
        return remaining

    def failed(self, username: str) -> bool:
        """Record a failure; True when this failure locks the account."""
        now = time.time()
        if len(self._failures) >= MAX_TRACKED:
            self._failures.clear()
        times = self._failures.setdefault(username, deque())
        times.append(now)
        while times and times[0] < now - FAILURE_WINDOW:
            times.popleft()
        if len(times) >= LOCK_AFTER:
            self._locked_until[username] = now + LOCK_SECONDS
            times.clear()
            return True
        return False

    def succeeded(self, username: str) -> None:
        self._failures.pop(username, None)
