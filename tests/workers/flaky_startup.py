"""A feature for tests only: its start-up hook fails once in worker 1 (the first time a marker file is
missing), as a database locked by another writer or an unreachable dependency would make it fail."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from nekzus.services import Services

HOOK = "flaky-start"


def install(_api: FastAPI, services: Services) -> None:
    marker = Path(os.environ["NEKZUS_TEST_FLAKY_MARKER"])

    async def start() -> None:
        if services.worker.index == 1 and not marker.exists():
            marker.write_text(str(os.getpid()))
            raise RuntimeError("start-up failure injected by the test")

    services.on_startup(HOOK, start)
