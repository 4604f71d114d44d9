"""State shared by the worker processes of one Nekzus, in memory mapped before they are forked.

The database is the truth; each worker keeps in-memory mirrors of it (credentials, the catalog, the
running config). `Generations` is a small array of counters, one per mirror plus a total: a change
commits to the database, then bumps its counter (under a process-shared lock), then answers. Every
worker compares the total with the one it has seen before serving a request (one memory read) and
reloads the mirrors whose counter moved. So once the call that made a change has answered, the next
request in any worker is judged with the change applied.

Nothing here imports the rest of Nekzus: domains receive plain callables built from these objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import mmap
import os
import struct
from collections.abc import Awaitable, Callable, Iterator
from typing import NamedTuple

log = logging.getLogger("nekzus.workers")

# Counter slots: 0 is the total (moves with every other slot).
TOTAL = 0
AUTH = 1
CATALOG = 2
CONFIG = 3
CERTIFICATES = 4
SLOTS = 8


class SharedLock:
    """A lock every forked worker shares: a POSIX record lock on an anonymous in-memory file.

    The kernel releases it when its holder dies, so a worker killed inside a critical section cannot
    hang the others (a semaphore would stay taken). Critical sections are a few memory operations, so
    waiting blocks the event loop for microseconds. One event-loop thread per process: a process never
    contends with itself.
    """

    def __init__(self) -> None:
        self._fd = os.memfd_create("nekzus-lock", os.MFD_CLOEXEC)
        os.ftruncate(self._fd, 1)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)


class Generations:
    """Counters in anonymous shared memory; created before fork, inherited by every worker."""

    def __init__(self, lock: SharedLock) -> None:
        self._map = mmap.mmap(-1, SLOTS * 8)
        self.values = memoryview(self._map).cast("Q")
        self.lock = lock

    def bump(self, slot: int) -> tuple[int, int]:
        """Count a change of `slot`; returns the slot's value before and after."""
        with self.lock.held():
            before = self.values[slot]
            self.values[slot] = before + 1
            self.values[TOTAL] += 1
            return before, before + 1


Reload = Callable[[], Awaitable[None]]


class Mirrors:
    """The in-memory mirrors of one worker and the counters it has applied."""

    def __init__(self, generations: Generations) -> None:
        self.gens = generations
        self._reloads: dict[int, Reload] = {}
        self._seen = [0] * SLOTS
        self._running: asyncio.Future[None] | None = None
        self._reloading: set[int] = set()

    def register(self, slot: int, reload: Reload) -> None:
        self._reloads[slot] = reload

    def start_at_current(self) -> None:
        """Mirrors were just read from the database: every change counted so far is in them."""
        self._seen = list(self.gens.values)

    def changed(self, slot: int) -> None:
        """This worker committed a change of `slot` (and already applied it to its own mirror)."""
        if slot in self._reloading:
            return  # the mirror is being re-read from storage: that is not a new change
        before, after = self.gens.bump(slot)
        if self._seen[slot] == before:
            # Nothing else changed since this worker last read the slot: its mirror is current.
            self._seen[slot] = after
            self._seen[TOTAL] += 1

    def stale(self) -> bool:
        return self.gens.values[TOTAL] != self._seen[TOTAL]

    async def current(self) -> None:
        """Reload whatever changed in another worker; concurrent callers share one reload."""
        if self.gens.values[TOTAL] == self._seen[TOTAL]:
            return
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._catch_up())  # noqa: TID251 - awaited below
        await asyncio.shield(self._running)

    async def _catch_up(self) -> None:
        while True:
            snapshot = list(self.gens.values)
            for slot, reload in self._reloads.items():
                if snapshot[slot] == self._seen[slot]:
                    continue
                self._reloading.add(slot)
                try:
                    await reload()
                except Exception:
                    log.exception("reloading shared state (slot %d) failed; retried on next request", slot)
                    return
                finally:
                    self._reloading.discard(slot)
                self._seen[slot] = snapshot[slot]
            self._seen[TOTAL] = snapshot[TOTAL]
            if self.gens.values[TOTAL] == snapshot[TOTAL]:
                return

    async def watch(self, interval: float = 0.1) -> None:
        """Catch up without waiting for a request, so open connections of a revoked credential close
        promptly in every worker."""
        while True:
            await asyncio.sleep(interval)
            if self.stale():
                await self.current()


# -- rate-limit buckets ----------------------------------------------------------------------------

_SLOT = struct.Struct("16sdd")  # key digest, tokens, last refill (CLOCK_MONOTONIC is system-wide)
PROBE = 8


class SharedBuckets:
    """A fixed-size open-addressing table of token buckets in shared memory.

    A client spreading requests over connections served by different workers draws from one bucket.
    When the table is full the least recently used entry of a key's probe window is reused (its client
    starts again from a full bucket, as after the in-process table's pruning).
    """

    def __init__(self, lock: SharedLock, capacity: int = 1 << 15) -> None:
        self.capacity = capacity
        self.lock = lock
        self._map = mmap.mmap(-1, capacity * _SLOT.size)

    def take(self, key: str, rate: float, burst: int, now: float, idle: float) -> tuple[bool, float]:
        """Refill `key`'s bucket, take one token if there is one; (allowed, tokens left)."""
        digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
        start = int.from_bytes(digest[:8], "little") % self.capacity
        size = _SLOT.size
        buf = self._map
        with self.lock.held():
            chosen = -1
            oldest = -1
            oldest_at = float("inf")
            for i in range(PROBE):
                index = (start + i) % self.capacity
                stored, tokens, last = _SLOT.unpack_from(buf, index * size)
                if stored == digest:
                    chosen = index
                    break
                if last == 0.0 or now - last > idle:
                    if chosen < 0 or last < oldest_at:
                        oldest, oldest_at = index, -1.0 if last == 0.0 else last
                    continue
                if last < oldest_at:
                    oldest, oldest_at = index, last
            if chosen >= 0:
                tokens = min(float(burst), tokens + (now - last) * rate)
            else:
                chosen, tokens = oldest, float(burst)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            _SLOT.pack_into(buf, chosen * size, digest, tokens, now)
        return allowed, tokens

    def reset(self) -> None:
        with self.lock.held():
            self._map[:] = bytes(len(self._map))


# -- dashboard sessions ----------------------------------------------------------------------------

# id digest, created, last seen, CSRF token, user name, user token (NUL-padded; none of them holds a NUL)
_SESSION = struct.Struct("32sdd64s256s2048s")
_EMPTY = bytes(32)


# created, last seen, CSRF token, user name, user token
Record = tuple[float, float, str, str, str]


class SessionRecord(NamedTuple):
    created: float
    last_seen: float
    csrf: str
    username: str
    token: str


class SharedSessions:
    """The dashboard's session table in shared memory, so a browser's connections may land on any
    worker. Nothing is written to disk: a restart still signs everyone out. Sessions are found by the
    SHA-256 of their id (the id itself is not stored)."""

    def __init__(self, lock: SharedLock, capacity: int = 1024) -> None:
        self.capacity = capacity
        self.lock = lock
        self._map = mmap.mmap(-1, capacity * _SESSION.size)

    @staticmethod
    def _digest(session_id: str) -> bytes:
        return hashlib.sha256(session_id.encode()).digest()

    def _find(self, digest: bytes) -> int:
        size, buf, at = _SESSION.size, self._map, 0
        while True:
            at = buf.find(digest, at)
            if at < 0:
                return -1
            if at % size == 0:
                return at // size
            at += 1

    def put(self, session_id: str, record: Record, idle: float, now: float) -> bool:
        """Store a new session, reusing an empty or idle slot, else the least recently used one.
        False when a value does not fit its field (the caller keeps the session out)."""
        try:
            raw = _SESSION.pack(
                self._digest(session_id),
                record[0],
                record[1],
                _fits(record[2], 64),
                _fits(record[3], 256),
                _fits(record[4], 2048),
            )
        except ValueError:
            return False
        size = _SESSION.size
        with self.lock.held():
            chosen, oldest = -1, float("inf")
            for index in range(self.capacity):
                digest, _created, seen = struct.unpack_from("32sdd", self._map, index * size)
                if digest == _EMPTY or now - seen > idle:
                    chosen = index
                    break
                if seen < oldest:
                    chosen, oldest = index, seen
            self._map[chosen * size : (chosen + 1) * size] = raw
        return True

    def get(self, session_id: str) -> SessionRecord | None:
        with self.lock.held():
            index = self._find(self._digest(session_id))
            if index < 0:
                return None
            _d, created, seen, csrf, user, token = _SESSION.unpack_from(self._map, index * _SESSION.size)
        return SessionRecord(
            created,
            seen,
            csrf.rstrip(b"\0").decode(),
            user.rstrip(b"\0").decode(),
            token.rstrip(b"\0").decode(),
        )

    def touch(self, session_id: str, now: float) -> None:
        with self.lock.held():
            index = self._find(self._digest(session_id))
            if index >= 0:
                struct.pack_into("d", self._map, index * _SESSION.size + 40, now)

    def drop(self, session_id: str) -> None:
        with self.lock.held():
            index = self._find(self._digest(session_id))
            if index >= 0:
                size = _SESSION.size
                self._map[index * size : (index + 1) * size] = bytes(size)

    def count(self, idle: float, now: float) -> int:
        size, live = _SESSION.size, 0
        with self.lock.held():
            for index in range(self.capacity):
                digest, _created, seen = struct.unpack_from("32sdd", self._map, index * size)
                if digest != _EMPTY and now - seen <= idle:
                    live += 1
        return live


def _fits(text: str, size: int) -> bytes:
    raw = text.encode()
    if len(raw) > size or b"\0" in raw:
        raise ValueError("does not fit")
    return raw


class SharedState:
    """Everything the supervisor maps before forking the workers."""

    def __init__(self) -> None:
        self.lock = SharedLock()
        self.generations = Generations(self.lock)
        self.buckets = SharedBuckets(SharedLock())
        self.sessions = SharedSessions(SharedLock())
