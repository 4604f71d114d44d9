"""Device pairing: a pairing code (shown as a QR code) is redeemed for the pairing configuration with a
bootstrap token, and the bootstrap token (`POST /api/v1/auth/pair`) turns into a device and its first token.

Creating and redeeming codes are audited; a failed redemption of an unknown code waits a random 1-5 ms so
its timing does not tell a near miss from a wrong guess.

Pairing a device, in order: a pairing onto an id that is already paired needs proof (that device's current
token, or an administrator); the bootstrap token is claimed (checked and spent in one step); a re-paired
device starts clean (what other domains stored for its old pairing is forgotten); the device is stored
with a fresh session, so tokens of the old pairing stop working; its old sockets are closed; then the
pairing is announced, measured, and written to the activity feed and the audit log. Revoking a device
ends its tokens at once and is announced the same way (the other domains drop its sockets and state).

What other domains keep per device is reached through the narrow callables this service receives, so
`auth` depends on none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nekzus.errors import Conflict, NekzusError

if TYPE_CHECKING:
    from nekzus.auth.pairing import PairingCode
    from nekzus.auth.service import AuthService
    from nekzus.metrics import Metrics

log = logging.getLogger("nekzus.auth")

# Proof of possession when pairing onto an existing device id: that device's current token.
DEVICE_TOKEN_HEADER = "X-Device-Token"  # noqa: S105 - a header name, not a secret

ForgetDevice = Callable[[str], Awaitable[Any]]
CloseDevice = Callable[[str, str], Awaitable[Any]]
AnnouncePaired = Callable[[str, str, str], None]
AnnounceRevoked = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class NewDevice:
    """What a device says about itself when pairing (`id` None: the server picks one)."""

    id: str | None
    name: str
    platform: str
    platform_version: str = ""
    model: str = ""
    push_token: str = ""

    def display_name(self) -> str:
        return self.name.strip() or self.model.strip() or f"{self.platform} Device"


class DeviceEnrollment:
    """Pairing, renaming/re-scoping and revoking devices, with their side effects in other domains."""

    def __init__(
        self,
        auth: AuthService,
        *,
        metrics: Metrics,
        forget: Sequence[ForgetDevice],
        close_device: CloseDevice,
        announce_paired: AnnouncePaired,
        announce_revoked: AnnounceRevoked,
        announce_updated: AnnounceRevoked | None = None,
    ) -> None:
        """`forget` drop what other domains stored for a device id (upstream sessions, queued notifications)
        before it is paired again; `close_device` closes its sockets; `announce_paired(device_id, name,
        platform)` and `announce_revoked(device_id)` publish the change (revocation also makes the other
        domains drop the device's sockets and stored state)."""
        self.auth = auth
        self.metrics = metrics
        self.forget = tuple(forget)
        self.close_device = close_device
        self.announce_paired = announce_paired
        self.announce_revoked = announce_revoked
        # `announce_updated(device_id)` publishes a rename or re-scope (dashboards refresh the device).
        self.announce_updated = announce_updated

    async def pair(self, token: str, device: NewDevice, *, proof: str, ip: str) -> dict[str, Any]:
        """Pair `device` with the bootstrap `token`; returns its first token (the API's token response)."""
        auth = self.auth
        device_id = device.id or "dev-" + secrets.token_urlsafe(8)
        existed = device_id in auth.devices
        if existed and not auth.may_repair(device_id, proof, ip):
            await auth.audit(
                "device.pair",
                actor="anonymous",
                target=device_id,
                ip=ip,
                details={"code": "DEVICE_EXISTS"},
                success=False,
            )
            raise Conflict(
                "A device with this id is already paired: re-pairing needs its current token "
                f"({DEVICE_TOKEN_HEADER}) or an administrator",
                code="DEVICE_EXISTS",
            )
        # `claim` checks and spends the token in one synchronous step: racing pairings cannot share it.
        try:
            grant = auth.pairing.claim(token)
        except NekzusError as exc:
            self.metrics.auth_pairing_total.labels("failure", "unknown").inc()
            details = {"code": exc.code}
            await auth.audit("device.pair", actor="anonymous", ip=ip, details=details, success=False)
            raise
        name = device.display_name()
        started = time.monotonic()
        if existed:
            # A new pairing starts clean: nothing stored for the old one passes to it; scopes are reset
            # to the defaults by pair_device.
            for forget in self.forget:
                await forget(device_id)
        result = await auth.pair_device(
            {
                "id": device_id,
                "name": name,
                "platform": device.platform,
                "platformVersion": device.platform_version,
                "model": device.model,
                "pushToken": device.push_token,
                "spkiPins": auth.pairing.pins_of(grant),
            }
        )
        if existed:
            with contextlib.suppress(Exception):  # closing stale sockets is best effort
                await self.close_device(device_id, "device re-paired")
        self.announce_paired(device_id, name, device.platform)
        self.metrics.auth_pairing_total.labels("success", device.platform).inc()
        self.metrics.auth_pairing_duration_seconds.observe(time.monotonic() - started)
        await auth.activity(
            "device_paired", f"Device paired: {name}", icon="Smartphone", icon_class="success", key=device_id
        )
        await auth.audit(
            "device.paired",
            actor=device_id,
            target=device_id,
            ip=ip,
            details={"platform": device.platform, "model": device.model, "bootstrap": grant.kind},
        )
        return result

    async def update(
        self, device_id: str, name: str | None, scopes: list[str] | None, *, actor: str, ip: str
    ) -> dict[str, Any]:
        """Rename and/or re-scope a device; returns it as the API shows it."""
        result = await self.auth.update_device(device_id, name, scopes)
        details: dict[str, Any] = {}
        if name is not None:
            details["deviceName"] = name
        if scopes is not None:
            details["scopes"] = sorted(set(scopes))
        self.metrics.device_operations_total.labels("update", "success").inc()
        await self.auth.audit("device.updated", actor=actor, target=device_id, ip=ip, details=details)
        if self.announce_updated is not None:
            self.announce_updated(device_id)
        return result

    async def revoke(self, device_id: str, *, actor: str, ip: str) -> None:
        """Revoke a device: its tokens stop working at once and its sockets close."""
        auth = self.auth
        device = await auth.get_device(device_id)
        await auth.revoke_device(device_id)
        self.announce_revoked(device_id)
        self.metrics.device_operations_total.labels("revoke", "success").inc()
        name = device["deviceName"]
        await auth.activity("device_revoked", f"Device revoked: {name}", icon="XCircle", key=device_id)
        await auth.audit("device.revoked", actor=actor, target=device_id, ip=ip, details={"deviceName": name})


async def create_code(
    auth: AuthService, build: Callable[[str, str, float], dict[str, Any]], *, actor: str, ip: str
) -> PairingCode:
    """A new pairing code whose configuration `build(code, bootstrap_token, expires_at)` makes."""
    try:
        entry = auth.pairing.create(build)
    except NekzusError:
        await auth.audit("pairing.qr", actor=actor, ip=ip, details={"reason": "cap"}, success=False)
        raise
    auth.refresh_gauges()
    await auth.audit("pairing.qr", actor=actor, ip=ip)
    return entry


async def redeem_code(auth: AuthService, code: str, *, ip: str) -> dict[str, Any]:
    """The pairing configuration of `code` (spent by this call)."""
    try:
        config = auth.pairing.redeem(code, ip)
    except NekzusError as exc:
        if exc.status == 404:
            await asyncio.sleep((1 + secrets.randbelow(4000) / 1000) / 1000)
        await auth.audit(
            "pairing.redeem", actor="anonymous", ip=ip, details={"code": exc.code}, success=False
        )
        raise
    await auth.audit("pairing.redeem", actor="anonymous", ip=ip)
    return config
