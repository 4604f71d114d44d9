"""Pairing codes and bootstrap tokens. Memory only: they live five minutes.

A QR code carries a short code; redeeming it (`POST /api/v1/pair`) yields the pairing config with a
temporary bootstrap token; `POST /api/v1/auth/pair` with that token creates the device. Both are
single-use: the code is spent by its first redemption, the temporary token by the pairing that claims it
(checked and consumed in one step, with no await in between, so racing requests cannot share it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from nekzus.auth.passwords import source_key
from nekzus.errors import NekzusError, error_for

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8
CODE_TTL = 300.0
CODE_LOCK_AFTER = 5
CODE_LOCK_SECONDS = 300.0
GLOBAL_FAILURES_PER_HOUR = 100
QR_PER_HOUR = 10
BOOTSTRAP_LOCK_AFTER = 3
HOUR = 3600.0
MAX_TRACKED_BAD_TOKENS = 10_000


def new_code() -> str:
    """8 symbols, each drawn uniformly (secrets.choice has no modulo bias)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


@dataclass
class PairingCode:
    code: str
    config: dict[str, Any]
    bootstrap_token: str
    created: float
    expires: float
    consumed: bool = False
    failures: int = 0
    locked_until: float = 0.0


@dataclass
class TempToken:
    token: str
    code: str
    expires: float
    failures: int = 0


@dataclass(frozen=True)
class Grant:
    """A bootstrap token that may pair: `temp` (from a QR code), `permanent` (config) or `dev`."""

    kind: str
    token: str
    code: str = ""


@dataclass
class PairingStore:
    permanent_tokens: tuple[str, ...] = ()
    allow_any: bool = False
    clock: Callable[[], float] = time.time
    codes: dict[str, PairingCode] = field(default_factory=dict)
    tokens: dict[str, TempToken] = field(default_factory=dict)
    qr_times: deque[float] = field(default_factory=deque)
    # Failed code redemptions per source address (IPv6 by /64): one source's guessing locks only it.
    failure_times: dict[str, deque[float]] = field(default_factory=dict)
    bad_tokens: dict[str, int] = field(default_factory=dict)
    # With several worker processes: tells the others about new codes and spent ones (`apply` there),
    # since the QR page and the phone that redeems its code may be served by different workers.
    replicate: Callable[[str, Any], None] | None = None
    # With several worker processes: True only for the first caller, in any worker, with this key (a
    # check-and-set in shared memory), so a code or temporary token is spent once even when two workers
    # see it at the same moment.
    first_use: Callable[[str], bool] | None = None

    def _first(self, key: str) -> bool:
        return self.first_use is None or self.first_use(key)

    def _tell(self, op: str, payload: Any) -> None:
        if self.replicate is not None:
            self.replicate(op, payload)

    def apply(self, op: str, payload: Any) -> None:
        """A change another worker made (see `replicate`)."""
        if op == "created":
            entry: PairingCode = payload
            self.codes[entry.code] = entry
            self.tokens[entry.bootstrap_token] = TempToken(entry.bootstrap_token, entry.code, entry.expires)
            self.qr_times.append(entry.created)
        elif op == "consumed":
            if payload in self.codes:
                self.codes[payload].consumed = True
        elif op == "claimed":
            token, code = payload
            self.tokens.pop(token, None)
            if code in self.codes:
                self.codes[code].consumed = True
        elif op == "dropped":
            self.tokens.pop(payload, None)

    # -- QR codes -------------------------------------------------------------------------------

    def qr_allowed(self) -> bool:
        now = self.clock()
        _trim(self.qr_times, now - HOUR)
        return len(self.qr_times) < QR_PER_HOUR

    def create(self, build_config: Callable[[str, str, float], dict[str, Any]]) -> PairingCode:
        """Mint a code and its bootstrap token; `build_config(code, token, expires_at)` makes the config."""
        if not self.qr_allowed():
            raise error_for(429, "RATE_LIMITED", "Too many QR codes generated. Try again later.")
        now = self.clock()
        self._janitor(now)
        code = new_code()
        while code in self.codes:
            code = new_code()
        token = "temp_" + secrets.token_urlsafe(32)
        expires = now + CODE_TTL
        entry = PairingCode(code, build_config(code, token, expires), token, now, expires)
        self.codes[code] = entry
        self.tokens[token] = TempToken(token, code, expires)
        self.qr_times.append(now)
        self._tell("created", entry)
        return entry

    # -- redeeming a code -------------------------------------------------------------------------

    def locked(self, source: str = "") -> bool:
        """Whether this source made too many failed redemptions in the last hour."""
        times = self.failure_times.get(source_key(source))
        if times is None:
            return False
        _trim(times, self.clock() - HOUR)
        return len(times) >= GLOBAL_FAILURES_PER_HOUR

    def _fail(self, source: str) -> NekzusError:
        if len(self.failure_times) >= MAX_TRACKED_BAD_TOKENS:
            self.failure_times.clear()
        self.failure_times.setdefault(source_key(source), deque()).append(self.clock())
        return error_for(404, "INVALID_CODE", "Invalid or expired pairing code")

    def find(self, code: str) -> PairingCode | None:
        """Constant-time comparison against every live code (there are at most a handful)."""
        found = None
        for known, entry in self.codes.items():
            if hmac.compare_digest(known.encode(), code.encode()):
                found = entry
        return found

    def redeem(self, raw_code: str, source: str = "") -> dict[str, Any]:
        if self.locked(source):
            raise error_for(429, "RATE_LIMITED", "Too many pairing attempts, please try again later")
        code = raw_code.strip().upper()
        now = self.clock()
        self._janitor(now)
        entry = self.find(code)
        if entry is None:
            raise self._fail(source)
        if entry.expires <= now:
            self._drop(entry)
            raise self._fail(source)
        if entry.locked_until > now:
            raise self._fail(source)
        if entry.consumed:
            entry.failures += 1
            if entry.failures >= CODE_LOCK_AFTER:
                entry.locked_until = now + CODE_LOCK_SECONDS
            raise self._fail(source)
        # Single-use: whoever redeems first holds the bootstrap token; a replay gets nothing.
        first = self._first("code:" + entry.code)
        entry.consumed = True
        if not first:
            raise self._fail(source)
        self._tell("consumed", entry.code)
        return dict(entry.config)

    def status(self, raw_code: str) -> dict[str, Any]:
        now = self.clock()
        entry = self.find(raw_code.strip().upper())
        if entry is None:
            return {"valid": False, "redeemed": False, "expired": True, "locked": False, "ttl": 0}
        expired = entry.expires <= now
        locked = entry.locked_until > now
        return {
            "valid": not expired and not entry.consumed and not locked,
            "redeemed": entry.consumed,
            "expired": expired,
            "locked": locked,
            "ttl": max(0, int(entry.expires - now)),
        }

    # -- bootstrap tokens -----------------------------------------------------------------------

    def is_bootstrap(self, token: str) -> bool:
        """Cheap check used by the authenticator (no failure counting)."""
        temp = self._temp(token)
        if temp is not None and temp.expires > self.clock():
            return True
        return self._permanent(token)

    def authorize(self, token: str) -> Grant:
        """Judge a bootstrap token for pairing, counting failures (3 strikes lock it)."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        if self.bad_tokens.get(digest, 0) >= BOOTSTRAP_LOCK_AFTER:
            raise error_for(429, "RATE_LIMITED", "Too many pairing attempts. Generate a new QR code.")
        temp = self._temp(token)
        now = self.clock()
        if temp is not None and temp.expires > now:
            return Grant("temp", token, temp.code)
        if self._permanent(token):
            return Grant("permanent", token)
        if self.allow_any and token:
            return Grant("dev", token)
        self.strike(token)
        raise error_for(401, "INVALID_BOOTSTRAP", "Invalid or expired bootstrap token")

    def claim(self, token: str) -> Grant:
        """Judge a bootstrap token and, for a temporary one, consume it in the same step.

        Synchronous on purpose: no other request can run between the check (including the expiry,
        judged at this moment rather than when the request started) and the consumption.
        """
        grant = self.authorize(token)
        self.consume(grant)
        if grant.kind == "temp" and not self._first("token:" + token):
            raise error_for(401, "INVALID_BOOTSTRAP", "Invalid or expired bootstrap token")
        return grant

    def strike(self, token: str) -> None:
        """Count one failed pairing attempt with this token; the third locks (and drops) it."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        if len(self.bad_tokens) >= MAX_TRACKED_BAD_TOKENS:
            self.bad_tokens.clear()
        count = self.bad_tokens.get(digest, 0) + 1
        self.bad_tokens[digest] = count
        if count >= BOOTSTRAP_LOCK_AFTER:
            temp = self._temp(token)
            if temp is not None:
                del self.tokens[temp.token]
                self._tell("dropped", temp.token)

    def consume(self, grant: Grant) -> None:
        if grant.kind != "temp":
            return
        self._tell("claimed", (grant.token, grant.code))
        self.tokens.pop(grant.token, None)
        entry = self.codes.get(grant.code)
        if entry is not None:
            entry.consumed = True

    def pins_of(self, grant: Grant) -> list[str]:
        """The certificate pins the QR code behind `grant` handed out (what the device now pins)."""
        entry = self.codes.get(grant.code) if grant.code else None
        pins = entry.config.get("spkiPins") if entry is not None else None
        return [str(p) for p in pins] if isinstance(pins, list) else []

    def active_tokens(self) -> int:
        now = self.clock()
        return sum(1 for t in self.tokens.values() if t.expires > now) + len(self.permanent_tokens)

    # -- housekeeping ---------------------------------------------------------------------------

    def _temp(self, token: str) -> TempToken | None:
        found = None
        for known, entry in self.tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                found = entry
        return found

    def _permanent(self, token: str) -> bool:
        return _any_equal(token, self.permanent_tokens)

    def _drop(self, entry: PairingCode) -> None:
        self.codes.pop(entry.code, None)
        self.tokens.pop(entry.bootstrap_token, None)

    def _janitor(self, now: float) -> None:
        for entry in [e for e in self.codes.values() if e.expires + 60 < now and e.locked_until < now]:
            self._drop(entry)
        for token in [t for t, e in self.tokens.items() if e.expires < now]:
            del self.tokens[token]


def _any_equal(value: str, candidates: Iterable[str]) -> bool:
    hit = False
    for candidate in candidates:
        if candidate and hmac.compare_digest(candidate.encode(), value.encode()):
            hit = True
    return hit


def _trim(times: deque[float], cutoff: float) -> None:
    while times and times[0] <= cutoff:
        times.popleft()


def config_hash(code: str, config: dict[str, Any]) -> str:
    """The QR payload's `v` field, as the phone app checks it: binds the code to the config it unlocks."""
    text = (
        code
        + ":"
        + str(config.get("baseUrl", ""))
        + str(config.get("nexusId", ""))
        + str(config.get("bootstrapToken", ""))
        + ",".join(config.get("spkiPins", []))
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]
