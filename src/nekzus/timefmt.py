"""Time on the wire: RFC 3339 in UTC with a `Z` suffix (storage keeps Unix seconds).

The one formatter every domain uses; `millis=True` adds milliseconds (WebSocket messages, /healthz)."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def rfc3339(ts: float | None = None, *, millis: bool = False) -> str:
    """`ts` (Unix seconds; now when None) as `2026-01-02T03:04:05Z` (or `...05.678Z`)."""
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, UTC)
    return moment.isoformat(timespec="milliseconds" if millis else "seconds").replace("+00:00", "Z")


def rfc3339_or_none(ts: float | None) -> str | None:
    """Like `rfc3339`, but a missing timestamp stays missing (null on the wire)."""
    return None if ts is None else rfc3339(ts)


def parse_rfc3339(value: str) -> float:
    """Parse an RFC 3339 timestamp (a bare date means midnight UTC); raises ValueError."""
    text = value.strip()
    if not text:
        raise ValueError("empty timestamp")
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
