"""The scripts service in-process (real database, real processes): retention and workflow bookkeeping."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nekzus.errors import Conflict, NotFound
from nekzus.events import EventBus
from nekzus.jobs import JobRunner
from nekzus.scripts.service import ExecutionRequest, ScriptService
from nekzus.scripts.workflows import WorkflowRun, WorkflowService
from nekzus.store import Database
from tests.jobs.helpers import Tasks


def test_retention_keeps_the_newest_executions(tmp_path: Path) -> None:
    scripts_dir = tmp_path / "scripts"
    scripts_dir.mkdir()
    (scripts_dir / "echo.sh").write_text('echo "run $N"\n')

    async def main() -> None:
        db = Database(str(tmp_path / "s.db"))
        await db.open()
        tasks = Tasks()
        audited: list[str] = []

        async def audit(action: str, **_kw: object) -> None:
            audited.append(action)

        runner = JobRunner(db, EventBus(), tasks.spawn)
        service = ScriptService(
            db,
            EventBus(),
            runner,
            directory=scripts_dir,
            default_timeout=30,
            max_output_bytes=4096,
            max_executions=3,
            audit=audit,
        )
        try:
            await service.register(
                {"name": "Echo", "script_path": "echo.sh", "parameters": [{"name": "n", "type": "integer"}]},
                "t",
            )
            ids = []
            for n in range(5):
                row = await service.execute("echo", ExecutionRequest(parameters={"n": n}), wait=True)
                assert row.status == "completed" and row.output == f"run {n}\n"
                ids.append(row.id)
            kept, total = await service.executions(limit=100)
            assert total == 3 and [r.id for r in kept] == ids[:1:-1]
            assert audited.count("script.executed") == 5 and "script.registered" in audited

            workflows = WorkflowService(db, runner, service)
            await workflows.create(
                {"name": "Twice", "steps": [{"scriptId": "echo"}, {"scriptId": "echo"}]}, "t"
            )
            run = await workflows.execute("twice", WorkflowRun(parameters={"n": 7, "unused": "x"}), wait=True)
            assert run.status == "completed" and run.completed_at is not None
            steps, _ = await service.executions(workflow_execution_id=run.id, limit=10)
            assert [s.output for s in steps] == ["run 7\n", "run 7\n"]

            with pytest.raises(Conflict) as taken:
                await workflows.create({"name": "twice", "steps": [{"scriptId": "echo"}]}, "t")
            assert taken.value.code == "WORKFLOW_EXISTS"
            await workflows.delete("twice")  # its runs go with it
            with pytest.raises(NotFound):
                await workflows.execution(run.id)
            with pytest.raises(NotFound):
                await workflows.delete("twice")
        finally:
            await runner.stop()
            await tasks.close()
            await db.close()

    asyncio.run(main())
