"""The WebSocket hub behind `/api/v1/ws`: authentication inside the protocol, per-client send queues,
fan-out of every event-bus event to its audience, topic filters, and handlers other domains plug in.

Design notes (a slow or hostile client must never stall publishing or the other clients):
- Fan-out serialises an event once: one JSON text and one WebSocket frame per event (server frames are
  unmasked, so the bytes are the same for every connection; see `wire.py`), decided once per distinct
  topic filter, then the same bytes go to every client the event's audience and filter admit.
- Write path: a client whose transport is writable gets frames appended to a per-tick batch, and one
  callback at the end of the loop tick writes each client's batch with one `transport.write` (a burst
  of events costs one syscall per client, no task wake-up per message). When the transport is paused
  (above its 64 KiB high-water mark: the peer is not reading), further messages wait in a bounded queue
  (SEND_QUEUE messages, references to the shared frames) drained by the client's writer task as the
  peer reads. Per-client order is kept: nothing is written directly while older messages wait.
- Slow clients: memory per connection is bounded by the transport's high-water mark plus one batch
  (WRITE_BATCH) plus SEND_QUEUE queued messages. A full queue drops the new message (counted as
  `websocket_messages_total{app_id="hub",direction="dropped"}`); DROP_LIMIT drops in a row (without the
  queue ever draining) closes the connection with 1013 "slow consumer".
- Topic filters apply to every bus event and queued notification; direct replies (auth_success, hello,
  pong, suback, errors, handler replies) always go through.
- Bad input never takes the hub down: non-JSON / unknown types → an `error` message; frames over
  MAX_FRAME → close 1009; floods → `error` RATE_LIMITED, then close 1008 after FLOOD_LIMIT rejections.
- Protocol-level keepalive pings are sent by uvicorn (its `ws_ping_interval`/`ws_ping_timeout`, 20 s
  each by default); JSON `ping` is answered with JSON `pong`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from nekzus import __version__
from nekzus.auth.authorize import decide
from nekzus.auth.connections import EXPIRED, ConnectionRegistry, TooManyConnections
from nekzus.auth.principal import Authenticator, AuthError, Principal
from nekzus.events.bus import Event
from nekzus.events.topics import MAX_SUBSCRIPTIONS, TopicError, any_match, validate_pattern
from nekzus.events.types import EventType
from nekzus.events.wire import WRITE_BATCH, DirectWire, direct_wire, text_frame
from nekzus.timefmt import rfc3339

if TYPE_CHECKING:
    from starlette.websockets import WebSocket

    from nekzus.auth.audit import AuditService
    from nekzus.events.bus import EventBus
    from nekzus.metrics import Metrics
    from nekzus.tasks import Spawn

log = logging.getLogger("nekzus.ws")

SEND_QUEUE = 256
DROP_LIMIT = 64
MAX_FRAME = 64 * 1024
INBOUND_RATE = 20.0
INBOUND_BURST = 60.0
FLOOD_LIMIT = 200
APP_LABEL = "hub"
REQUIRED_SCOPE = "read:events"

# Close codes the hub uses.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN = 1013

NUMERIC_CODES = {
    "TOKEN_EXPIRED": 1001,
    "INVALID_TOKEN": 1002,
    "TOKEN_REVOKED": 1003,
    "DEVICE_REVOKED": 1004,
    "AUTH_REQUIRED": 1005,
}

Handler = Callable[["Client", dict[str, Any]], Awaitable[None]]
ConnectHook = Callable[["Client"], Awaitable[None]]


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


# Topics a client may publish to (its last will) live under this prefix, apart from server events.
CLIENT_TOPIC_PREFIX = "client."


def envelope(type_: str, data: Any = None, ts: float | None = None, **extra: Any) -> str:
    """Serialise one server message: `{type, data, timestamp}` plus optional top-level fields."""
    body: dict[str, Any] = {"type": type_, "data": data, "timestamp": rfc3339(ts, millis=True)}
    for key, value in extra.items():
        if value is not None:
            body[key] = value
    return json.dumps(body, separators=(",", ":"), default=_json_default)


def _origin_key(value: str) -> str | None:
    """Normalise an origin to `scheme://host:port` (default ports made explicit)."""
    try:
        parts = urlsplit(value.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host.lower()}:{port}"


class Client:
    """One authenticated WebSocket connection (the object handlers of other domains receive)."""

    def __init__(
        self,
        hub: Hub,
        ws: WebSocket,
        principal: Principal,
        ip: str,
        user_agent: str,
        wire: DirectWire | None = None,
    ) -> None:
        self.hub = hub
        self.ws = ws
        self.id = "ws_" + secrets.token_hex(8)
        self.principal = principal
        self.ip = ip
        self.user_agent = user_agent[:200]
        self.connected_at = time.time()
        self._subscriptions: tuple[str, ...] = ()
        self.last_will: tuple[str, Any] | None = None
        self.dropped = 0
        self.sent = 0
        self.received = 0
        # With a direct wire, queued items are ready frames (bytes); without, JSON texts for ASGI send.
        self._wire = wire
        self._queue: deque[bytes | str] = deque()
        self._pending: list[bytes] = []  # frames to write at the end of this loop tick
        self._wake = asyncio.Event()
        self._drops_in_row = 0
        self._closing: tuple[int, str] | None = None
        self._close_callbacks: list[Callable[[Client], Any]] = []
        self._tokens = INBOUND_BURST
        self._token_time = time.monotonic()
        self._flood_rejections = 0
        self._flood_warned = False

    # --- what handlers use -------------------------------------------------------------------
    @property
    def device_id(self) -> str:
        """The principal id this connection belongs to (device id, `user-<name>`, key id or `local`)."""
        return self.principal.id

    @property
    def closing(self) -> bool:
        return self._closing is not None

    @property
    def subscriptions(self) -> list[str]:
        return list(self._subscriptions)

    @subscriptions.setter
    def subscriptions(self, patterns: list[str]) -> None:
        # Kept as a tuple: fan-out uses it as the key of its per-event filter verdicts.
        self._subscriptions = tuple(patterns)

    async def send(self, type_: str, data: Any = None, **extra: Any) -> bool:
        """Queue one message for this client; False if it was dropped or the client is closing."""
        return self.push(envelope(type_, data, **extra))

    def on_close(self, callback: Callable[[Client], Any]) -> None:
        """Run `callback(client)` (sync or async) once the connection is gone."""
        self._close_callbacks.append(callback)

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        self.close_soon(code, reason)

    # --- queue ------------------------------------------------------------------------------
    def wants(self, topic: str) -> bool:
        return not self._subscriptions or any_match(self._subscriptions, topic)

    def push(self, text: str) -> bool:
        """Queue one serialised message (direct replies; fan-out calls `push_frame` with shared bytes)."""
        if self._wire is not None:
            return self.push_frame(text_frame(text.encode()))
        if self._closing is not None:
            return False
        if len(self._queue) >= SEND_QUEUE:
            self._drop()
            return False
        self._queue.append(text)
        if len(self._queue) == 1:
            self._wake.set()
        return True

    def push_frame(self, frame: bytes) -> bool:
        """Queue one ready frame (direct-wire clients only). Written at the end of this loop tick if
        nothing older waits for the writer task; otherwise queued behind it, to keep the order."""
        if self._closing is not None:
            return False
        queue = self._queue
        pending = self._pending
        if queue:
            if len(queue) >= SEND_QUEUE:
                self._drop()
                return False
            queue.append(frame)
            return True
        if not pending:
            self.hub._mark_dirty(self)
        elif len(pending) >= SEND_QUEUE:
            self._drop()
            return False
        pending.append(frame)
        return True

    def _drop(self) -> None:
        self.dropped += 1
        self._drops_in_row += 1
        self.hub.m_dropped.inc()
        if self._drops_in_row >= DROP_LIMIT:
            log.warning("closing slow WebSocket consumer %s (%s)", self.id, self.principal.rate_key)
            self.close_soon(CLOSE_TRY_AGAIN, "slow consumer")

    def _flush(self) -> tuple[int, int]:
        """Write this tick's frames (called by the hub once per tick); returns (messages, bytes) written.

        Frames that cannot be written now (transport paused, i.e. the peer is not reading) move to the
        bounded queue, which the writer task drains as the transport resumes."""
        frames = self._pending
        if not frames:
            return 0, 0
        self._pending = []
        wire = self._wire
        if self._closing is not None or wire is None:
            return 0, 0
        if len(frames) == 1 and wire.usable():  # the common case: one event this tick
            data = frames[0]
            wire.write(data)
            self._drops_in_row = 0  # nothing is queued while frames are pending
            self.sent += 1
            return 1, len(data)
        count = size = 0
        total = len(frames)
        while count < total and wire.usable():
            if count + 1 == total or len(frames[count]) >= WRITE_BATCH:
                data = frames[count]
                count += 1
            else:
                end, batch = count, 0
                while end < total and batch < WRITE_BATCH:
                    batch += len(frames[end])
                    end += 1
                data = b"".join(frames[count:end])
                count = end
            wire.write(data)
            size += len(data)
        if count < total:
            self._queue.extend(frames[count:])
            self._wake.set()
        elif not self._queue:
            self._drops_in_row = 0
        self.sent += count
        return count, size

    def close_soon(self, code: int, reason: str, *, flush: bool = False) -> None:
        """Stop accepting messages and close from the writer task; `flush` sends what is queued first."""
        if self._closing is not None:
            return
        self._closing = (code, reason)
        if flush:
            # Frames of this tick are older than anything queued after them: keep them, in order.
            self._queue.extend(self._pending)
        else:
            self._queue.clear()
        self._pending = []
        self._wake.set()

    def close_with_notice(self, code: int, reason: str, text: str) -> None:
        """Drop what is queued, send `text` alone, then close."""
        if self._closing is not None:
            return
        self.close_soon(code, reason)
        self._queue.append(text_frame(text.encode()) if self._wire is not None else text)
        self._wake.set()

    async def run_writer(self) -> None:
        # Starlette's WebSocket.send only adds state bookkeeping around the ASGI send; the hot path
        # calls the ASGI send it wraps (falls back to the public method if that ever changes).
        send = getattr(self.ws, "_send", None) or self.ws.send
        wire = self._wire
        queue = self._queue
        m_out, m_bytes = self.hub.m_out, self.hub.m_bytes_out
        count = size = 0
        try:
            while True:
                if not queue:
                    self._drops_in_row = 0
                    if count:  # metrics in batches: one update per burst, not per message
                        m_out.inc(count)
                        m_bytes.inc(size)
                        self.sent += count
                        count = size = 0
                    if self._closing is not None:
                        break
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                if wire is not None:
                    # Wait for the peer to read; the items stay queued meanwhile, so new messages
                    # queue behind them and per-client order holds.
                    await wire.wait_writable()
                    if not wire.open():
                        break
                    if not queue:  # closed meanwhile: close_soon dropped what waited
                        continue
                    batch: list[bytes] = []
                    batch_size = 0
                    while queue and batch_size < WRITE_BATCH:
                        item = queue.popleft()
                        frame = item if isinstance(item, bytes) else text_frame(item.encode())
                        batch.append(frame)
                        batch_size += len(frame)
                    wire.write(batch[0] if len(batch) == 1 else b"".join(batch))
                    count += len(batch)
                    size += batch_size
                    continue
                item = queue.popleft()
                text = item if isinstance(item, str) else item.decode()
                await send({"type": "websocket.send", "text": text})
                count += 1
                size += len(text)
        except Exception as exc:  # the peer went away mid-send: the reader sees the disconnect
            log.debug("websocket %s writer stopped: %s", self.id, type(exc).__name__)
            self._closing = self._closing or (CLOSE_GOING_AWAY, "")
            return
        finally:
            if count:
                m_out.inc(count)
                m_bytes.inc(size)
                self.sent += count
        code, reason = self._closing or (CLOSE_NORMAL, "")
        try:
            await self.ws.send({"type": "websocket.close", "code": code, "reason": reason})
        except Exception:
            log.debug("websocket %s already closed", self.id)

    # --- inbound flood control ----------------------------------------------------------------
    def take_token(self) -> bool:
        now = time.monotonic()
        self._tokens = min(INBOUND_BURST, self._tokens + (now - self._token_time) * INBOUND_RATE)
        self._token_time = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    async def run_close_callbacks(self) -> None:
        for callback in self._close_callbacks:
            try:
                result = callback(self)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("websocket close callback failed")

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "deviceId": self.principal.id,
            "kind": self.principal.kind,
            "name": self.principal.name or self.principal.id,
            "remoteAddr": self.ip,
            "userAgent": self.user_agent,
            "connectedAt": rfc3339(self.connected_at, millis=True),
            "subscriptions": list(self._subscriptions),
            "queued": len(self._queue) + len(self._pending),
            "messagesSent": self.sent,
            "messagesReceived": self.received,
            "dropped": self.dropped,
        }


class Hub:
    """Registry of live connections; `services.domains.hub`."""

    def __init__(
        self,
        *,
        bus: EventBus,
        metrics: Metrics,
        spawn: Spawn,
        authenticator: Authenticator,
        audit: AuditService,
        base_url: str,
        instance_id: Callable[[], str],
        auth_timeout: float = 15.0,
        connections: ConnectionRegistry | None = None,
    ) -> None:
        self.bus = bus
        self.metrics = metrics
        self.spawn = spawn
        self.authenticator = authenticator
        self.audit = audit
        self.base_url = base_url
        self.instance_id = instance_id
        self.clients: dict[str, Client] = {}
        self.by_principal: dict[str, set[Client]] = {}
        self.admins: set[Client] = set()
        self.handlers: dict[str, Handler] = {}
        self.connect_hooks: list[ConnectHook] = []
        self.auth_timeout = auth_timeout
        # The identity domain's registry: revoking, logging out or the expiry of the credential a
        # socket was opened with closes it; it also caps sockets per credential.
        self.connections = connections if connections is not None else ConnectionRegistry()
        m = metrics
        self.m_out = m.websocket_messages_total.labels(APP_LABEL, "out")
        self.m_in = m.websocket_messages_total.labels(APP_LABEL, "in")
        self.m_dropped = m.websocket_messages_total.labels(APP_LABEL, "dropped")
        self.m_invalid = m.websocket_messages_total.labels(APP_LABEL, "invalid")
        self.m_rejected = m.websocket_messages_total.labels(APP_LABEL, "rejected")
        self.m_bytes_out = m.websocket_bytes_transferred_total.labels(APP_LABEL, "out")
        self.m_bytes_in = m.websocket_bytes_transferred_total.labels(APP_LABEL, "in")
        self._unsubscribe: Callable[[], None] | None = None
        self._dirty: list[Client] = []
        self._flush_scheduled = False
        # Set by the dashboard: the user token behind a browser session cookie ("" when there is none).
        self.cookie_token: Callable[[Mapping[str, str]], str] | None = None

    # --- contract for other domains ------------------------------------------------------------
    def register_handler(self, msg_type: str, handler: Handler) -> None:
        """Route client messages of `msg_type` to `handler(client, data)`."""
        if msg_type in _BUILTIN:
            raise ValueError(f"{msg_type!r} is handled by the hub itself")
        self.handlers[msg_type] = handler

    def on_connect(self, hook: ConnectHook) -> None:
        """Run `hook(client)` after a client authenticated (e.g. redeliver queued notifications)."""
        self.connect_hooks.append(hook)

    async def close_device(self, device_id: str, reason: str = "disconnected") -> int:
        """Close every connection of a principal id at once; returns how many were closed."""
        return self.close_principal(device_id, CLOSE_POLICY, reason)

    def close_principal(self, principal_id: str, code: int, reason: str) -> int:
        targets = [c for c in self.by_principal.get(principal_id, ()) if not c.closing]
        for client in targets:
            client.close_soon(code, reason)
        return len(targets)

    def is_online(self, principal_id: str) -> bool:
        return any(not c.closing for c in self.by_principal.get(principal_id, ()))

    def connections_of(self, principal_id: str) -> list[Client]:
        return [c for c in self.by_principal.get(principal_id, ()) if not c.closing]

    def start(self) -> None:
        self._unsubscribe = self.bus.subscribe(self.on_event, remote=True)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        for client in list(self.clients.values()):
            client.close_soon(CLOSE_GOING_AWAY, "server shutting down")

    # --- fan-out ---------------------------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        if event.type == "device_revoked":
            revoked = event.data.get("deviceId") if isinstance(event.data, dict) else None
            if isinstance(revoked, str) and revoked:
                self.close_principal(revoked, CLOSE_POLICY, "device_revoked")
        targets = self._audience(event)
        if not targets:
            return
        topic = event.topic or event.type
        self._fan_out(
            targets, topic, lambda: envelope(event.type, event.data, event.timestamp, topic=event.topic)
        )

    def deliver_client_message(self, topic: str, message: Any, *, sender: str) -> None:
        """Fan a client-authored message out to the connected clients, and only to them.

        It never touches the event bus, so no domain reacts to it, and its type always carries the
        `client.` namespace, so no receiver can mistake it for a server event such as a revocation.
        """
        now = time.time()
        self._fan_out(
            tuple(self.clients.values()),
            topic,
            lambda: envelope(topic, message, now, topic=topic, sender=sender),
        )

    def _fan_out(
        self, targets: list[Client] | tuple[Client, ...], topic: str, serialise: Callable[[], str]
    ) -> None:
        """Give one message to every target whose topic filter admits `topic`.

        The message is serialised (JSON, then one frame) at most once, on the first admitted client; a
        filter's verdict is computed once per distinct set of patterns. Who is in `targets` (the event's
        audience) was decided by the caller; nothing here widens it.
        """
        text: str | None = None
        frame: bytes | None = None
        verdicts: dict[tuple[str, ...], bool] = {}
        for client in targets:
            patterns = client._subscriptions
            if patterns:
                admitted = verdicts.get(patterns)
                if admitted is None:
                    admitted = verdicts[patterns] = any_match(patterns, topic)
                if not admitted:
                    continue
            if text is None:
                text = serialise()
            if client._wire is not None:
                if frame is None:
                    frame = text_frame(text.encode())
                client.push_frame(frame)
            else:
                client.push(text)

    # --- batched writes --------------------------------------------------------------------------
    def _mark_dirty(self, client: Client) -> None:
        """`client` has frames for this tick: write them all in one callback at the end of the tick."""
        self._dirty.append(client)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        self._flush_scheduled = False
        count = size = 0
        for client in dirty:
            try:
                sent, written = client._flush()
            except Exception as exc:  # a transport that fails on write: that client's reader sees it
                log.debug("websocket %s write failed: %s", client.id, type(exc).__name__)
                client.close_soon(CLOSE_GOING_AWAY, "")
                continue
            count += sent
            size += written
        if count:
            self.m_out.inc(count)
            self.m_bytes_out.inc(size)

    def _audience(self, event: Event) -> list[Client] | tuple[Client, ...]:
        if event.device_id is None and event.connection_id is None:
            return tuple(self.clients.values())
        chosen: dict[str, Client] = {}
        if event.device_id is not None:
            for client in self.by_principal.get(event.device_id, ()):
                chosen[client.id] = client
        if event.connection_id is not None:
            target = self.clients.get(event.connection_id)
            if target is not None:
                chosen[target.id] = target
        if event.include_admins:
            for client in self.admins:
                chosen[client.id] = client
        return list(chosen.values())

    # --- registry --------------------------------------------------------------------------------
    def _register(self, client: Client) -> bool:
        """Add a client; True when it is the principal's first live connection."""
        self.clients[client.id] = client
        group = self.by_principal.setdefault(client.principal.id, set())
        first = not group
        group.add(client)
        if client.principal.kind in ("user", "trusted"):
            self.admins.add(client)
        self.metrics.websocket_connections_active.set(len(self.clients))
        return first

    def _unregister(self, client: Client) -> bool:
        """Remove a client; True when it was the principal's last connection."""
        self.clients.pop(client.id, None)
        self.admins.discard(client)
        group = self.by_principal.get(client.principal.id)
        last = False
        if group is not None:
            group.discard(client)
            if not group:
                del self.by_principal[client.principal.id]
                last = True
        self.metrics.websocket_connections_active.set(len(self.clients))
        return last

    def summary(self) -> dict[str, Any]:
        devices = {pid: len(group) for pid, group in sorted(self.by_principal.items())}
        clients = sorted(self.clients.values(), key=lambda c: c.connected_at)
        return {
            "totalConnections": len(self.clients),
            "devices": devices,
            "clients": [c.describe() for c in clients],
        }

    # --- the endpoint ------------------------------------------------------------------------------
    def origin_allowed(self, origin: str, host: str | None) -> bool:
        """Browsers send Origin: only our own origins may open a socket (no cross-site hijacking)."""
        key = _origin_key(origin)
        if key is None:
            return False
        allowed: set[str] = set()
        base = _origin_key(self.base_url) if self.base_url else None
        if base:
            allowed.add(base)
        if host:
            for scheme in ("http", "https"):
                candidate = _origin_key(f"{scheme}://{host}")
                if candidate:
                    allowed.add(candidate)
        return key in allowed

    async def serve(self, ws: WebSocket) -> None:
        metrics = self.metrics
        origin = ws.headers.get("origin")
        if origin is not None and not self.origin_allowed(origin, ws.headers.get("host")):
            metrics.websocket_connections_total.labels(APP_LABEL, "rejected_origin").inc()
            log.warning("refused WebSocket from foreign origin %r", origin[:200])
            await ws.close(code=CLOSE_POLICY)
            return
        ip = str(ws.scope.get("state", {}).get("client_ip") or (ws.client.host if ws.client else ""))
        await ws.accept()
        principal = await self._authenticate(ws, ip)
        if principal is None:
            metrics.websocket_connections_total.labels(APP_LABEL, "auth_failed").inc()
            return
        wire = direct_wire(getattr(ws, "_receive", None), getattr(ws, "_send", None))
        client = Client(self, ws, principal, ip, ws.headers.get("user-agent", ""), wire)
        try:
            handle = self.connections.register(
                principal, lambda reason: self._credential_gone(client, reason)
            )
        except TooManyConnections as exc:
            metrics.websocket_connections_total.labels(APP_LABEL, "rejected_limit").inc()
            await self._fail(ws, exc.message, exc.code, CLOSE_TRY_AGAIN)
            return
        metrics.websocket_connections_total.labels(APP_LABEL, "accepted").inc()
        client.push(envelope("auth_success", {"deviceId": principal.id, "message": "authenticated"}))
        client.push(
            envelope(
                "hello",
                {
                    "message": "connected",
                    "nexusId": self.instance_id(),
                    "nekzusId": self.instance_id(),
                    "version": __version__,
                    "connectionId": client.id,
                    "timestamp": int(time.time()),
                },
            )
        )
        first = self._register(client)
        writer = self.spawn(client.run_writer(), f"ws-writer-{client.id}")
        if first:
            self.bus.emit(EventType.DEVICE_STATUS, {"deviceId": principal.id, "status": "online"})
        for hook in self.connect_hooks:
            self.spawn(self._run_hook(hook, client), "ws-connect-hook")
        close_code: int | None = None
        try:
            close_code = await self._read_loop(client)
        except Exception:
            log.exception("websocket %s reader failed", client.id)
        finally:
            handle.release()
            last = self._unregister(client)
            client.close_soon(CLOSE_NORMAL, "")
            if not writer.done():
                try:
                    await asyncio.wait_for(asyncio.shield(writer), 2.0)
                except (TimeoutError, asyncio.CancelledError, Exception):
                    writer.cancel()
            metrics.websocket_connection_duration_seconds.observe(time.time() - client.connected_at)
            await client.run_close_callbacks()
            if client.last_will is not None and close_code not in (CLOSE_NORMAL, None):
                topic, message = client.last_will
                self.deliver_client_message(topic, message, sender=principal.id)
            if last:
                self.bus.emit(EventType.DEVICE_STATUS, {"deviceId": principal.id, "status": "offline"})

    @staticmethod
    def _credential_gone(client: Client, reason: str) -> None:
        """The credential this socket was opened with was revoked, logged out or expired: say why, close."""
        code = "TOKEN_EXPIRED" if reason == EXPIRED else "CREDENTIAL_REVOKED"
        client.close_with_notice(
            CLOSE_POLICY, reason, envelope("session_closed", {"code": code, "reason": reason})
        )

    async def _run_hook(self, hook: ConnectHook, client: Client) -> None:
        try:
            await hook(client)
        except Exception:
            log.exception("websocket connect hook failed")

    async def _fail(self, ws: WebSocket, error: str, code: str, close: int = CLOSE_POLICY) -> None:
        data: dict[str, Any] = {"error": error, "code": code}
        if code in NUMERIC_CODES:
            data["numericCode"] = NUMERIC_CODES[code]
        try:
            await ws.send({"type": "websocket.send", "text": envelope("auth_failed", data)})
            await ws.send({"type": "websocket.close", "code": close, "reason": code.lower()[:100]})
        except Exception:
            log.debug("client left before auth_failed was sent")

    def _session_token(self, ws: WebSocket) -> str:
        """A dashboard page authenticates its socket with its session cookie (sent on the upgrade, which
        `serve` already limited to our own origins) instead of a token its scripts cannot see."""
        if self.cookie_token is None:
            return ""
        return self.cookie_token(ws.cookies)

    async def _authenticate(self, ws: WebSocket, ip: str) -> Principal | None:
        try:
            message = await asyncio.wait_for(ws.receive(), self.auth_timeout)
        except TimeoutError:
            await self._fail(ws, "timeout waiting for auth message", "AUTH_TIMEOUT")
            return None
        if message["type"] == "websocket.disconnect":
            return None
        raw = message.get("text")
        if raw is None:
            raw_bytes = message.get("bytes") or b""
            if len(raw_bytes) > MAX_FRAME:
                await self._fail(ws, "message too large", "MESSAGE_TOO_LARGE", CLOSE_TOO_BIG)
                return None
            raw = raw_bytes.decode("utf-8", "replace")
        if len(raw) > MAX_FRAME // 4 and len(raw.encode()) > MAX_FRAME:
            await self._fail(ws, "message too large", "MESSAGE_TOO_LARGE", CLOSE_TOO_BIG)
            return None
        self.m_in.inc()
        self.m_bytes_in.inc(len(raw))
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
        if not isinstance(obj, dict) or obj.get("type") != "auth":
            await self._fail(ws, "expected auth message", "AUTH_REQUIRED")
            return None
        data = obj.get("data")
        token: Any = data.get("token") if isinstance(data, dict) else obj.get("token")
        if token is None:
            token = ""
        if not isinstance(token, str) or len(token) > 8192:
            await self._fail(ws, "token must be a string", "INVALID_TOKEN")
            return None
        token = token.strip()
        if not token:
            token = self._session_token(ws)
        principal: Principal | None
        try:
            principal = await self.authenticator.authenticate_token(token, ip)
        except AuthError as exc:
            await self._fail(ws, exc.message, exc.code)
            return None
        except Exception:
            log.exception("websocket authentication error")
            await self._fail(ws, "authentication error", "INTERNAL_ERROR", 1011)
            return None
        if principal is None:
            if token:
                await self._fail(ws, "invalid token", "INVALID_TOKEN")
            else:
                await self._fail(ws, "token required for external connections", "AUTH_REQUIRED")
            return None
        decision = decide(principal, (REQUIRED_SCOPE,))
        if not decision.allowed:
            if decision.audit:
                await self._audit_denied(principal, ip)
            await self._fail(ws, decision.message, decision.code)
            return None
        return principal

    async def _audit_denied(self, principal: Principal, ip: str) -> None:
        """Scope denials are security events, on the WebSocket as on REST and the proxy (the audit log
        never raises: a failed write is logged there)."""
        await self.audit.record(
            "access.denied",
            actor=principal.id,
            target="/api/v1/ws",
            ip=ip,
            details={"required": [REQUIRED_SCOPE], "kind": principal.kind},
            success=False,
        )

    async def _read_loop(self, client: Client) -> int | None:
        ws = client.ws
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                code = message.get("code")
                return int(code) if code is not None else None
            if client.closing:
                continue
            raw = message.get("text")
            if raw is None:
                raw_bytes = message.get("bytes") or b""
                if len(raw_bytes) > MAX_FRAME:
                    self._too_big(client)
                    continue
                raw = raw_bytes.decode("utf-8", "replace")
            size = len(raw)
            if size > MAX_FRAME // 4:
                size = len(raw.encode())
                if size > MAX_FRAME:
                    self._too_big(client)
                    continue
            self.m_in.inc()
            self.m_bytes_in.inc(size)
            client.received += 1
            if not client.take_token():
                self._flooded(client)
                continue
            await self._dispatch(client, raw)

    def _too_big(self, client: Client) -> None:
        self.m_invalid.inc()
        client.push(
            envelope(
                "error", {"error": f"message larger than {MAX_FRAME} bytes", "code": "MESSAGE_TOO_LARGE"}
            )
        )
        client.close_soon(CLOSE_TOO_BIG, "message too big", flush=True)

    def _flooded(self, client: Client) -> None:
        self.m_rejected.inc()
        client._flood_rejections += 1
        if not client._flood_warned:
            client._flood_warned = True
            client.push(envelope("error", {"error": "too many messages, slow down", "code": "RATE_LIMITED"}))
        if client._flood_rejections >= FLOOD_LIMIT:
            log.warning("closing flooding WebSocket client %s (%s)", client.id, client.principal.rate_key)
            client.close_soon(CLOSE_POLICY, "message flood", flush=True)

    async def _error(self, client: Client, error: str, code: str, **extra: Any) -> None:
        self.m_invalid.inc()
        await client.send("error", {"error": error, "code": code, **extra})

    async def _dispatch(self, client: Client, raw: str) -> None:
        try:
            obj = json.loads(raw)
        except ValueError:
            await self._error(client, "message is not valid JSON", "INVALID_JSON")
            return
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str) or not obj["type"]:
            await self._error(client, "message must be an object with a string 'type'", "INVALID_MESSAGE")
            return
        msg_type: str = obj["type"][:100]
        data_raw = obj.get("data")
        data: dict[str, Any] = dict(data_raw) if isinstance(data_raw, dict) else {}
        for key, value in obj.items():
            if key not in ("type", "data"):
                data.setdefault(key, value)
        builtin = _BUILTIN.get(msg_type)
        if builtin is not None:
            await builtin(self, client, data_raw, data)
            return
        handler = self.handlers.get(msg_type)
        if handler is None:
            await self._error(client, f"unknown message type {msg_type!r}", "UNKNOWN_TYPE", type=msg_type)
            return
        try:
            await handler(client, data)
        except Exception:
            log.exception("websocket handler for %s failed", msg_type)
            await client.send(
                "error", {"error": "internal error", "code": "INTERNAL_ERROR", "type": msg_type}
            )

    # --- built-in messages -----------------------------------------------------------------------
    async def _on_ping(self, client: Client, data_raw: Any, _data: dict[str, Any]) -> None:
        await client.send("pong", data_raw if data_raw is not None else {"timestamp": int(time.time())})

    async def _on_ignore(self, client: Client, data_raw: Any, _data: dict[str, Any]) -> None:
        return None

    async def _on_auth(self, client: Client, data_raw: Any, _data: dict[str, Any]) -> None:
        await self._error(client, "already authenticated", "ALREADY_AUTHENTICATED")

    @staticmethod
    def _topics(data: dict[str, Any]) -> list[Any] | None:
        topics = data.get("topics")
        if topics is None and "topic" in data:
            topics = [data["topic"]]
        if isinstance(topics, str):
            topics = [topics]
        return topics if isinstance(topics, list) else None

    async def _on_subscribe(self, client: Client, data_raw: Any, data: dict[str, Any]) -> None:
        topics = self._topics(data)
        if not topics:
            self.m_invalid.inc()
            await client.send("suback", {"topics": [], "success": False, "error": "topics must be a list"})
            return
        try:
            patterns = [validate_pattern(t) for t in topics]
        except TopicError as exc:
            self.m_invalid.inc()
            await client.send(
                "suback", {"topics": topics[:MAX_SUBSCRIPTIONS], "success": False, "error": str(exc)}
            )
            return
        merged = list(client._subscriptions)
        for pattern in patterns:
            if pattern not in merged:
                merged.append(pattern)
        if len(merged) > MAX_SUBSCRIPTIONS:
            self.m_invalid.inc()
            await client.send(
                "suback",
                {
                    "topics": patterns[:MAX_SUBSCRIPTIONS],
                    "success": False,
                    "error": f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection",
                },
            )
            return
        client.subscriptions = merged
        await client.send("suback", {"topics": patterns, "success": True})

    async def _on_unsubscribe(self, client: Client, data_raw: Any, data: dict[str, Any]) -> None:
        topics = self._topics(data)
        if topics is None:
            self.m_invalid.inc()
            await client.send("unsuback", {"topics": [], "success": False, "error": "topics must be a list"})
            return
        names = [t for t in topics if isinstance(t, str)]
        client.subscriptions = [p for p in client._subscriptions if p not in names]
        await client.send("unsuback", {"topics": names, "success": True})

    async def _on_last_will(self, client: Client, data_raw: Any, data: dict[str, Any]) -> None:
        topic = data.get("topic") or ""
        if topic == "":
            client.last_will = None
            await client.send("lwtack", {"success": True, "cleared": True})
            return
        try:
            validate_pattern(topic)
            if "+" in topic.split(".") or "#" in topic.split("."):
                raise TopicError("a last-will topic must not contain wildcards")
        except TopicError as exc:
            self.m_invalid.inc()
            await client.send("lwtack", {"success": False, "error": str(exc)})
            return
        if not topic.startswith(CLIENT_TOPIC_PREFIX):
            topic = CLIENT_TOPIC_PREFIX + topic
        client.last_will = (topic, data.get("message"))
        await client.send("lwtack", {"success": True, "topic": topic})


_BUILTIN: dict[str, Callable[[Hub, Client, Any, dict[str, Any]], Awaitable[None]]] = {
    "ping": Hub._on_ping,
    "pong": Hub._on_ignore,
    "ack": Hub._on_ignore,
    "auth": Hub._on_auth,
    "subscribe": Hub._on_subscribe,
    "unsubscribe": Hub._on_unsubscribe,
    "set_last_will": Hub._on_last_will,
}
