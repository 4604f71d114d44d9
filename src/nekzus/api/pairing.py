"""QR pairing: `GET /auth/qr`, `GET /auth/qr/status`, `POST /pair`, `GET /pair` (see `auth.enrollment`)."""

from __future__ import annotations

import base64
import html
import io
import json
import socket
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from nekzus.api.certificates import CERTIFICATES
from nekzus.api.deps import services_of
from nekzus.api.models import ERROR_RESPONSES
from nekzus.api.requests import auth_service, ip_of, read_json
from nekzus.api.security import require
from nekzus.auth.enrollment import create_code, redeem_code
from nekzus.auth.pairing import PairingCode, config_hash
from nekzus.auth.principal import ADMIN, Principal
from nekzus.auth.spki import spki_pins
from nekzus.http.errors import ApiError
from nekzus.services import Services

router = APIRouter(tags=["pairing"], responses=ERROR_RESPONSES)

REDEEM_BODY_LIMIT = 10 * 1024
QR_PIXELS = 256


class QrPayload(BaseModel):
    u: str
    c: str
    v: str


class QrResponse(BaseModel):
    qr: QrPayload
    code: str
    expiresAt: int


class RedeemRequest(BaseModel):
    code: str


def _instance_name() -> str:
    try:
        host = socket.gethostname().strip()
    except OSError:
        host = ""
    return f"Nekzus @ {host or 'Nexus'}"


async def _new_code(request: Request, principal: Principal) -> tuple[PairingCode, dict[str, Any]]:
    services: Services = services_of(request)
    service = auth_service(request)
    certs = services.domains.features.get(CERTIFICATES)
    # The certificate service knows what is served right now (SNI, hot swaps); the file is a fallback.
    pins = certs.served_pins() if certs is not None else spki_pins(services.tls_cert_path)

    def build(code: str, token: str, expires: float) -> dict[str, Any]:
        return {
            "baseUrl": services.base_url,
            "name": _instance_name(),
            "spkiPins": pins,
            "bootstrapToken": token,
            "capabilities": list(services.capabilities),
            "nexusId": services.nexus_id,
            "nekzusId": services.nexus_id,
            "expiresAt": int(expires),
        }

    entry = await create_code(service, build, actor=principal.id, ip=ip_of(request))
    payload = {"u": services.base_url, "c": entry.code, "v": config_hash(entry.code, entry.config)}
    return entry, payload


def _png(payload: dict[str, Any]) -> bytes:
    import segno

    qr = segno.make(json.dumps(payload, separators=(",", ":")), error="m", micro=False)
    width = qr.symbol_size(scale=1, border=4)[0]
    buf = io.BytesIO()
    qr.save(buf, kind="png", scale=max(1, QR_PIXELS // width), border=4)
    return buf.getvalue()


@router.get(
    "/api/v1/auth/qr",
    summary="A pairing QR code (JSON, or ?format=png)",
    response_model=QrResponse,
    responses={200: {"content": {"image/png": {}}}},
)
async def qr(
    request: Request,
    format: str = Query("json", description="json (default) or png"),
    principal: Principal = Depends(require(ADMIN)),
) -> Any:
    fmt = format.strip().lower()
    if fmt not in ("json", "png"):
        raise ApiError(400, "VALIDATION_ERROR", "format: must be json or png")
    entry, payload = await _new_code(request, principal)
    if fmt == "png":
        return Response(
            _png(payload),
            media_type="image/png",
            headers={"Cache-Control": "no-store", "X-Pairing-Code": entry.code},
        )
    return {"qr": payload, "code": entry.code, "expiresAt": int(entry.expires)}


@router.get("/api/v1/auth/qr/status", summary="Whether a pairing code is still valid or was redeemed")
async def qr_status(
    request: Request,
    code: str = Query("", description="the pairing code"),
    _principal: Principal = Depends(require(ADMIN)),
) -> dict[str, Any]:
    if not code.strip():
        raise ApiError(400, "MISSING_CODE", "code query parameter is required")
    status: dict[str, Any] = auth_service(request).pairing.status(code)
    return status


@router.post(
    "/api/v1/pair",
    summary="Redeem a pairing code for the pairing configuration",
    openapi_extra={
        "parameters": [
            {"name": "X-Pairing-Request", "in": "header", "required": True, "schema": {"type": "string"}}
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": RedeemRequest.model_json_schema()}},
        },
    },
)
async def redeem(request: Request) -> dict[str, Any]:
    service = auth_service(request)
    ip = ip_of(request)
    if request.headers.get("x-pairing-request", "").strip().lower() != "true":
        raise ApiError(400, "MISSING_HEADER", "X-Pairing-Request: true header is required")
    if service.pairing.locked(ip):
        raise ApiError(429, "RATE_LIMITED", "Too many pairing attempts, please try again later")
    body = await read_json(request, REDEEM_BODY_LIMIT)
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_REQUEST", "Request body must be a JSON object")
    code = body.get("code")
    if not isinstance(code, str) or not code.strip():
        raise ApiError(400, "INVALID_CODE", "Pairing code required")
    if len(code) > 64:
        code = code[:64]
    return await redeem_code(service, code, ip=ip)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Pair a device with Nekzus</title>
<style>body{{font-family:system-ui,sans-serif;background:#111;color:#eee;text-align:center;padding:2em}}
img{{background:#fff;padding:12px;border-radius:8px;width:256px;height:256px;image-rendering:pixelated}}
code{{font-size:1.6em;letter-spacing:.2em}}small{{color:#aaa}}</style></head>
<body><h1>Pair a device</h1>
<p>Scan this code with the Nekzus app.</p>
<img alt="Pairing QR code" src="data:image/png;base64,{png}">
<p>Or enter the code manually: <code id="code">{code}</code></p>
<p><small>{name} &middot; {nexus_id} &middot; {base_url}</small></p>
<p><small>The code expires in 5 minutes and works once. Reload the page for a new one.</small></p>
</body></html>
"""


@router.get(
    "/pair", summary="A page showing a pairing QR code for a phone to scan", response_class=HTMLResponse
)
async def pair_page(request: Request, principal: Principal = Depends(require(ADMIN))) -> HTMLResponse:
    services = services_of(request)
    entry, payload = await _new_code(request, principal)
    page = _PAGE.format(
        png=base64.b64encode(_png(payload)).decode(),
        code=html.escape(entry.code),
        name=html.escape(_instance_name()),
        nexus_id=html.escape(services.nexus_id),
        base_url=html.escape(services.base_url),
    )
    return HTMLResponse(
        page,
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'",
        },
    )
