"""A catalog change is one transaction: when saving the route fails, the app written beside it is not
left behind, neither in the database nor in memory."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, select

from nekzus.catalog.models import catalog_apps
from nekzus.catalog.service import CatalogService
from nekzus.catalog.spec import RouteSpec
from nekzus.config import Config
from nekzus.services import Services


class WriteRefused(Exception):
    pass


@pytest.fixture
def refuse_route_writes() -> Iterator[None]:
    """Make every statement that writes a route row fail, as a full disk or a lock timeout would."""

    def before_cursor_execute(
        _conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool
    ) -> None:
        if statement.lstrip().startswith(("INSERT INTO catalog_routes", "UPDATE catalog_routes")):
            raise WriteRefused("route row refused")

    event.listen(Engine, "before_cursor_execute", before_cursor_execute)
    try:
        yield
    finally:
        event.remove(Engine, "before_cursor_execute", before_cursor_execute)


async def _catalog(tmp_path: Path) -> tuple[Services, CatalogService]:
    config = Config.model_validate({"storage": {"database_path": str(tmp_path / "nexus.db")}})
    services = Services.build(config, base_url="http://127.0.0.1")
    await services.db.open()
    catalog = CatalogService(
        config, services.db, services.bus, services.metrics, services.spawn, services.base_url
    )
    await catalog.load()
    return services, catalog


async def _app_ids(services: Services) -> list[str]:
    return [str(app_id) for app_id in await services.db.scalars(select(catalog_apps.c.id))]


def test_register_leaves_nothing_when_the_route_fails(tmp_path: Path, refuse_route_writes: None) -> None:
    async def run() -> None:
        services, catalog = await _catalog(tmp_path)
        app = {"id": "grafana", "name": "Grafana"}
        route = {"routeId": "route_grafana", "pathBase": "/apps/grafana/", "to": "http://127.0.0.1:3000"}
        with pytest.raises(WriteRefused):
            await catalog.register(app, route)
        assert await _app_ids(services) == []
        assert "grafana" not in catalog.apps and catalog.route("route_grafana") is None
        await services.db.close()

    asyncio.run(run())


def test_save_route_creates_no_bare_app_when_the_route_fails(
    tmp_path: Path, refuse_route_writes: None
) -> None:
    async def run() -> None:
        services, catalog = await _catalog(tmp_path)
        spec = RouteSpec.model_validate(
            {
                "routeId": "r1",
                "appId": "jellyfin",
                "pathBase": "/apps/jellyfin/",
                "to": "http://127.0.0.1:8096",
            }
        )
        with pytest.raises(WriteRefused):
            await catalog.save_route(spec, icon="https://example.invalid/icon.png")
        assert await _app_ids(services) == []
        assert "jellyfin" not in catalog.apps and catalog.route("r1") is None
        await services.db.close()

    asyncio.run(run())


def test_moving_a_route_drops_its_old_app_in_the_same_change(tmp_path: Path) -> None:
    async def run() -> None:
        services, catalog = await _catalog(tmp_path)
        spec = {"routeId": "r1", "appId": "old", "pathBase": "/apps/old/", "to": "http://127.0.0.1:8096"}
        await catalog.save_route(RouteSpec.model_validate(spec))
        assert await _app_ids(services) == ["old"]
        await catalog.save_route(RouteSpec.model_validate({**spec, "appId": "new"}))
        assert await _app_ids(services) == ["new"]
        assert set(catalog.apps) == {"new"}
        assert await catalog.delete_route("r1")
        assert await _app_ids(services) == [] and catalog.apps == {}
        await services.db.close()

    asyncio.run(run())
