"""Long-lived connections (hub sockets, proxied WebSocket tunnels, proxied responses still streaming)
indexed by the credential that opened them, so revoking, logging out or deleting that credential closes
them at once, and they close by themselves when the credential expires.

A connection is checked once, when it opens; without this registry it would outlive every later change
to its credential. Each connection registers with `register(principal, close)` and releases its handle
when it ends. The identity service calls `close_device` / `close_api_key` / `close_token` /
`close_user` on every revocation, and a timer per connection fires at the credential's expiry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nekzus.auth.principal import Principal
from nekzus.errors import NekzusError

log = logging.getLogger("nekzus.auth")

DEFAULT_MAX_PER_PRINCIPAL = 32

# Why a connection was closed; passed to its close callback and shown to the client.
REVOKED = "credential revoked"
DEVICE_REVOKED = "device_revoked"  # the reason the hub has always sent, which apps recognise
LOGGED_OUT = "logged out"
EXPIRED = "credential expired"
REPAIRED = "device re-paired"
RESCOPED = "scopes changed"
DISABLED = "user disabled"

CloseCallback = Callable[[str], object]


class TooManyConnections(NekzusError):
    """The principal already holds the maximum number of long-lived connections."""

    status = 429
    default_code = "TOO_MANY_CONNECTIONS"


def credential_keys(principal: Principal) -> tuple[str, ...]:
    """The credential ids a connection opened by `principal` depends on (any one revoked closes it)."""
    keys = [f"{principal.kind}:{principal.id}"]
    if principal.token_id:
        keys.append(f"token:{principal.token_id}")
    return tuple(keys)


@dataclass(eq=False)
class ConnectionHandle:
    """One registered connection; `release()` when it ends (idempotent)."""

    registry: ConnectionRegistry
    principal: Principal
    close_callback: CloseCallback
    keys: tuple[str, ...]
    capped: bool = True
    timer: asyncio.TimerHandle | None = None
    closed_reason: str | None = field(default=None)
    released: bool = False

    def close(self, reason: str) -> None:
        """Close the connection (through its callback) and forget it."""
        if self.released:
            return
        self.closed_reason = reason
        self.release()
        try:
            self.close_callback(reason)
        except Exception:
            log.exception("closing a connection of %s failed", self.principal.rate_key)

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        if self.timer is not None:
            self.timer.cancel()
        self.registry._forget(self)


class ConnectionRegistry:
    """Live long-lived connections by credential; owned by the identity service."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        max_per_principal: int = DEFAULT_MAX_PER_PRINCIPAL,
    ) -> None:
        self.clock = clock  # the identity service's clock: expiry timers agree with token checks
        self.max_per_principal = max_per_principal
        self._by_key: dict[str, set[ConnectionHandle]] = {}
        self._by_principal: dict[str, set[ConnectionHandle]] = {}

    def register(
        self, principal: Principal, close: CloseCallback, *, capped: bool = True
    ) -> ConnectionHandle:
        """Register a connection opened by `principal`; `close(reason)` must close it promptly.

        Raises TooManyConnections when the principal is at its cap. Must be called on the event loop.
        `capped=False` for a proxied response still streaming: it ends by itself, and a page may load
        many at once, so it is closed with its credential but not counted against the cap.
        """
        if capped:
            group = self._by_principal.setdefault(principal.rate_key, set())
            # The cap is per credential; trusted networks present none (the owner's own machines).
            if principal.kind != "trusted" and len(group) >= self.max_per_principal:
                if not group:
                    del self._by_principal[principal.rate_key]
                raise TooManyConnections(
                    f"At most {self.max_per_principal} concurrent connections per credential"
                )
        handle = ConnectionHandle(self, principal, close, credential_keys(principal), capped)
        if capped:
            group.add(handle)
        for key in handle.keys:
            self._by_key.setdefault(key, set()).add(handle)
        if principal.expires_at is not None:
            delay = max(0.0, principal.expires_at - self.clock())
            handle.timer = asyncio.get_running_loop().call_later(delay, handle.close, EXPIRED)
        return handle

    def count(self, principal: Principal) -> int:
        return len(self._by_principal.get(principal.rate_key, ()))

    def _forget(self, handle: ConnectionHandle) -> None:
        group = self._by_principal.get(handle.principal.rate_key) if handle.capped else None
        if group is not None:
            group.discard(handle)
            if not group:
                del self._by_principal[handle.principal.rate_key]
        for key in handle.keys:
            bucket = self._by_key.get(key)
            if bucket is not None:
                bucket.discard(handle)
                if not bucket:
                    del self._by_key[key]

    def close_key(self, key: str, reason: str) -> int:
        handles = list(self._by_key.get(key, ()))
        for handle in handles:
            handle.close(reason)
        return len(handles)

    def close_device(self, device_id: str, reason: str = DEVICE_REVOKED) -> int:
        return self.close_key(f"device:{device_id}", reason)

    def close_api_key(self, key_id: str, reason: str = REVOKED) -> int:
        return self.close_key(f"apikey:{key_id}", reason)

    def close_token(self, token_id: str, reason: str = LOGGED_OUT) -> int:
        return self.close_key(f"token:{token_id}", reason)

    def close_user(self, username: str, reason: str = DISABLED) -> int:
        return self.close_key(f"user:user-{username}", reason)

    def close_all(self, reason: str) -> int:
        # Every handle is filed under its credential's key (and capped ones by principal as well).
        handles = {h for bucket in self._by_key.values() for h in bucket}
        for handle in handles:
            handle.close(reason)
        return len(handles)
