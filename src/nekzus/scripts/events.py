"""WebSocket event types of script executions (data shapes in ScriptService._emit) and of workflow runs
(data shapes in WorkflowService._announce)."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class ScriptEvent(StrEnum):
    EXECUTION_STARTED = "execution_started"
    EXECUTION_COMPLETED = "execution_completed"
    EXECUTION_FAILED = "execution_failed"
    # A workflow run began: every step listed, all `pending`.
    WORKFLOW_STARTED = "workflow.started"
    # One step changed state: pending → running → succeeded | failed, or skipped (a step before it
    # failed with onFailure `stop`, or the run was cancelled). Carries the step's output when it ends.
    WORKFLOW_STEP = "workflow.step"
    # The run ended: completed, failed, timeout or cancelled.
    WORKFLOW_FINISHED = "workflow.finished"


EXECUTION_STARTED: Final = ScriptEvent.EXECUTION_STARTED
EXECUTION_COMPLETED: Final = ScriptEvent.EXECUTION_COMPLETED
EXECUTION_FAILED: Final = ScriptEvent.EXECUTION_FAILED
WORKFLOW_STARTED: Final = ScriptEvent.WORKFLOW_STARTED
WORKFLOW_STEP: Final = ScriptEvent.WORKFLOW_STEP
WORKFLOW_FINISHED: Final = ScriptEvent.WORKFLOW_FINISHED
# The states a step goes through in `workflow.step` events.
STEP_STATES: Final = ("pending", "running", "succeeded", "failed", "skipped")
# Output carried in an event is cut to this many characters; the record keeps the full (capped) output.
EVENT_OUTPUT_CHARS: Final = 10 * 1024
