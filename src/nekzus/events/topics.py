"""MQTT-style topic filters over `.`-separated topics.

`+` matches exactly one level, `#` matches zero or more levels and must be the last segment.
A client without filters receives everything; with filters, only matching messages.
"""

from __future__ import annotations

MAX_SUBSCRIPTIONS = 100
MAX_PATTERN_LENGTH = 256


class TopicError(ValueError):
    """A subscription pattern that can never be valid."""


def validate_pattern(pattern: object) -> str:
    """Return the pattern if it is a usable filter, else raise TopicError with the reason."""
    if not isinstance(pattern, str) or not pattern:
        raise TopicError("topic pattern must be a non-empty string")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise TopicError(f"topic pattern longer than {MAX_PATTERN_LENGTH} characters")
    if any(ch.isspace() for ch in pattern):
        raise TopicError("topic pattern must not contain whitespace")
    segments = pattern.split(".")
    for index, segment in enumerate(segments):
        if segment == "":
            raise TopicError("topic pattern has an empty level (leading, trailing or double dot)")
        if segment == "#" and index != len(segments) - 1:
            raise TopicError("'#' must be the last level")
        if segment not in ("+", "#") and ("+" in segment or "#" in segment):
            raise TopicError("wildcards must fill a whole level")
    return pattern


def matches(pattern: str, topic: str) -> bool:
    """Does `topic` fall under `pattern`?"""
    if pattern == "#" or pattern == topic:
        return True
    pat = pattern.split(".")
    top = topic.split(".")
    for index, segment in enumerate(pat):
        if segment == "#":
            return True
        if index >= len(top):
            return False
        if segment != "+" and segment != top[index]:
            return False
    return len(pat) == len(top)


def any_match(patterns: list[str] | tuple[str, ...] | set[str], topic: str) -> bool:
    return any(matches(p, topic) for p in patterns)
