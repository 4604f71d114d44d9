"""A worker whose start-up hook fails is stopped and started again by the supervisor (with its back-off),
instead of staying not-ready (named in /healthz) while its siblings serve."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx

from tests.nekzus_server import NekzusServer

ROOT = Path(__file__).resolve().parents[2]
# The real `nekzus` command, with one extra feature whose start-up hook fails once in worker 1.
LAUNCH = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); import nekzus.app as a; "
    "a.FEATURES.insert(0, 'tests.workers.flaky_startup'); from nekzus.cli import main; "
    "sys.argv[0] = 'nekzus'; raise SystemExit(main())"
)


class FlakyServer(NekzusServer):
    def command(self) -> list[str]:
        return [sys.executable, "-c", LAUNCH, str(ROOT), *super().command()[3:]]


def _worker(client: httpx.Client) -> int | None:
    try:
        reply = client.get("/healthz", headers={"Accept": "application/json"})
    except httpx.TransportError:
        return None
    index = reply.json().get("worker") if reply.status_code == 200 else None
    return index if isinstance(index, int) else None


def test_a_worker_whose_start_up_failed_is_restarted(tmp_path: Path) -> None:
    marker = tmp_path / "failed-once"
    server = FlakyServer({"server": {"workers": 2}}, env={"NEKZUS_TEST_FLAKY_MARKER": str(marker)})
    with server:
        seen: set[int] = set()
        deadline = time.monotonic() + 120
        for _ in range(2400):
            if seen == {0, 1} or time.monotonic() > deadline:
                break
            # A new connection each time: the kernel spreads them over the workers accepting.
            with server.client(timeout=5.0) as client:
                index = _worker(client)
            if index is not None:
                seen.add(index)
            else:
                time.sleep(0.05)
        logs = server.logs()
        assert marker.exists(), "the injected failure never ran"
        assert seen == {0, 1}, f"workers serving: {sorted(seen)}\n{logs[-3000:]}"
        assert "start-up of flaky-start failed" in logs
        assert "worker 1 exited (exit code 1)" in logs, logs[-3000:]
        assert server.proc is not None and server.proc.poll() is None  # the instance kept running
