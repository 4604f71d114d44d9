"""Scripts, executions, workflows and schedules through the real server."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx

from tests.events.conftest import WS
from tests.nekzus_server import NekzusServer
from tests.scripts.conftest import poll_execution, register

HELLO_PARAMS = [
    {"name": "name", "type": "string", "required": True, "validation": "[a-z]+"},
    {"name": "mode", "type": "select", "options": ["fast", "slow"], "default": "fast"},
    {"name": "count", "type": "integer", "default": 1},
]


def test_disabled_stubs(server: NekzusServer) -> None:
    with server.client() as api:
        assert api.get("/api/v1/scripts").json() == {"scripts": [], "count": 0, "enabled": False}
        assert api.get("/api/v1/scripts/available").json()["enabled"] is False
        assert api.get("/api/v1/executions").json() == {"executions": [], "count": 0, "enabled": False}
        assert api.get("/api/v1/workflows").json() == {"workflows": [], "count": 0, "enabled": False}
        assert api.get("/api/v1/schedules").json() == {"schedules": [], "count": 0, "enabled": False}
        refused = api.post("/api/v1/scripts", json={"name": "x", "scriptPath": "x.sh"})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "SCRIPTS_DISABLED"


def test_register_crud_and_available(api: httpx.Client, srv: NekzusServer) -> None:
    before = api.get("/api/v1/scripts/available").json()
    paths = {item["path"] for item in before["available"]}
    assert {"hello.sh", "tools/check.sh", "big.py"} <= paths and ".hidden.sh" not in paths
    assert "escape.sh" not in paths  # a symlink leading out of the directory is not offered
    body = register(api, "Say Hello", "hello.sh", parameters=HELLO_PARAMS, category="demo")
    assert body["id"] == "say-hello" and body["scriptType"] == "shell" and body["timeoutSeconds"] == 300
    again = api.post("/api/v1/scripts", json={"name": "Say Hello", "scriptPath": "hello.sh"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "SCRIPT_EXISTS"
    after = {item["path"] for item in api.get("/api/v1/scripts/available").json()["available"]}
    assert "hello.sh" not in after
    listed = api.get("/api/v1/scripts", params={"category": "demo"}).json()
    assert [s["id"] for s in listed["scripts"]] == ["say-hello"] and listed["count"] == 1
    updated = api.put("/api/v1/scripts/say-hello", json={"description": "greets", "timeoutSeconds": 20})
    assert updated.status_code == 200 and updated.json()["description"] == "greets"
    assert api.get("/api/v1/scripts/say-hello").json()["timeoutSeconds"] == 20
    temp = register(api, "Temp", "env.sh")
    assert api.delete(f"/api/v1/scripts/{temp['id']}").status_code == 204
    db = sqlite3.connect(srv.data_dir / "nexus.db")
    try:
        rows = db.execute("SELECT action, target FROM audit_logs WHERE action LIKE 'script.%'").fetchall()
    finally:
        db.close()
    assert {
        ("script.registered", "say-hello"),
        ("script.updated", "say-hello"),
        ("script.deleted", "temp"),
    } <= set(rows)
    missing = api.get(f"/api/v1/scripts/{temp['id']}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "SCRIPT_NOT_FOUND"


def test_path_escapes_and_bad_registrations(api: httpx.Client, workdir: Path) -> None:
    cases = {
        "../outside.sh": "INVALID_PATH",
        "tools/../../outside.sh": "INVALID_PATH",
        "/etc/passwd": "INVALID_PATH",
        "escape.sh": "INVALID_PATH",
        "nope.sh": "SCRIPT_NOT_FOUND",
        "tools": "SCRIPT_NOT_FOUND",
    }
    for path, code in cases.items():
        response = api.post("/api/v1/scripts", json={"name": f"bad {len(path)}", "scriptPath": path})
        assert response.status_code == 400 and response.json()["error"]["code"] == code, (path, response.text)
    absolute = api.post(
        "/api/v1/scripts",
        json={"name": "Absolute", "scriptPath": str(workdir / "scripts" / "tools" / "check.sh")},
    )
    assert absolute.status_code == 201 and absolute.json()["scriptPath"] == "tools/check.sh"
    for params in (
        [{"name": "LD_PRELOAD"}],
        [{"name": "path"}],
        [{"name": "python_path_x", "type": "string"}],
        [{"name": "bad-name"}],
        [{"name": "x", "type": "weird"}],
        [{"name": "x", "validation": "("}],
    ):
        response = api.post(
            "/api/v1/scripts", json={"name": "Params", "scriptPath": "env.sh", "parameters": params}
        )
        assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_PARAMS", params
    env = api.post(
        "/api/v1/scripts", json={"name": "Env", "scriptPath": "env.sh", "environment": {"LD_AUDIT": "x"}}
    )
    assert env.status_code == 400
    assert (
        api.post("/api/v1/scripts", json={"scriptPath": "env.sh"}).json()["error"]["code"] == "MISSING_NAME"
    )
    assert api.post("/api/v1/scripts", json={"name": "No path"}).json()["error"]["code"] == "MISSING_PATH"
    for bad in (
        "/api/v1/scripts/..%2F..%2Fetc",
        "/api/v1/scripts/a%2Fb/execute",
        "/api/v1/executions/..%2Fx",
    ):
        response = api.get(bad)
        assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_ID", bad


def test_execute_sync_with_parameters(api: httpx.Client) -> None:
    register(api, "Greeter", "hello.sh", parameters=HELLO_PARAMS)
    response = api.post("/api/v1/scripts/greeter/execute", json={"parameters": {"name": "bob", "count": "3"}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "completed" and body["exitCode"] == 0 and body["isDryRun"] is False
    assert body["output"] == "hello bob mode=fast count=3 dry=false\n"
    assert body["parameters"] == {"name": "bob", "mode": "fast", "count": "3"}
    assert (
        body["triggeredBy"].startswith("web:")
        and body["startedAt"]
        and body["endedAt"] == body["completedAt"]
    )
    for params, fragment in (
        ({}, "required"),
        ({"name": "Bob1"}, "validation"),
        ({"name": "bob", "mode": "medium"}, "one of"),
        ({"name": "bob", "count": "many"}, "integer"),
        ({"name": "bob", "PATH": "/tmp"}, "unknown"),
        ({"name": "bob", "ld_preload": "/tmp/x.so"}, "unknown"),
    ):
        refused = api.post("/api/v1/scripts/greeter/execute", json={"parameters": params})
        assert refused.status_code == 400, params
        error = refused.json()["error"]
        assert error["code"] == "INVALID_PARAMS" and fragment in error["message"], (params, error)
    unknown = api.post("/api/v1/scripts/nobody/execute", json={})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "SCRIPT_NOT_FOUND"


def test_environment_is_clean(api: httpx.Client) -> None:
    register(api, "Show Env", "env.sh")
    body = api.post("/api/v1/scripts/show-env/execute").json()
    assert "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in body["output"]
    assert "LD_PRELOAD=unset" in body["output"] and "SECRET=unset" in body["output"]


def test_async_execution_failure_and_listing(api: httpx.Client) -> None:
    register(api, "Fails", "fail.sh")
    response = api.post("/api/v1/scripts/fails/execute", params={"async": "true"})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "pending" and accepted["async"] is True
    assert accepted["pollUrl"] == f"/api/v1/executions/{accepted['executionId']}"
    done = poll_execution(api, accepted["executionId"])
    assert done["status"] == "failed" and done["exitCode"] == 3 and done["output"] == "about to fail\n"
    assert done["error"] == "exit code 3"
    listed = api.get("/api/v1/executions", params={"scriptId": "fails", "status": "failed"}).json()
    assert [e["id"] for e in listed["executions"]] == [accepted["executionId"]]
    assert api.get("/api/v1/executions", params={"limit": 1}).json()["count"] == 1
    for params in ({"limit": 0}, {"limit": 101}, {"limit": "x"}, {"offset": -1}, {"status": "bogus"}):
        bad = api.get("/api/v1/executions", params=params)
        assert bad.status_code == 400, params
    missing = api.get("/api/v1/executions/exec_0000")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "EXECUTION_NOT_FOUND"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_timeout_kills_the_forked_child(api: httpx.Client, workdir: Path) -> None:
    out = workdir / "out"
    register(api, "Forker", "forker.py", timeoutSeconds=3, environment={"OUT_DIR": str(out)})
    started = time.monotonic()
    body = api.post("/api/v1/scripts/forker/execute").json()
    assert body["status"] == "timeout" and body["exitCode"] is None
    assert "parent waiting" in body["output"] and time.monotonic() - started < 20
    child = int((out / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_output_is_capped(api: httpx.Client) -> None:
    register(api, "Big", "big.py")
    body = api.post("/api/v1/scripts/big/execute").json()
    assert body["status"] == "completed"
    assert body["output"].startswith("y" * 4096) and body["output"].endswith(
        "[Output truncated at 4096 bytes]"
    )
    assert len(body["output"]) < 4200


def test_dry_run_has_no_side_effect(api: httpx.Client, workdir: Path) -> None:
    out = workdir / "out"
    register(
        api,
        "Side",
        "side.sh",
        environment={"OUT_DIR": str(out)},
        parameters=[{"name": "tag", "required": True}],
    )
    dry = api.post("/api/v1/scripts/side/execute", json={"parameters": {"tag": "a"}, "dryRun": True}).json()
    assert (
        dry["isDryRun"] is True
        and dry["output"].startswith("would write")
        and not (out / "marker-a").exists()
    )
    dry2 = api.post("/api/v1/scripts/side/dry-run", json={"parameters": {"tag": "b"}})
    assert dry2.status_code == 200 and dry2.json()["dryRun"] is True and dry2.json()["exitCode"] == 0
    assert dry2.json()["duration"].endswith("s") and not (out / "marker-b").exists()
    real = api.post("/api/v1/scripts/side/execute", json={"parameters": {"tag": "c"}}).json()
    assert real["status"] == "completed" and (out / "marker-c").read_text() == "written\n"
    register(
        api, "Guarded", "side.sh", environment={"OUT_DIR": str(out)}, dryRunCommand="tools/check.sh --verbose"
    )
    checked = api.post("/api/v1/scripts/guarded/dry-run", json={"parameters": {}}).json()
    assert checked["output"] == "check-only dry=true args=--verbose\n"
    bad = api.post(
        "/api/v1/scripts", json={"name": "Bad dry", "scriptPath": "side.sh", "dryRunCommand": "../x.sh"}
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_PATH"


def test_websocket_sees_execution_events(srv: NekzusServer, api: httpx.Client) -> None:
    register(api, "Evented", "hello.sh", parameters=[{"name": "name", "default": "ws"}])

    async def scenario() -> None:
        ws = await WS.open(srv.ws_url)
        try:
            accepted = await asyncio.to_thread(
                lambda: api.post("/api/v1/scripts/evented/execute", params={"async": "true"}).json()
            )
            started = await ws.recv_type("execution_started")
            assert (
                started["data"]["executionId"] == accepted["executionId"]
                and started["data"]["status"] == "running"
            )
            completed = await ws.recv_type("execution_completed")
            assert completed["data"]["exitCode"] == 0 and "hello ws" in completed["data"]["output"]
            job_done = await ws.recv_type("job.succeeded")
            assert job_done["data"]["kind"] == "script"
        finally:
            await ws.close()

    asyncio.run(scenario())


def test_workflow_stops_or_continues(api: httpx.Client) -> None:
    register(api, "Wf Hello", "hello.sh", parameters=[{"name": "name", "required": True}])
    register(api, "Wf Fail", "fail.sh")
    missing = api.post("/api/v1/workflows", json={"name": "x", "steps": [{"scriptId": "nope"}]})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "SCRIPT_NOT_FOUND"
    assert (
        api.post("/api/v1/workflows", json={"name": "x", "steps": []}).json()["error"]["code"]
        == "MISSING_STEPS"
    )
    steps: list[dict[str, Any]] = [
        {"scriptId": "wf-hello", "parameters": {"name": "one"}},
        {"scriptId": "wf-fail", "onFailure": "stop"},
        {"scriptId": "wf-hello", "parameters": {"name": "three"}},
    ]
    created = api.post("/api/v1/workflows", json={"name": "Stopper", "steps": steps})
    assert created.status_code == 201 and created.json()["id"] == "stopper"
    run = api.post("/api/v1/workflows/stopper/execute").json()
    assert run["status"] == "failed" and [s["status"] for s in run["steps"]] == ["completed", "failed"]
    first = api.get(f"/api/v1/executions/{run['steps'][0]['executionId']}").json()
    assert (
        first["output"] == "hello one mode= count= dry=false\n" and first["workflowExecutionId"] == run["id"]
    )
    steps[1]["onFailure"] = "continue"
    api.post("/api/v1/workflows", json={"name": "Continuer", "steps": steps})
    accepted = api.post("/api/v1/workflows/continuer/execute", params={"async": "true"})
    assert accepted.status_code == 202
    poll = accepted.json()["pollUrl"]
    deadline = time.monotonic() + 15
    while (body := api.get(poll).json())["status"] in ("pending", "running") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert body["status"] == "failed" and [s["status"] for s in body["steps"]] == [
        "completed",
        "failed",
        "completed",
    ]
    assert [w["id"] for w in api.get("/api/v1/workflows").json()["workflows"]] == ["continuer", "stopper"]
    assert api.delete("/api/v1/workflows/continuer").status_code == 204
    assert api.get("/api/v1/workflows/continuer").json()["error"]["code"] == "WORKFLOW_NOT_FOUND"


def test_schedule_crud_and_validation(api: httpx.Client) -> None:
    register(api, "Sched Target", "hello.sh", parameters=[{"name": "name", "default": "cron"}])
    for cron in ("not cron", "* * * *", "61 * * * *", "*/5 " + "1," * 80 + "1 * * *"):
        bad = api.post("/api/v1/schedules", json={"scriptId": "sched-target", "cronExpression": cron})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_CRON", cron
    unknown = api.post("/api/v1/schedules", json={"scriptId": "ghost", "cronExpression": "0 2 * * *"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "SCRIPT_NOT_FOUND"
    unknown_wf = api.post("/api/v1/schedules", json={"workflowId": "ghost", "cronExpression": "0 2 * * *"})
    assert unknown_wf.status_code == 404 and unknown_wf.json()["error"]["code"] == "WORKFLOW_NOT_FOUND"
    no_target = api.post("/api/v1/schedules", json={"cronExpression": "0 2 * * *"})
    assert no_target.json()["error"]["code"] == "MISSING_TARGET"
    created = api.post(
        "/api/v1/schedules", json={"scriptId": "sched-target", "cronExpression": "0 2 * * *", "enabled": True}
    )
    assert created.status_code == 201
    schedule = created.json()
    assert schedule["enabled"] is True and schedule["nextRunAt"] and schedule["lastRunAt"] is None
    sid = schedule["id"]
    disabled = api.post(f"/api/v1/schedules/{sid}/disable").json()
    assert disabled["enabled"] is False and disabled["nextRunAt"] is None
    enabled = api.post(f"/api/v1/schedules/{sid}/enable").json()
    assert enabled["enabled"] is True and enabled["nextRunAt"]
    changed = api.put(f"/api/v1/schedules/{sid}", json={"cronExpression": "30 3 * * 1"}).json()
    assert changed["cronExpression"] == "30 3 * * 1"
    assert [s["id"] for s in api.get("/api/v1/schedules").json()["schedules"]] == [sid]
    assert api.delete(f"/api/v1/schedules/{sid}").status_code == 204
    assert api.get(f"/api/v1/schedules/{sid}").json()["error"]["code"] == "SCHEDULE_NOT_FOUND"


def test_cancel_through_the_jobs_api(api: httpx.Client) -> None:
    register(
        api, "Sleeper", "slow.sh", parameters=[{"name": "seconds_to_sleep", "type": "number", "default": 60}]
    )
    accepted = api.post("/api/v1/scripts/sleeper/execute", params={"async": "true"}).json()
    execution_id = accepted["executionId"]
    deadline = time.monotonic() + 20
    while api.get(f"/api/v1/executions/{execution_id}").json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    job = api.get(f"/api/v1/jobs/{execution_id}").json()
    assert job["kind"] == "script" and job["state"] == "running" and job["triggeredBy"].startswith("web:")
    assert api.post(f"/api/v1/jobs/{execution_id}/cancel").json() == {"id": execution_id, "cancelled": True}
    done = poll_execution(api, execution_id)
    assert done["status"] == "cancelled"
    deadline = time.monotonic() + 10  # the job record is finalised just after the execution record
    while (state := api.get(f"/api/v1/jobs/{execution_id}").json()["state"]) == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert state == "cancelled"
    assert api.get("/api/v1/jobs", params={"kind": "script", "state": "cancelled"}).json()["count"] >= 1
    # Pages carry the total of the filtered records, for page controls.
    everything = api.get("/api/v1/jobs", params={"limit": 100}).json()
    first = api.get("/api/v1/jobs", params={"limit": 1}).json()
    assert first["count"] == 1 and first["total"] == everything["total"] == everything["count"] > 1
    assert first["jobs"][0]["id"] == everything["jobs"][0]["id"]
    cancelled = api.get("/api/v1/jobs", params={"state": "cancelled", "limit": 1}).json()
    assert cancelled["total"] == sum(j["state"] == "cancelled" for j in everything["jobs"])
    assert job["result"] is None  # a job that has not succeeded has no result
    ok = api.post("/api/v1/scripts/sleeper/execute", json={"parameters": {"seconds_to_sleep": 0}}).json()
    assert api.get(f"/api/v1/jobs/{ok['id']}").json()["result"] == "completed"
    assert api.get("/api/v1/jobs/job_missing").json()["error"]["code"] == "JOB_NOT_FOUND"


def test_wrong_method_is_405(api: httpx.Client) -> None:
    for method, path in (("PATCH", "/api/v1/scripts/greeter"), ("GET", "/api/v1/scripts/greeter/execute")):
        response = api.request(method, path)
        assert response.status_code == 405 and response.json()["error"]["code"] == "METHOD_NOT_ALLOWED", path


def test_api_key_runs_are_attributed_and_scoped(api: httpx.Client) -> None:
    register(api, "Keyed", "hello.sh", parameters=[{"name": "name", "default": "key"}])
    reader = api.post("/api/v1/apikeys", json={"name": "reader", "scopes": ["read:catalog"]}).json()
    writer = api.post("/api/v1/apikeys", json={"name": "writer", "scopes": ["write:*"]}).json()
    denied = api.post("/api/v1/scripts/keyed/execute", headers={"X-API-Key": reader["key"]})
    assert denied.status_code == 403
    ran = api.post("/api/v1/scripts/keyed/execute", headers={"X-API-Key": writer["key"]})
    assert ran.status_code == 200, ran.text
    assert ran.json()["triggeredBy"] == f"api_key:{writer['id']}"
    # Output may carry secrets: a read-only key may not read executions or job records; a writer may.
    for path in ("/api/v1/executions", f"/api/v1/executions/{ran.json()['id']}", "/api/v1/jobs"):
        assert api.get(path, headers={"X-API-Key": reader["key"]}).status_code == 403, path
        assert api.get(path, headers={"X-API-Key": writer["key"]}).status_code == 200, path
    register(api, "Admin Only", "hello.sh", allowedScopes=["access:admin"])
    refused = api.post("/api/v1/scripts/admin-only/execute", headers={"X-API-Key": writer["key"]})
    assert refused.status_code == 403 and "access:admin" in refused.json()["error"]["message"]


def test_websocket_follows_workflow_steps(srv: NekzusServer, api: httpx.Client) -> None:
    """Each step's state reaches a client subscribed to `workflow.#` as it changes: pending (all, at the
    start), running, then succeeded or failed with the step's output; steps after a failing `stop` step
    are skipped; the run's end is announced too. Execution events stay out of that subscription."""
    register(api, "Step Hello", "hello.sh", parameters=[{"name": "name", "required": True}])
    register(api, "Step Fail", "fail.sh")
    steps: list[dict[str, Any]] = [
        {"scriptId": "step-hello", "parameters": {"name": "first"}},
        {"scriptId": "step-fail", "onFailure": "stop"},
        {"scriptId": "step-hello", "parameters": {"name": "never"}},
    ]
    assert api.post("/api/v1/workflows", json={"name": "Stepped", "steps": steps}).status_code == 201

    async def scenario() -> None:
        ws = await WS.open(srv.ws_url)
        try:
            await ws.send({"type": "subscribe", "data": {"topics": ["workflow.#"]}})
            assert (await ws.recv_type("suback"))["data"]["success"] is True
            accepted = await asyncio.to_thread(
                lambda: api.post("/api/v1/workflows/stepped/execute", params={"async": "true"}).json()
            )
            run_id = accepted["executionId"]
            seen: list[dict[str, Any]] = []
            while not seen or seen[-1]["type"] != "workflow.finished":
                message = await ws.recv()
                assert message["type"].startswith("workflow.") or message["type"] in ("ping", "pong"), message
                if message["type"].startswith("workflow."):
                    assert message["data"]["workflowExecutionId"] == run_id
                    seen.append(message)
                assert len(seen) < 20
        finally:
            await ws.close()
        started = seen[0]["data"]
        assert seen[0]["type"] == "workflow.started" and started["workflowId"] == "stepped"
        assert [(s["index"], s["scriptName"], s["status"]) for s in started["steps"]] == [
            (0, "Step Hello", "pending"),
            (1, "Step Fail", "pending"),
            (2, "Step Hello", "pending"),
        ]
        changes = [(m["data"]["index"], m["data"]["status"]) for m in seen if m["type"] == "workflow.step"]
        assert changes == [(0, "running"), (0, "succeeded"), (1, "running"), (1, "failed"), (2, "skipped")]
        ended = {m["data"]["index"]: m["data"] for m in seen if m["type"] == "workflow.step"}
        assert ended[0]["output"] == "hello first mode= count= dry=false\n" and ended[0]["exitCode"] == 0
        assert ended[1]["exitCode"] == 3 and ended[1]["output"] == "about to fail\n"
        assert ended[1]["executionStatus"] == "failed" and ended[1]["onFailure"] == "stop"
        assert seen[-1]["data"]["status"] == "failed"

    asyncio.run(scenario())
