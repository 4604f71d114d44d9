"""`POST /api/v1/webhooks/activity` and `/notify` .

Any authenticated caller: API keys work from anywhere (older versions checked the key and then a
JWT demanded anyway), JWTs and trusted-network callers too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from nekzus.api.deps import services_of
from nekzus.api.security import require
from nekzus.errors import NekzusError
from nekzus.http.errors import ApiError
from nekzus.metrics import Metrics
from nekzus.services import Services

# Webhooks push messages to every connected client, so they are a mutation: `write:*` (or admin) only.
WEBHOOK_SCOPE = "write:webhooks"

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])

DeviceIds = list[str]


class ActivityWebhook(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")
    message: str = Field(min_length=1, max_length=2000)
    icon: str = Field(default="Bell", max_length=64)
    iconClass: str = Field(
        default="", max_length=64, validation_alias=AliasChoices("iconClass", "icon_class")
    )
    details: str | None = Field(default=None, max_length=10000)
    deviceIds: DeviceIds = Field(
        default_factory=list, max_length=1000, validation_alias=AliasChoices("deviceIds", "device_ids")
    )


class NotifyWebhook(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")
    type: str | None = Field(default=None, max_length=128)
    data: dict[str, Any] | None = None
    deviceIds: DeviceIds = Field(
        default_factory=list, max_length=1000, validation_alias=AliasChoices("deviceIds", "device_ids")
    )


class ActivityReply(BaseModel):
    success: bool
    eventId: str


class NotifyReply(BaseModel):
    success: bool
    sent: bool


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema(by_alias=False)}},
        }
    }


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # malformed, or nested deeper than the parser will go
        raise ApiError(400, "INVALID_REQUEST", "Invalid JSON payload") from None
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_REQUEST", "Invalid JSON payload")
    return body


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first.get("loc", ()))
    if first.get("type") == "missing":
        return f"Missing required field: {field}"
    return f"{field}: {first.get('msg', 'invalid value')}" if field else str(first.get("msg"))


def _clean_ids(ids: list[str]) -> list[str]:
    out = []
    for value in ids:
        value = value.strip()
        if not value or len(value) > 255:
            raise ApiError(
                400, "INVALID_REQUEST", "deviceIds must be non-empty strings of at most 255 characters"
            )
        out.append(value)
    return out


@contextmanager
def _measured(metrics: Metrics, endpoint: str) -> Iterator[None]:
    """Count the call as success or error and time the successful ones."""
    started = time.perf_counter()
    try:
        yield
    except NekzusError:
        metrics.webhook_requests_total.labels(endpoint, "error").inc()
        raise
    metrics.webhook_requests_total.labels(endpoint, "success").inc()
    metrics.webhook_request_duration_seconds.labels(endpoint).observe(time.perf_counter() - started)


@router.post(
    "/activity",
    response_model=ActivityReply,
    openapi_extra=_schema(ActivityWebhook),
    summary="Create an activity event and push it to devices",
)
async def activity_webhook(
    request: Request, _principal: Any = Depends(require(WEBHOOK_SCOPE))
) -> dict[str, Any]:
    from nekzus.events.webhooks import deliver

    services = services_of(request)
    with _measured(services.metrics, "activity"):
        body = await _body(request)
        if not isinstance(body.get("message"), str) or not body["message"].strip():
            raise ApiError(400, "INVALID_REQUEST", "Missing required field: message")
        try:
            hook = ActivityWebhook.model_validate(body)
        except ValidationError as exc:
            raise ApiError(400, "INVALID_REQUEST", _validation_message(exc)) from None
        targets = _clean_ids(hook.deviceIds)
        event_id = f"webhook-{time.time_ns()}"
        event: dict[str, Any] = {
            "id": event_id,
            "type": "webhook.activity",
            "icon": hook.icon or "Bell",
            "iconClass": hook.iconClass,
            "message": hook.message,
            "timestamp": int(time.time() * 1000),
        }
        if hook.details:
            event["details"] = hook.details
        activity = services.domains.activity
        if True:
            try:
                stored = await activity.add(
                    "webhook.activity",
                    hook.message,
                    icon=event["icon"],
                    icon_class=hook.iconClass,
                    details=hook.details,
                    event_id=event_id,
                )
            except Exception:
                raise ApiError(500, "ACTIVITY_ADD_FAILED", "Failed to record the activity event") from None
            if isinstance(stored, dict):
                event = {**event, **{k: v for k, v in stored.items() if v is not None}}
                event_id = str(event.get("id") or event_id)
        d = services.domains
        await deliver(services.bus, d.hub, d.notifications, event, targets, "webhook.activity")
    return {"success": True, "eventId": event_id}


@router.post(
    "/notify",
    response_model=NotifyReply,
    openapi_extra=_schema(NotifyWebhook),
    summary="Push an arbitrary `webhook` message to devices",
)
async def notify_webhook(
    request: Request, _principal: Any = Depends(require(WEBHOOK_SCOPE))
) -> dict[str, Any]:
    from nekzus.events.webhooks import deliver

    services = services_of(request)
    with _measured(services.metrics, "notify"):
        body = await _body(request)
        try:
            hook = NotifyWebhook.model_validate(body)
        except ValidationError as exc:
            raise ApiError(400, "INVALID_REQUEST", _validation_message(exc)) from None
        targets = _clean_ids(hook.deviceIds)
        payload: dict[str, Any] = {}
        if hook.type is not None:
            payload["type"] = hook.type
        if hook.data is not None:
            payload["data"] = hook.data
        payload["deviceIds"] = targets
        d = services.domains
        await deliver(services.bus, d.hub, d.notifications, payload, targets, "webhook.notify")
    return {"success": True, "sent": True}


def install(api: FastAPI, services: Services) -> None:
    api.include_router(router)
