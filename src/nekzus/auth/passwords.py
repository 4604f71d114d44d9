"""Password hashing (argon2id) off the event loop, with equal cost for unknown users, and lockouts."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from argon2 import PasswordHasher

LOCK_AFTER = 5
FAILURE_WINDOW = 900.0
LOCK_SECONDS = 300.0
MAX_TRACKED = 10_000
ACCOUNT_LOCK_AFTER = 50


class Passwords:
    """argon2 is loaded at the first password check, not at start-up: most processes (API keys and
    device tokens) never hash a password, and an idle server stays smaller."""

    def __init__(self) -> None:
        self._argon2: PasswordHasher | None = None
        self._dummy: str | None = None

    @property
    def _hasher(self) -> PasswordHasher:
        if self._argon2 is None:
            from argon2 import PasswordHasher

            # argon2id with OWASP's recommended minimum (19 MiB, 2 passes, 1 lane): ~50 ms per check,
            # costly for an attacker yet cheap enough that login cannot be used to exhaust the server.
            self._argon2 = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
        return self._argon2

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
        from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

        try:
            return bool(self._hasher.verify(stored_hash, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def source_key(ip: str) -> str:
    """The lockout bucket of a client address: the address itself, IPv6 clients by their /64 (one
    host can pick any address inside its /64)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip or "unknown"
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


class LoginLockout:
    """Failed logins lock an account *for the address they came from*: LOCK_AFTER failures from one
    source within FAILURE_WINDOW lock that account from that source for LOCK_SECONDS. Anyone can fail
    logins, so a lock keyed by the account alone would let any stranger lock the owner out.

    ACCOUNT_LOCK_AFTER failures from all sources together lock the account for every source except
    trusted networks (the caller decides which those are), so a distributed guesser is stopped too
    while the owner can still sign in at home.
    """

    def __init__(self) -> None:
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._locked_until: dict[tuple[str, str], float] = {}
        self._account_failures: dict[str, deque[float]] = {}

    def locked_for(self, username: str, source: str = "", *, trusted: bool = False) -> float:
        """Seconds this login attempt must wait (0 = may try). A trusted source is never locked."""
        if trusted:
            return 0.0
        now = time.time()
        key = (username, source_key(source))
        remaining = self._locked_until.get(key, 0.0) - now
        if remaining <= 0:
            self._locked_until.pop(key, None)
            remaining = 0.0
        account = self._account_failures.get(username)
        if account is not None:
            _trim(account, now - FAILURE_WINDOW)
            if len(account) >= ACCOUNT_LOCK_AFTER:
                remaining = max(remaining, account[0] + FAILURE_WINDOW - now, 1.0)
        return remaining

    def failed(self, username: str, source: str = "") -> bool:
        """Record a failure; True when this failure locks the account for this source."""
        now = time.time()
        if len(self._failures) >= MAX_TRACKED:
            self._failures.clear()
        if len(self._account_failures) >= MAX_TRACKED:
            self._account_failures.clear()
        account = self._account_failures.setdefault(username, deque())
        account.append(now)
        _trim(account, now - FAILURE_WINDOW)
        key = (username, source_key(source))
        times = self._failures.setdefault(key, deque())
        times.append(now)
        _trim(times, now - FAILURE_WINDOW)
        if len(times) >= LOCK_AFTER:
            if len(self._locked_until) >= MAX_TRACKED:
                self._locked_until = {k: t for k, t in self._locked_until.items() if t > now}
            self._locked_until[key] = now + LOCK_SECONDS
            times.clear()
            return True
        return False

    def succeeded(self, username: str, source: str = "") -> None:
        self._failures.pop((username, source_key(source)), None)


def _trim(times: deque[float], cutoff: float) -> None:
    while times and times[0] < cutoff:
        times.popleft()
