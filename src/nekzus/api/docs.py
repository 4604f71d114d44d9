"""Human API docs at /api/docs, rendered in the browser from the OpenAPI document (no CDN needed)."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from nekzus.services import Services


def install(api: FastAPI, services: Services) -> None:
    page = resources.files("nekzus.api").joinpath("static/docs.html").read_text(encoding="utf-8")

    @api.get("/api/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})
