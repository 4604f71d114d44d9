"""What federation keeps in the database across restarts: peers (the first-seen time kept on every later
save, times read back as UTC whatever the local zone), a removed peer stays gone, one catalog snapshot row."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from nekzus.config.model import FederationConfig
from nekzus.events import EventBus
from nekzus.federation.models import federation_documents
from nekzus.federation.service import OFFLINE, ONLINE, FederationService, Peer
from nekzus.store import Database


def service(db: Database) -> FederationService:
    """A service that is never started: only its persistence is exercised."""
    return FederationService(
        FederationConfig(cluster_secret="s" * 32),
        db=db,
        bus=EventBus(),
        registry=CollectorRegistry(),
        spawn=lambda work, name: None,
        local_apps=dict,
        audit=None,
        listen_host="127.0.0.1",
        api_address="",
        cert_paths=(Path("unused.crt"), Path("unused.key")),
        peer_timeout=5.0,
    )


def test_peers_and_catalog_survive_a_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")  # stored times are UTC, never the local zone
    if hasattr(time, "tzset"):
        time.tzset()

    async def scenario() -> None:
        db = Database(str(tmp_path / "nekzus.db"))
        await db.open()
        try:
            first = service(db)
            peer = Peer(
                id="peer-a",
                name="alpha",
                address="https://127.0.0.1:8443",
                gossip_addr="127.0.0.1:7946",
                fingerprint="ab" * 32,
                status=ONLINE,
                last_seen=1_700_000_300.5,
                created_at=1_700_000_000.25,
                updated_at=1_700_000_100.0,
                meta={"version": "1"},
            )
            await first._save_peer(peer)
            peer.name, peer.created_at, peer.updated_at = "alpha-2", 5.0, 1_700_000_200.0
            await first._save_peer(peer)
            await first._save_peer(Peer(id="peer-b", name="beta"))
            await first._persist_now()
            await first._persist_now()

            second = service(db)
            await second._load()
            loaded = second.peers["peer-a"]
            assert loaded == Peer(
                id="peer-a",
                name="alpha-2",
                address="https://127.0.0.1:8443",
                gossip_addr="127.0.0.1:7946",
                fingerprint="ab" * 32,
                status=OFFLINE,  # unknown until heard from again
                last_seen=1_700_000_300.5,
                created_at=1_700_000_000.25,  # the first save's
                updated_at=1_700_000_200.0,
                meta={"version": "1"},
            )
            assert second.targets == {"127.0.0.1:7946": "peer-a"}
            assert await db.scalar(select(func.count()).select_from(federation_documents)) == 1

            await second.remove_peer("peer-b")
            third = service(db)
            await third._load()
            assert sorted(third.peers) == ["peer-a"]
        finally:
            await db.close()

    try:
        asyncio.run(scenario())
    finally:
        monkeypatch.undo()
        if hasattr(time, "tzset"):
            time.tzset()
