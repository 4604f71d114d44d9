"""The identity service (`services.domains.auth`): the one authentication step, and the state behind it.

Every request is judged from memory: JWT signature/claims (PyJWT), then the live-device map, the
revoked-jti deny-list, the user set and the API-key hash map, all loaded at start-up and updated on
every change (and persisted). `lastSeenAt` / `lastUsedAt` are collected in memory and written by a
background flush at most once a minute per device or key.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import BindParameter, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql import Executable

from nekzus.auth import connections as conn
from nekzus.auth.connections import ConnectionRegistry
from nekzus.auth.models import (
    ApiKey,
    Device,
    User,
    api_keys_table,
    devices_table,
    revoked_tokens_table,
    users_table,
)
from nekzus.auth.pairing import PairingStore
from nekzus.auth.passwords import LoginLockout, Passwords
from nekzus.auth.principal import ADMIN, TRUSTED, AuthError, Headers, Principal
from nekzus.auth.tokens import TokenCodec
from nekzus.auth.usage import RequestCounter
from nekzus.errors import error_for
from nekzus.http.clientip import in_networks, parse_ip, parse_networks
from nekzus.secretfiles import load_or_create
from nekzus.store.db import upsert
from nekzus.timefmt import rfc3339_or_none

if TYPE_CHECKING:
    from pathlib import Path

    from nekzus.auth.activity import ActivityService
    from nekzus.auth.audit import AuditService
    from nekzus.config import Config
    from nekzus.http.clientip import IPNetwork
    from nekzus.metrics import Metrics
    from nekzus.store import Database
    from nekzus.tasks import Spawn

log = logging.getLogger("nekzus.auth")

API_KEY_RE = re.compile(r"^nekzus_[0-9a-f]{64}$")
SCOPE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}:[A-Za-z0-9_.*-]{1,64}$")
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")
SEEN_WRITE_INTERVAL = 60.0
FLUSH_PERIOD = 30.0
DENIAL_AUDIT_INTERVAL = 10.0
SUPPORTED_PLATFORMS = ("ios", "android", "web", "desktop", "linux", "macos", "windows")


def valid_device_id(device_id: str) -> bool:
    """1-100 printable chars, no path separators or `..`, not a reserved principal id."""
    return (
        0 < len(device_id) <= 100
        and "/" not in device_id
        and "\\" not in device_id
        and ".." not in device_id
        and device_id.isprintable()
        and device_id.strip() == device_id
        and not device_id.startswith("user-")
        and device_id != "local"
    )


def valid_scope(scope: str) -> bool:
    return bool(SCOPE_RE.match(scope))


def key_hash(key: str) -> str:
    # API keys carry 256 random bits, so a plain SHA-256 is a safe, fast lookup hash.
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(slots=True)
class DeviceState:
    session_id: str
    scopes: frozenset[str]
    name: str


@dataclass(slots=True)
class KeyState:
    id: str
    name: str
    scopes: frozenset[str]
    expires_at: float | None
    revoked_at: float | None


@dataclass
class _Dirty:
    """Latest in-memory timestamps and when each was last written."""

    latest: dict[str, float] = field(default_factory=dict)
    written: dict[str, float] = field(default_factory=dict)

    def touch(self, key: str, now: float) -> None:
        self.latest[key] = now

    def due(self, now: float, force: bool) -> dict[str, float]:
        out = {}
        for key, ts in self.latest.items():
            last = self.written.get(key)
            if last is None or (ts > last and (force or now - last >= SEEN_WRITE_INTERVAL)):
                out[key] = ts
        return out

    def forget(self, key: str) -> None:
        self.latest.pop(key, None)
        self.written.pop(key, None)


class AuthService:
    def __init__(
        self,
        config: Config,
        *,
        data_dir: Path,
        db: Database,
        metrics: Metrics,
        spawn: Spawn,
        audit_log: AuditService,
        activity_feed: ActivityService,
        local_networks: tuple[IPNetwork, ...],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock  # token and key expiry read this clock (tests inject their own)
        self.db = db
        self.spawn = spawn
        self.audit_log = audit_log
        self.activity_feed = activity_feed
        self.local_networks = local_networks
        cfg = config.auth
        secret = cfg.hs256_secret or load_or_create(data_dir / "jwt_secret")
        self.codec = TokenCodec(secret, cfg.issuer, cfg.audience, cfg.token_ttl, clock)
        self.default_scopes = tuple(dict.fromkeys(cfg.default_scopes))
        self.refresh_grace = cfg.refresh_grace
        boot = config.bootstrap
        self.pairing = PairingStore(
            permanent_tokens=tuple(t for t in boot.tokens if t), allow_any=boot.allow_any
        )
        self.passwords = Passwords()
        self.lockout = LoginLockout()
        # Every long-lived connection, by the credential it was opened with (closed on revocation).
        self.connections = ConnectionRegistry(
            clock=clock, max_per_principal=config.server.ws_max_per_principal
        )
        self.loaded = False
        self.devices: dict[str, DeviceState] = {}
        self.users: dict[str, bool] = {}
        self.revoked: dict[str, float] = {}
        self.keys: dict[str, KeyState] = {}
        self.seen = _Dirty()
        self.key_used = _Dirty()
        # Called after every committed change of devices, users, keys or revocations (other worker
        # processes then re-read the tables before their next request: see `resync`).
        self.changed: Callable[[], None] = lambda: None
        self.setup_seed: str | None = None
        self.announce_setup = True
        self.setup_token: str | None = None
        self._setup_lock = asyncio.Lock()
        self._denials: dict[str, float] = {}
        # A device is online while its last request is at most this old (`devices.offline_threshold`).
        self.online_window = float(config.devices.offline_threshold)
        self.usage = RequestCounter(db, clock)
        self.metrics = metrics
        # Per-request counters resolved once: label lookups take a lock and a dict walk each time.
        self._local_ok = metrics.auth_local_auth_total.labels("success")
        self._jwt_ok = metrics.auth_jwt_validations_total.labels("success")

    # -- start-up / shutdown --------------------------------------------------------------------

    async def reload_from_storage(self) -> None:
        """Re-read devices, users, API keys and revocations (after a backup restore replaced the tables)."""
        await self._read_tables()
        self.refresh_gauges()
        self.changed()

    async def _read_tables(self) -> None:
        devices: dict[str, DeviceState] = {}
        users: dict[str, bool] = {}
        revoked: dict[str, float] = {}
        keys: dict[str, KeyState] = {}
        now = self.clock()
        d, u, r, k = devices_table.c, users_table.c, revoked_tokens_table.c, api_keys_table.c
        cutoff = now - self.refresh_grace
        async with self.db.transaction() as tx:
            device_rows = await tx.rows(
                select(d.device_id, d.session_id, d.scopes, d.device_name, d.last_seen)
            )
            user_rows = await tx.rows(select(u.username, u.is_active))
            revoked_rows = await tx.rows(select(r.jti, r.expires_at).where(r.expires_at >= cutoff))
            key_rows = await tx.rows(select(k.key_hash, k.id, k.name, k.scopes, k.expires_at, k.revoked_at))
        for device in device_rows:
            devices[device.device_id] = DeviceState(
                device.session_id, frozenset(_loads_list(device.scopes)), device.device_name
            )
            if device.last_seen is not None:
                latest = max(device.last_seen, self.seen.latest.get(device.device_id, 0.0))
                self.seen.latest[device.device_id] = latest
                self.seen.written[device.device_id] = device.last_seen
        for user in user_rows:
            users[user.username] = bool(user.is_active)
        for row in revoked_rows:
            revoked[row.jti] = row.expires_at
        for key in key_rows:
            keys[key.key_hash] = KeyState(
                key.id, key.name, frozenset(_loads_list(key.scopes)), key.expires_at, key.revoked_at
            )
        self.devices, self.users, self.revoked, self.keys = devices, users, revoked, keys
        await self.usage.load()

    async def resync(self) -> None:
        """Re-read the tables after another worker process changed them, and close the long-lived
        connections (here) whose credential was revoked, re-paired, re-scoped or disabled there."""
        devices, users, revoked, keys = self.devices, self.users, self.revoked, self.keys
        await self._read_tables()
        for device_id, state in devices.items():
            now = self.devices.get(device_id)
            if now is None:
                self.connections.close_device(device_id, conn.DEVICE_REVOKED)
            elif now.session_id != state.session_id:
                self.connections.close_device(device_id, conn.REPAIRED)
            elif now.scopes != state.scopes:
                self.connections.close_device(device_id, conn.RESCOPED)
        for username, active in users.items():
            if active and not self.users.get(username, False):
                self.connections.close_user(username, conn.DISABLED)
        live = {k.id: k for k in self.keys.values()}
        for old in keys.values():
            new = live.get(old.id)
            if old.revoked_at is None and (new is None or new.revoked_at is not None):
                self.connections.close_api_key(old.id, conn.REVOKED)
        for jti in self.revoked.keys() - revoked.keys():
            self.connections.close_token(jti, conn.LOGGED_OUT)
        if self.users:
            self.setup_token = None
        self.refresh_gauges()

    async def _prune_revoked(self) -> None:
        """Drop deny-list rows past the refresh grace (no token they name can be used any more).

        Reading the tables never writes: with several worker processes, a worker that starts or
        re-reads while another one writes must not queue for SQLite's single write lock (and fail after
        its busy timeout). Pruning is housekeeping, so it is skipped when the lock is busy and done at the
        next start."""
        cutoff = self.clock() - self.refresh_grace
        try:
            await self.db.execute(
                delete(revoked_tokens_table).where(revoked_tokens_table.c.expires_at < cutoff)
            )
        except OperationalError as exc:
            log.info("expired revocations not pruned this time: %s", exc.orig)

    async def start(self) -> None:
        await self._read_tables()
        await self._prune_revoked()
        if not self.users:
            self.setup_token = self.setup_seed or secrets.token_urlsafe(24)
            # With no user yet, a one-time setup token is logged so first-run setup also works remotely.
            # With several worker processes they share one token, logged once (by the leader).
            log.log(
                logging.WARNING if self.announce_setup else logging.DEBUG,
                "No admin user exists yet. Create one from a trusted network, or remotely with the "
                "one-time setup token (header X-Setup-Token): %s",
                self.setup_token,
            )
        self.loaded = True
        self.refresh_gauges()
        self.spawn(self._flush_loop(), "auth-flush")

    async def stop(self) -> None:
        await self.flush(force=True)

    def reconfigure(self, _old: Config, new: Config) -> None:
        """Apply a reloaded config: scopes, grace, token lifetime, bootstrap tokens, trusted networks."""
        self.default_scopes = tuple(dict.fromkeys(new.auth.default_scopes))
        self.refresh_grace = new.auth.refresh_grace
        self.codec.ttl = new.auth.token_ttl
        self.pairing.permanent_tokens = tuple(t for t in new.bootstrap.tokens if t)
        self.metrics.auth_bootstrap_tokens_active.set(self.pairing.active_tokens())
        self.local_networks = parse_networks(new.auth.local_networks)
        self.connections.max_per_principal = new.server.ws_max_per_principal
        self.online_window = float(new.devices.offline_threshold)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_PERIOD)
            try:
                await self.flush()
            except Exception:
                log.warning("could not write last-seen times", exc_info=True)

    async def flush(self, force: bool = False) -> None:
        now = self.clock()
        # Deny-list entries past expiry + refresh grace can never be presented successfully again.
        for jti in [j for j, exp in self.revoked.items() if exp < now - self.refresh_grace]:
            del self.revoked[jti]
        seen = self.seen.due(now, force)
        used = self.key_used.due(now, force)
        if seen or used:
            d, k = devices_table, api_keys_table
            # One statement each, run once per (id, time) pair.
            of: BindParameter[str] = bindparam("of")
            at: BindParameter[float] = bindparam("at")
            async with self.db.transaction() as tx:
                if seen:
                    await tx.execute(
                        update(d).where(d.c.device_id == of).values(last_seen=at),
                        [{"of": device_id, "at": ts} for device_id, ts in seen.items()],
                    )
                if used:
                    await tx.execute(
                        update(k).where(k.c.id == of).values(last_used_at=at),
                        [{"of": key_id, "at": ts} for key_id, ts in used.items()],
                    )
            for device_id in seen:
                self.seen.written[device_id] = now
            for key_id in used:
                self.key_used.written[key_id] = now
        await self.usage.flush()
        self.refresh_gauges()

    def refresh_gauges(self) -> None:
        total = len(self.devices)
        online = self.online_count()
        self.metrics.devices_total.set(total)
        self.metrics.devices_online.set(online)
        self.metrics.devices_offline.set(total - online)
        self.metrics.auth_bootstrap_tokens_active.set(self.pairing.active_tokens())

    def online_count(self) -> int:
        cutoff = self.clock() - self.online_window
        return sum(1 for d in self.devices if self.seen.latest.get(d, 0.0) >= cutoff)

    # -- the authentication step ----------------------------------------------------------------

    def trusted(self, client_ip: str) -> bool:
        return in_networks(parse_ip(client_ip), self.local_networks)

    async def authenticate(self, headers: Headers, client_ip: str) -> Principal | None:
        return self.authenticate_now(headers, client_ip)

    def authenticate_now(self, headers: Headers, client_ip: str) -> Principal | None:
        """`authenticate` without the coroutine: every check is answered from memory (the proxy's
        direct path calls this from a protocol callback, where nothing may be awaited)."""
        credential = _credential(headers)
        if credential is None:
            if self.trusted(client_ip):
                self._local_ok.inc()
                return TRUSTED
            return None
        return self._judge(credential, client_ip)

    async def authenticate_token(self, token: str, client_ip: str) -> Principal | None:
        token = (token or "").strip()
        if not token:
            return TRUSTED if self.trusted(client_ip) else None
        principal = self._judge(token, client_ip)
        if principal.kind == "bootstrap":
            raise AuthError(401, "UNAUTHORIZED", "Bootstrap tokens can only be used for pairing")
        return principal

    def _judge(self, credential: str, client_ip: str) -> Principal:
        if not self.loaded:
            raise AuthError(503, "STORAGE_UNAVAILABLE", "Storage is starting up, try again shortly")
        try:
            if credential.startswith("nekzus_"):
                return self._api_key(credential)
            if credential.count(".") == 2:
                return self._jwt(credential)
            if credential and self.pairing.is_bootstrap(credential):
                return Principal("bootstrap", "bootstrap", frozenset(), name="bootstrap")
            raise AuthError(401, "UNAUTHORIZED", "Invalid token")
        except AuthError as exc:
            self._denied(exc, credential, client_ip)
            raise

    def _jwt(self, token: str) -> Principal:
        try:
            claims = self.codec.verify(token)
        except AuthError as exc:
            self.metrics.auth_jwt_validations_total.labels(
                "expired" if exc.code == "TOKEN_EXPIRED" else "invalid"
            ).inc()
            raise
        principal = self._principal_for(claims)
        self._jwt_ok.inc()
        if principal.kind == "device":
            now = self.clock()
            self.seen.touch(principal.id, now)
            self.usage.count(principal.id, now)
        return principal

    def device_name(self, device_id: str) -> str:
        """The paired device's name (its id when unknown)."""
        state = self.devices.get(device_id)
        return state.name if state is not None and state.name else device_id

    def _principal_for(self, claims: dict[str, Any]) -> Principal:
        """Revocation checks on signature-valid claims (shared by authentication and refresh)."""
        jti = claims["jti"]
        if jti in self.revoked:
            self.metrics.auth_jwt_validations_total.labels("revoked").inc()
            raise AuthError(401, "TOKEN_REVOKED", "Token has been revoked")
        subject: str = claims["sub"]
        if claims["typ"] == "user":
            username = subject.removeprefix("user-")
            if not subject.startswith("user-") or not self.users.get(username, False):
                raise AuthError(401, "UNAUTHORIZED", "User account no longer exists or is disabled")
            return Principal(
                "user", subject, frozenset({ADMIN}), name=username, token_id=jti, expires_at=claims["exp"]
            )
        state = self.devices.get(subject)
        if state is None or not secrets.compare_digest(state.session_id, str(claims.get("sid", ""))):
            self.metrics.auth_jwt_validations_total.labels("revoked").inc()
            raise AuthError(401, "DEVICE_REVOKED", "Device access has been revoked")
        return Principal(
            "device", subject, state.scopes, name=state.name, token_id=jti, expires_at=claims["exp"]
        )

    def _api_key(self, key: str) -> Principal:
        if not API_KEY_RE.match(key):
            raise AuthError(401, "UNAUTHORIZED", "Invalid API key")
        state = self.keys.get(key_hash(key))
        if state is None:
            raise AuthError(401, "UNAUTHORIZED", "Invalid API key")
        now = self.clock()
        if state.revoked_at is not None:
            raise AuthError(401, "UNAUTHORIZED", "API key has been revoked")
        if state.expires_at is not None and state.expires_at <= now:
            raise AuthError(401, "UNAUTHORIZED", "API key has expired")
        self.key_used.touch(state.id, now)
        return Principal("apikey", state.id, state.scopes, name=state.name, expires_at=state.expires_at)

    def _denied(self, exc: AuthError, credential: str, client_ip: str) -> None:
        """Audit a refused credential, at most once per (ip, reason, key or token subject) every few
        seconds: a flood is one row, but each revoked key or device that is tried shows up."""
        if exc.status != 401:
            return
        kind = "apikey" if credential.startswith("nekzus_") else "token"
        target = ""
        if kind == "apikey":
            state = self.keys.get(key_hash(credential)) if API_KEY_RE.match(credential) else None
            target = state.id if state else credential[:10]
        else:
            claims = self.codec.peek(credential)
            target = str(claims["sub"]) if claims else ""
        throttle_key = f"{client_ip}|{kind}|{exc.message}|{target}"
        now = self.clock()
        if now - self._denials.get(throttle_key, 0.0) < DENIAL_AUDIT_INTERVAL:
            return
        if len(self._denials) > 10_000:
            self._denials.clear()
        self._denials[throttle_key] = now
        action = "apikey.denied" if kind == "apikey" else "auth.token_rejected"
        self.spawn(
            self.audit(
                action,
                actor=target or "anonymous",
                target=target,
                ip=client_ip,
                details={"code": exc.code, "reason": exc.message},
                success=False,
            ),
            "audit",
        )

    def identify(self, scope: Mapping[str, Any]) -> str | None:
        """Rate-limit key for a request whose credential fully validates (memory only, no side effects).

        Only a credential that would be accepted gets a bucket of its own: an expired, revoked or
        unknown one is limited by the caller's address, so cycling dead tokens buys no extra requests.
        """
        try:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
            credential = _credential(headers)
            if not credential:
                return None
            now = time.time()
            if credential.startswith("nekzus_"):
                state = self.keys.get(key_hash(credential)) if API_KEY_RE.match(credential) else None
                if state is None or state.revoked_at is not None:
                    return None
                if state.expires_at is not None and state.expires_at <= now:
                    return None
                return f"apikey:{state.id}"
            if credential.count(".") != 2:
                return None
            claims = self.codec.peek(credential)
            if claims is None or claims["exp"] <= now or claims["jti"] in self.revoked:
                return None
            subject = str(claims["sub"])
            if claims["typ"] == "user":
                username = subject.removeprefix("user-")
                return f"user:{username}" if self.users.get(username, False) else None
            device = self.devices.get(subject)
            if device is None or not secrets.compare_digest(device.session_id, str(claims.get("sid", ""))):
                return None
            return f"device:{subject}"
        except Exception:
            return None

    # -- helpers for other parts of this domain -------------------------------------------------

    async def audit(
        self,
        action: str,
        *,
        actor: str,
        target: str = "",
        ip: str = "",
        details: dict[str, Any] | None = None,
        success: bool = True,
    ) -> None:
        await self.audit_log.record(
            action, actor=actor, target=target, ip=ip, details=details, success=success
        )

    async def activity(self, type_: str, message: str, **kwargs: Any) -> None:
        try:
            await self.activity_feed.add(type_, message, **kwargs)
        except Exception:
            log.warning("could not record activity %s", type_, exc_info=True)

    # -- tokens -----------------------------------------------------------------------------------

    def issue_device_token(self, device_id: str) -> dict[str, Any]:
        state = self.devices[device_id]
        token, _claims = self.codec.issue(device_id, state.scopes, kind="device", session_id=state.session_id)
        return {
            "accessToken": token,
            "expiresIn": round(self.codec.ttl),
            "scopes": sorted(state.scopes),
            "deviceId": device_id,
        }

    async def refresh(self, token: str, client_ip: str) -> dict[str, Any]:
        """A fresh token for a token expired up to the refresh grace, never for a revoked device."""
        if not self.loaded:
            raise error_for(503, "STORAGE_UNAVAILABLE", "Storage is starting up, try again shortly")
        try:
            claims = self.codec.verify(token, allow_expired=True)
            if claims["exp"] < self.clock() - self.refresh_grace:
                raise AuthError(
                    401,
                    "TOKEN_EXPIRED_BEYOND_GRACE",
                    "Token expired too long ago to refresh. Please re-pair your device.",
                )
            principal = self._principal_for(claims)
        except AuthError as exc:
            self.metrics.auth_refresh_total.labels("failure").inc()
            await self.audit(
                "auth.refresh",
                actor="anonymous",
                ip=client_ip,
                details={"code": exc.code},
                success=False,
            )
            raise
        self.metrics.auth_refresh_total.labels("success").inc()
        if principal.kind == "user":
            new_token, _ = self.codec.issue(principal.id, principal.scopes, kind="user")
            return {
                "accessToken": new_token,
                "token": new_token,
                "expiresIn": round(self.codec.ttl),
                "scopes": sorted(principal.scopes),
                "deviceId": principal.id,
            }
        self.seen.touch(principal.id, self.clock())
        return self.issue_device_token(principal.id)

    async def revoke_token(self, principal: Principal, claims_exp: float | None = None) -> None:
        """Put one token id on the persisted deny-list (logout)."""
        if not principal.token_id:
            return
        exp = (
            claims_exp if claims_exp is not None else (principal.expires_at or self.clock() + self.codec.ttl)
        )
        self.revoked[principal.token_id] = exp
        self.connections.close_token(principal.token_id, conn.LOGGED_OUT)
        add = sqlite_insert(revoked_tokens_table).values(
            jti=principal.token_id, subject=principal.id, expires_at=exp, revoked_at=self.clock()
        )
        await self.db.execute(add.on_conflict_do_nothing(index_elements=["jti"]))
        self.changed()

    # -- devices ----------------------------------------------------------------------------------

    def may_repair(self, device_id: str, proof: str, client_ip: str) -> bool:
        """Whether a pairing may take over the existing id `device_id`.

        Device ids are visible to every credential, so knowing one proves nothing. Re-pairing needs
        proof of possession (the device's current token, expired within the refresh grace but not
        revoked or superseded) or an administrator (a user token, or a trusted network).
        """
        if self.trusted(client_ip):
            return True
        proof = proof.strip()
        if not proof or proof.count(".") != 2:
            return False
        try:
            claims = self.codec.verify(proof, allow_expired=True)
            if claims["exp"] < self.clock() - self.refresh_grace:
                return False
            principal = self._principal_for(claims)
        except AuthError:
            return False
        return principal.kind == "user" or principal.id == device_id

    async def pair_device(self, device: dict[str, Any]) -> dict[str, Any]:
        """Create (or re-pair) a device: a new session id cuts off any older tokens of the same id."""
        device_id = device["id"]
        now = self.clock()
        scopes = list(self.default_scopes)
        session_id = secrets.token_hex(16)
        name = device["name"]
        fields = {
            "device_name": name,
            "platform": device["platform"],
            "platform_version": device.get("platformVersion", ""),
            "model": device.get("model", ""),
            "push_token": device.get("pushToken", ""),
            "scopes": json.dumps(scopes),
            "session_id": session_id,
            "last_seen": now,
            "spki_pins": json.dumps(list(device.get("spkiPins") or [])),
        }
        # A re-pairing keeps the device's first pairing time; everything else is replaced.
        first = {"created_at": now}
        await self.db.execute(upsert(devices_table, {"device_id": device_id}, fields, first=first))
        self.devices[device_id] = DeviceState(session_id, frozenset(scopes), name)
        self.changed()
        self.connections.close_device(device_id, conn.REPAIRED)
        self.seen.latest[device_id] = now
        self.seen.written[device_id] = now
        self.refresh_gauges()
        return self.issue_device_token(device_id)

    def device_json(self, row: Device) -> dict[str, Any]:
        last_seen = max(self.seen.latest.get(row.device_id, 0.0), row.last_seen or 0.0) or None
        online = last_seen is not None and last_seen >= self.clock() - self.online_window
        scopes = sorted(_loads_list(row.scopes))
        return {
            "deviceId": row.device_id,
            "deviceName": row.device_name,
            "platform": row.platform,
            "platformVersion": row.platform_version,
            "model": row.model,
            "scopes": scopes,
            "createdAt": rfc3339_or_none(row.created_at),
            "lastSeenAt": rfc3339_or_none(last_seen),
            "status": "online" if online else "offline",
            "online": online,
            "requestsToday": self.usage.today(row.device_id),
            # What the device pins (received when it paired); empty when it paired over plain HTTP.
            "spkiPins": _loads_list(row.spki_pins or "[]"),
            # The older field names, which the existing web dashboard reads.
            "id": row.device_id,
            "name": row.device_name,
            "pairedAt": rfc3339_or_none(row.created_at),
            "lastSeen": rfc3339_or_none(last_seen),
        }

    async def list_devices(self, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        rows = await self.db.rows(select(devices_table))
        items = [self.device_json(Device.from_row(r)) for r in rows]
        items.sort(key=lambda d: (d["lastSeenAt"] or "", d["createdAt"] or "", d["deviceId"]), reverse=True)
        total = len(items)
        if limit == 0:
            return [], total
        items = items[offset:] if limit < 0 else items[offset : offset + limit]
        return items, total

    async def get_device(self, device_id: str) -> dict[str, Any]:
        row = await self.db.first(select(devices_table).where(devices_table.c.device_id == device_id))
        if row is None:
            raise error_for(404, "DEVICE_NOT_FOUND", "Device not found")
        return self.device_json(Device.from_row(row))

    async def update_device(
        self, device_id: str, name: str | None, scopes: list[str] | None
    ) -> dict[str, Any]:
        changes: dict[str, str] = {}
        if name is not None:
            changes["device_name"] = name
        if scopes is not None:
            changes["scopes"] = json.dumps(sorted(set(scopes)))
        d = devices_table
        if changes:
            stmt: Executable = update(d).where(d.c.device_id == device_id).values(**changes).returning(*d.c)
        else:
            stmt = select(d).where(d.c.device_id == device_id)
        found = await self.db.first(stmt)
        if found is None:
            raise error_for(404, "DEVICE_NOT_FOUND", "Device not found")
        row = Device.from_row(found)
        state = self.devices.get(device_id)
        if state is not None:
            if name is not None:
                state.name = name
            if scopes is not None:
                state.scopes = frozenset(scopes)
        self.changed()
        if scopes is not None:
            # Connections were authorised with the old scopes: they must reconnect under the new ones.
            self.connections.close_device(device_id, conn.RESCOPED)
        return self.device_json(row)

    async def revoke_device(self, device_id: str) -> bool:
        """Delete the device and cut off every token it holds (memory first, so nothing slips through)."""
        self.devices.pop(device_id, None)
        self.connections.close_device(device_id, conn.DEVICE_REVOKED)
        result = await self.db.execute(delete(devices_table).where(devices_table.c.device_id == device_id))
        self.changed()
        self.seen.forget(device_id)
        self.refresh_gauges()
        return result.rowcount > 0

    # -- users ------------------------------------------------------------------------------------

    async def user_count(self) -> int:
        return int(await self.db.scalar(select(func.count()).select_from(users_table)) or 0)

    def setup_token_ok(self, presented: str) -> bool:
        return bool(self.setup_token and presented and secrets.compare_digest(self.setup_token, presented))

    async def create_first_user(self, username: str, password: str) -> User:
        async with self._setup_lock:
            if await self.user_count() > 0:
                raise error_for(
                    400,
                    "SETUP_ALREADY_COMPLETED",
                    "Setup has already been completed. Please use the login page.",
                )
            password_hash = await self.passwords.hash(password)
            created_at = self.clock()
            user_id = await self.db.scalar(
                insert(users_table)
                .values(username=username, password_hash=password_hash, created_at=created_at, is_active=True)
                .returning(users_table.c.id)
            )
            user = User(
                id=int(user_id),
                username=username,
                password_hash=password_hash,
                created_at=created_at,
                last_login=None,
                is_active=True,
            )
            self.users[username] = True
            self.setup_token = None
            self.changed()
        return user

    async def find_user(self, username: str) -> User | None:
        row = await self.db.first(select(users_table).where(users_table.c.username == username))
        return None if row is None else User.from_row(row)

    async def mark_login(self, user: User) -> User:
        """Record a successful login; returns the user with its new `last_login`."""
        now = self.clock()
        await self.db.execute(update(users_table).where(users_table.c.id == user.id).values(last_login=now))
        return replace(user, last_login=now)

    async def set_user_active(self, username: str, active: bool) -> None:
        """Enable or disable a user; disabling cuts off its tokens and open connections at once."""
        await self.db.execute(
            update(users_table).where(users_table.c.username == username).values(is_active=active)
        )
        if username in self.users:
            self.users[username] = active
        self.changed()
        if not active:
            self.connections.close_user(username, conn.DISABLED)

    def issue_user_token(self, username: str) -> str:
        token, _ = self.codec.issue(f"user-{username}", [ADMIN], kind="user")
        return token

    # -- API keys ---------------------------------------------------------------------------------

    async def create_api_key(
        self, name: str, scopes: Iterable[str], expires_at: float | None, created_by: str
    ) -> tuple[ApiKey, str]:
        key = "nekzus_" + secrets.token_hex(32)
        digest = key_hash(key)
        row = ApiKey(
            id="key_" + secrets.token_hex(16),
            name=name,
            key_hash=digest,
            prefix=key[:10],
            scopes=json.dumps(sorted(set(scopes))),
            expires_at=expires_at,
            last_used_at=None,
            created_at=self.clock(),
            created_by=created_by,
            revoked_at=None,
        )
        await self.db.execute(insert(api_keys_table).values(**asdict(row)))
        self.keys[digest] = KeyState(row.id, name, frozenset(_loads_list(row.scopes)), expires_at, None)
        self.changed()
        return row, key

    def api_key_json(self, row: ApiKey) -> dict[str, Any]:
        used = max(self.key_used.latest.get(row.id, 0.0), row.last_used_at or 0.0) or None
        return {
            "id": row.id,
            "name": row.name,
            "prefix": row.prefix,
            "scopes": sorted(_loads_list(row.scopes)),
            "expiresAt": rfc3339_or_none(row.expires_at),
            "lastUsedAt": rfc3339_or_none(used),
            "createdAt": rfc3339_or_none(row.created_at),
            "createdBy": row.created_by,
            "revokedAt": rfc3339_or_none(row.revoked_at),
        }

    async def list_api_keys(self) -> list[dict[str, Any]]:
        k = api_keys_table
        rows = await self.db.rows(select(k).order_by(k.c.created_at.desc(), k.c.id))
        return [self.api_key_json(ApiKey.from_row(r)) for r in rows]

    async def get_api_key(self, key_id: str) -> ApiKey:
        row = await self.db.first(select(api_keys_table).where(api_keys_table.c.id == key_id))
        if row is None:
            raise error_for(404, "NOT_FOUND", "API key not found")
        return ApiKey.from_row(row)

    async def revoke_api_key(self, key_id: str, permanent: bool) -> ApiKey:
        now = self.clock()
        # Memory first, so no request passes on the key while its row is being changed.
        digest = next((h for h, state in self.keys.items() if state.id == key_id), None)
        if digest is not None:
            if permanent:
                del self.keys[digest]
            else:
                self.keys[digest].revoked_at = now
        k = api_keys_table
        if permanent:
            stmt: Executable = delete(k).where(k.c.id == key_id).returning(*k.c)
        else:
            stmt = update(k).where(k.c.id == key_id).values(revoked_at=now).returning(*k.c)
        found = await self.db.first(stmt)
        if found is None:
            raise error_for(404, "NOT_FOUND", "API key not found")
        row = ApiKey.from_row(found)
        self.changed()
        self.connections.close_api_key(key_id, conn.REVOKED)
        if permanent:
            self.key_used.forget(key_id)
        return row


def _credential(headers: Headers) -> str | None:
    """The presented credential: `X-API-Key`, else a Bearer token. Other schemes are not ours."""
    api_key = headers.get("x-api-key") or headers.get("X-API-Key")
    if api_key is not None and api_key.strip():
        return api_key.strip()
    auth = headers.get("authorization") or headers.get("Authorization")
    if not auth:
        return None
    scheme, _, value = auth.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip()


def _loads_list(text: str | None) -> list[str]:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []
