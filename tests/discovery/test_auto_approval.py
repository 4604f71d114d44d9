"""Auto-approval of discovery proposals on a real server, with real mDNS announcements on loopback only:
a new proposal at the threshold is approved exactly like a manual approval (route, audit entry naming the
rule, events), one below stays pending; the run-time threshold survives a restart and wins over the config
key (which reloads live); only access:admin may read or change it; bad values are a 400."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from zeroconf import ServiceInfo, Zeroconf

from tests.auth.conftest import bearer, create_admin, login
from tests.mdns_helpers import loopback_service, loopback_zeroconf, mdns_discovery
from tests.nekzus_server import NekzusServer
from tests.waiting import wait_until as poll

SETTINGS = "/api/v1/discovery/settings"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    config = {"discovery": mdns_discovery(advertise=False)}
    srv = NekzusServer(config, data_dir=tmp_path_factory.mktemp("autoapprove"))
    srv.start(timeout=90)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def admin(server: NekzusServer) -> dict[str, str]:
    """A signed-in admin's headers: the audit log wants a token even on the trusted loopback."""
    with server.client() as c:
        create_admin(c)
        return bearer(login(c))


@pytest.fixture(scope="module")
def zc() -> Iterator[Zeroconf]:
    z = loopback_zeroconf()
    yield z
    z.unregister_all_services()
    z.close()


def announce(zc: Zeroconf, name: str, port: int, props: dict[str, str]) -> ServiceInfo:
    info = loopback_service(name, port, props, "autoapprove-box.local.")
    zc.register_service(info)
    return info


def proposals(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {p["id"]: p for p in client.get("/api/v1/discovery/proposals").json()}


def routes(client: httpx.Client) -> dict[str, dict[str, Any]]:
    data = client.get("/api/v1/routes").json()
    items = data if isinstance(data, list) else data.get("routes", [])
    return {r["pathBase"]: r for r in items}


def audit(client: httpx.Client, headers: dict[str, str], action: str) -> list[dict[str, Any]]:
    got = client.get("/api/v1/audit-logs", params={"action": action}, headers=headers)
    assert got.status_code == 200, got.text
    logs = got.json()["logs"] or []
    for entry in logs:
        if isinstance(entry["details"], str):
            entry["details"] = json.loads(entry["details"] or "null")
    return list(logs)


def error_code(response: httpx.Response, status: int) -> str:
    """The API's error shape: `{"error": {"code", "message"}, "message", "code"}`."""
    assert response.status_code == status, response.text
    body = response.json()
    code: str = body["error"]["code"]
    assert body["error"]["message"] and body["code"] == code
    return code


def test_default_is_off_and_follows_config(server: NekzusServer) -> None:
    with server.client() as c:
        got = c.get(SETTINGS)
        assert got.status_code == 200, got.text
        assert got.json()["autoApproveConfidence"] == 0
        assert got.json()["source"] == "config"
        assert got.json()["runtimeAutoApproveConfidence"] is None


def test_proposal_at_threshold_is_approved_below_is_not(
    server: NekzusServer, zc: Zeroconf, admin: dict[str, str]
) -> None:
    with server.client() as c:
        put = c.put(SETTINGS, json={"autoApproveConfidence": 95})
        assert put.status_code == 200, put.text
        assert put.json()["autoApproveConfidence"] == 95 and put.json()["source"] == "runtime"
        # nekzus_enable=true: confidence 0.95, exactly the threshold.
        announce(zc, "Auto Grafana", 3000, {"nekzus_enable": "true", "app_id": "autografana"})
        # An app id alone: confidence 0.85, below it.
        announce(zc, "Manual Wiki", 3001, {"app_id": "manualwiki"})
        route = poll(lambda: routes(c).get("/apps/autografana/"), what="the auto-approved route")
        assert route["to"] == "http://127.0.0.1:3000"
        below = poll(lambda: proposals(c).get("proposal_mdns_http_Manual_Wiki_3001"), what="the pending one")
        assert below["confidence"] == 0.85
        assert "proposal_mdns_http_Auto_Grafana_3000" not in proposals(c)
        assert "/apps/manualwiki/" not in routes(c)
        entries = [
            e
            for e in audit(c, admin, "proposal.approved")
            if e["target"] == "proposal_mdns_http_Auto_Grafana_3000"
        ]
        assert len(entries) == 1
        entry = entries[0]
        assert entry["actor"] == "discovery:auto-approval"
        assert entry["details"]["rule"] == "auto_approve_confidence"
        assert entry["details"]["threshold"] == 95 and entry["details"]["confidence"] == 95
        assert entry["details"]["appId"] == "autografana"
        # The manual path still works for the one below the threshold.
        approved = c.post("/api/v1/discovery/proposals/proposal_mdns_http_Manual_Wiki_3001/approve")
        assert approved.json()["status"] == "approved"


def test_setting_is_audited_and_survives_restart(server: NekzusServer, admin: dict[str, str]) -> None:
    with server.client() as c:
        assert c.put(SETTINGS, json={"autoApproveConfidence": 90}).status_code == 200
        changes = audit(c, admin, "discovery.settings.updated")
        assert changes and changes[0]["details"]["after"] == 90
    server.restart()
    with server.client() as c:
        got = c.get(SETTINGS).json()
        assert (got["autoApproveConfidence"], got["source"]) == (90, "runtime")
        assert got["updatedAt"].endswith("Z")


def test_runtime_value_wins_until_reset_then_config_key_reloads_live(server: NekzusServer) -> None:
    server.edit_config(lambda config: config["discovery"].update(auto_approve_confidence=80))
    with server.client() as c:
        got = poll(
            lambda: (s := c.get(SETTINGS).json())["configAutoApproveConfidence"] == 80 and s,
            what="the reloaded config key",
        )
        assert (got["autoApproveConfidence"], got["source"]) == (90, "runtime")
        reset = c.put(SETTINGS, json={"autoApproveConfidence": None})
        assert reset.status_code == 200
        assert (reset.json()["autoApproveConfidence"], reset.json()["source"]) == (80, "config")
        off = c.put(SETTINGS, json={"autoApproveConfidence": 0})
        assert (off.json()["autoApproveConfidence"], off.json()["source"]) == (0, "runtime")


@pytest.mark.parametrize(
    "body",
    [
        {"autoApproveConfidence": 101},
        {"autoApproveConfidence": -1},
        {"autoApproveConfidence": "90"},
        {"autoApproveConfidence": 90.5},
        {"autoApproveConfidence": True},
        {"somethingElse": 1},
        [90],
    ],
)
def test_bad_values_are_refused(server: NekzusServer, body: Any) -> None:
    with server.client() as c:
        code = error_code(c.put(SETTINGS, json=body), 400)
        assert code in ("INVALID_THRESHOLD", "INVALID_REQUEST_BODY")
        assert error_code(c.put(SETTINGS, content=b"{nope"), 400) == "INVALID_JSON"


def test_only_admins_read_or_change_it(server: NekzusServer) -> None:
    with server.client() as c:
        created = c.post("/api/v1/apikeys", json={"name": "writer", "scopes": ["write:*", "read:*"]})
        assert created.status_code in (200, 201), created.text
        key = {"X-API-Key": created.json()["key"]}
        assert error_code(c.get(SETTINGS, headers=key), 403) == "FORBIDDEN"
        assert error_code(c.put(SETTINGS, headers=key, json={"autoApproveConfidence": 1}), 403) == "FORBIDDEN"
