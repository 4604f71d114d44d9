"""Time helpers: Unix seconds in storage, RFC3339 UTC with `Z` on the wire."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_rfc3339(value: str) -> float:
    """Parse an RFC3339 timestamp (a bare date means midnight UTC); raises ValueError."""
    text = value.strip()
    if not text:
        raise ValueError("empty timestamp")
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
