"""App favicons, fetched only from the app's own upstream (never a URL the page points elsewhere to).

Order: `/favicon.ico`, `/favicon.png`, then the `<link rel=icon>` of the root page. Results are cached
per app (24 h; failures 5 min); bodies are capped at 1 MiB and must be a raster image whose bytes
match a known format: an upstream's SVG could carry script, and it would run on Nekzus' origin.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from nekzus.catalog.spec import RouteSpec

MAX_ICON_BYTES = 1024 * 1024
MAX_PAGE_BYTES = 64 * 1024
OK_TTL = 86400.0
FAIL_TTL = 300.0
TIMEOUT = 10.0

_LINK = re.compile(r"<link\b[^>]*>", re.I)
_REL = re.compile(r"""\brel\s*=\s*["']?([^"'>]*)""", re.I)
_HREF = re.compile(r"""\bhref\s*=\s*["']([^"']+)["']""", re.I)


# Raster formats recognised by their first bytes; the upstream's Content-Type is not trusted.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\x00\x00\x01\x00", "image/x-icon"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"BM", "image/bmp"),
)


def sniff_raster(body: bytes) -> str | None:
    """The content type of a raster image, judged by its bytes alone; None for anything else."""
    for magic, ctype in _MAGIC:
        if body.startswith(magic):
            return ctype
    if body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        return "image/webp"
    return None


@dataclass(slots=True)
class Favicon:
    body: bytes
    content_type: str
    fetched_at: float


class FaviconFetcher:
    def __init__(self) -> None:
        self._cache: dict[str, tuple[Favicon | None, float, str]] = {}

    def invalidate(self, app_id: str) -> None:
        self._cache.pop(app_id, None)

    async def get(self, app_id: str, route: RouteSpec) -> Favicon | None:
        now = time.time()
        cached = self._cache.get(app_id)
        if cached is not None and cached[2] == route.to:
            icon, at, _ = cached
            if now - at < (OK_TTL if icon is not None else FAIL_TTL):
                return icon
        icon = await self._fetch(route)
        self._cache[app_id] = (icon, now, route.to)
        if len(self._cache) > 1000:
            self._cache.pop(next(iter(self._cache)))
        return icon

    async def _fetch(self, route: RouteSpec) -> Favicon | None:
        import aiohttp

        base = route.to.rstrip("/")
        origin = urlsplit(route.to)
        ssl: Any = not route.tls_skip_verify
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        headers = {"User-Agent": "Nekzus/1.0"}
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
            for path in ("/favicon.ico", "/favicon.png"):
                icon = await self._image(session, base + path, ssl)
                if icon is not None:
                    return icon
            try:
                async with session.get(base + "/", ssl=ssl, allow_redirects=False) as resp:
                    if resp.status != 200:
                        return None
                    page = (await resp.content.read(MAX_PAGE_BYTES)).decode("utf-8", "replace")
            except (aiohttp.ClientError, TimeoutError, ValueError):
                return None
            for tag in _LINK.findall(page):
                rel = _REL.search(tag)
                href = _HREF.search(tag)
                if not rel or not href or "icon" not in rel.group(1).lower():
                    continue
                ref = href.group(1).strip()
                prefix = route.path_base.rstrip("/")
                if ref.startswith(prefix + "/"):
                    ref = ref[len(prefix) :]
                url = urljoin(base + "/", ref)
                target = urlsplit(url)
                # Only the route's own upstream: same scheme, host and port.
                if (target.scheme, target.hostname, target.port) != (
                    origin.scheme,
                    origin.hostname,
                    origin.port,
                ):
                    continue
                icon = await self._image(session, url, ssl)
                if icon is not None:
                    return icon
        return None

    async def _image(self, session: Any, url: str, ssl: Any) -> Favicon | None:
        import aiohttp

        try:
            async with session.get(
                url, ssl=ssl, allow_redirects=False, headers={"Accept": "image/*"}
            ) as resp:
                ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
                if resp.status != 200 or not ctype.startswith("image/"):
                    return None
                if resp.content_length is not None and resp.content_length > MAX_ICON_BYTES:
                    return None
                body = await resp.content.read(MAX_ICON_BYTES + 1)
                if not body or len(body) > MAX_ICON_BYTES:
                    return None
                raster = sniff_raster(body)
                return Favicon(body, raster, time.time()) if raster is not None else None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
