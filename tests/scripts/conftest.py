"""A real server with scripts enabled over a directory of small test scripts."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.nekzus_server import NekzusServer

HELLO = """#!/bin/bash
echo "hello $NAME mode=$MODE count=$COUNT dry=$DRY_RUN"
"""
FAIL = """#!/bin/bash
echo "about to fail"
exit 3
"""
SIDE_EFFECT = """#!/bin/bash
if [ "$DRY_RUN" = "true" ]; then
  echo "would write $OUT_DIR/marker-$TAG"
else
  echo written > "$OUT_DIR/marker-$TAG"
  echo "wrote marker-$TAG"
fi
"""
CHECK = """#!/bin/bash
echo "check-only dry=$DRY_RUN args=$*"
"""
# Forks a child that ignores SIGTERM and records its pid, then sleeps (also ignoring SIGTERM).
FORKER = """import os, signal, sys, time
out = os.environ["OUT_DIR"]
pid = os.fork()
if pid == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(os.path.join(out, "child.tmp"), "w") as fh:
        fh.write(str(os.getpid()))
    os.rename(os.path.join(out, "child.tmp"), os.path.join(out, "child.pid"))
    while True:
        time.sleep(0.1)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
for _ in range(200):
    if os.path.exists(os.path.join(out, "child.pid")):
        break
    time.sleep(0.05)
print("parent waiting", flush=True)
time.sleep(120)
"""
BIG = """import sys
sys.stdout.write("y" * 100000)
"""
ENV = """#!/bin/bash
echo "PATH=$PATH"
echo "LD_PRELOAD=${LD_PRELOAD:-unset}"
echo "SECRET=${NEKZUS_SECRET_CHECK:-unset}"
"""
SLOW = """#!/bin/bash
sleep "${SECONDS_TO_SLEEP:-2}"
echo slept
"""


def write_scripts(directory: Path) -> None:
    files = {
        "hello.sh": HELLO,
        "fail.sh": FAIL,
        "side.sh": SIDE_EFFECT,
        "tools/check.sh": CHECK,
        "forker.py": FORKER,
        "big.py": BIG,
        "env.sh": ENV,
        "slow.sh": SLOW,
        ".hidden.sh": HELLO,
    }
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)


def scripts_config(directory: Path, **extra: Any) -> dict[str, Any]:
    return {"scripts": {"enabled": True, "directory": str(directory), "max_output_bytes": 4096, **extra}}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scripts")
    (root / "scripts").mkdir()
    (root / "out").mkdir()
    write_scripts(root / "scripts")
    (root / "outside.sh").write_text("#!/bin/bash\necho outside\n")
    os.symlink(root / "outside.sh", root / "scripts" / "escape.sh")
    return root


@pytest.fixture(scope="module")
def srv(workdir: Path) -> Iterator[NekzusServer]:
    server = NekzusServer(
        scripts_config(workdir / "scripts"), data_dir=workdir / "data", env={"NEKZUS_SECRET_CHECK": "leak"}
    )
    server.start(timeout=60)  # generous: the test machine is shared and often loaded
    yield server
    server.stop()


@pytest.fixture
def api(srv: NekzusServer) -> Iterator[httpx.Client]:
    with srv.client() as client:
        yield client


def poll_execution(api: httpx.Client, execution_id: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = api.get(f"/api/v1/executions/{execution_id}").json()
        if body["status"] not in ("pending", "running"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"execution {execution_id} did not finish")


def register(api: httpx.Client, name: str, path: str, **extra: Any) -> dict[str, Any]:
    response = api.post("/api/v1/scripts", json={"name": name, "scriptPath": path, **extra})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
