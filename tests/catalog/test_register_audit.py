"""`catalog.register` / `set_route_target` (the entry points discovery uses) on real storage: the app and
route are saved, announced, and audited (`app.registered`, `route.created` / `route.updated`)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from nekzus.auth.audit import AuditService
from nekzus.catalog.service import CatalogService
from nekzus.config import Config
from nekzus.events import Event
from nekzus.services import Services


def test_register_is_audited(tmp_path: Path) -> None:
    async def run() -> None:
        config = Config.model_validate({"storage": {"database_path": str(tmp_path / "nexus.db")}})
        services = Services.build(config, base_url="http://127.0.0.1")
        await services.db.open()
        audit = AuditService(services.db)
        events: list[Event] = []
        services.bus.subscribe(events.append, {"config_reload"})
        catalog = CatalogService(
            config,
            services.db,
            services.bus,
            services.metrics,
            services.spawn,
            services.base_url,
            audit=audit,
        )
        app = {"id": "grafana", "name": "Grafana", "tags": ["monitoring"]}
        route = {"routeId": "route_grafana", "pathBase": "/apps/grafana/", "to": "http://127.0.0.1:3000"}
        await catalog.register(app, route, actor="user-admin", ip="10.0.0.5")
        await catalog.register(app, {**route, "to": "http://127.0.0.1:3001"})
        stored = catalog.route("route_grafana")
        assert stored is not None and stored.to == "http://127.0.0.1:3001"
        assert len(events) == 2

        registered, _ = await audit.query(action="app.registered")
        assert [r["actor"] for r in registered] == ["system", "user-admin"]
        first = registered[-1]
        assert first["target"] == "grafana" and first["ip"] == "10.0.0.5"
        assert json.loads(first["details"])["new"] is True
        created, _ = await audit.query(action="route.created")
        assert [(r["target"], r["actor"]) for r in created] == [("route_grafana", "user-admin")]
        updated, _ = await audit.query(action="route.updated")
        assert [(r["target"], r["actor"]) for r in updated] == [("route_grafana", "system")]
        assert json.loads(updated[0]["details"])["to"] == "http://127.0.0.1:3001"
        # A container that moved (discovery reconcile) changes the target: audited as the system's doing.
        await catalog.set_route_target("route_grafana", "http://127.0.0.1:3002")
        updated, _ = await audit.query(action="route.updated")
        assert updated[0]["actor"] == "system"
        assert json.loads(updated[0]["details"])["previous"] == "http://127.0.0.1:3001"
        assert json.loads(updated[0]["details"])["to"] == "http://127.0.0.1:3002"
        await services.db.close()

    asyncio.run(run())
