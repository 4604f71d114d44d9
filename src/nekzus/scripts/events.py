"""WebSocket event types of script executions (data shapes in ScriptService._emit)."""

from __future__ import annotations

from typing import Final

EXECUTION_STARTED: Final = "execution_started"
EXECUTION_COMPLETED: Final = "execution_completed"
EXECUTION_FAILED: Final = "execution_failed"
# Output carried in an event is cut to this many characters; the record keeps the full (capped) output.
EVENT_OUTPUT_CHARS: Final = 10 * 1024
