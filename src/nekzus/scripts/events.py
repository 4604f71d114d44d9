"""WebSocket event types of script executions (data shapes in ScriptService._emit)."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class ScriptEvent(StrEnum):
    EXECUTION_STARTED = "execution_started"
    EXECUTION_COMPLETED = "execution_completed"
    EXECUTION_FAILED = "execution_failed"


EXECUTION_STARTED: Final = ScriptEvent.EXECUTION_STARTED
EXECUTION_COMPLETED: Final = ScriptEvent.EXECUTION_COMPLETED
EXECUTION_FAILED: Final = ScriptEvent.EXECUTION_FAILED
# Output carried in an event is cut to this many characters; the record keeps the full (capped) output.
EVENT_OUTPUT_CHARS: Final = 10 * 1024
