"""The real Nekzus app under uvicorn on a loopback port, in a thread of this process: a test can reach its
services (publish bus events, swap a collaborator), run code on its loop, and move the manual clock that
judges token and API-key expiry instead of waiting for real time to pass."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import httpx

from tests.nekzus_server import deep_merge, free_port

# The manual clock starts this far behind the wall clock. Tokens carry `iat` from it, and the JWT library
# refuses a token issued "in the future" by the wall clock; starting in the past leaves room to move on.
HEADROOM = 60 * 86400.0


class ManualClock:
    """Seconds since the epoch that change only when a test says so."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() - HEADROOM if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class InProcNekzus:
    """`create_app(config)` served by uvicorn on 127.0.0.1: the same ASGI stack as `nekzus`, talked to
    over real HTTP and WebSocket. Token and API-key expiry follow `clock` (a manual one by default)."""

    def __init__(
        self, data_dir: Path, config: Mapping[str, Any] | None = None, clock: ManualClock | None = None
    ) -> None:
        from nekzus.app import create_app
        from nekzus.config import Config

        self.data_dir = data_dir
        self.port = free_port()
        self.clock = clock or ManualClock()
        raw = deep_merge(
            {
                "server": {"addr": f"127.0.0.1:{self.port}"},
                "storage": {"database_path": str(data_dir / "nexus.db")},
                "rate_limits": {"enabled": False},
            },
            config or {},
        )
        cfg = Config.model_validate({**raw, "insecure_http": True})
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.app = create_app(cfg, base_url=self.url, clock=self.clock)
        self.services = self.app.services
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.server: Any = None

    @property
    def setup_token(self) -> str:
        """The one-time first-run setup token (the `nekzus` command logs it)."""
        token = self.services.domains.auth.setup_token
        assert token is not None, "setup already done"
        return token

    def start(self, timeout: float = 30.0) -> Self:
        import uvicorn

        from nekzus.server import bind_socket

        config = uvicorn.Config(
            self.app,
            lifespan="on",
            log_config=None,
            access_log=False,
            ws="websockets-sansio",
            http="httptools",
            loop="asyncio",
            ws_max_size=1 << 20,
        )
        self.server = uvicorn.Server(config)
        sock = bind_socket(f"127.0.0.1:{self.port}")
        loop = self.loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.server.serve(sockets=[sock]))
            loop.close()

        self.thread = threading.Thread(target=run, name="nekzus-inproc", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if not self.thread.is_alive():
                    raise RuntimeError("in-process Nekzus stopped during start-up")
                try:
                    if client.get(self.url + "/readyz").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise TimeoutError("in-process Nekzus did not become ready")

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run fn on the server's loop (sync or async) and return its result."""
        assert self.loop is not None

        async def runner() -> Any:
            result = fn(*args, **kwargs)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(runner(), self.loop).result(10)

    def emit(self, type_: str, data: Any = None, **audience: Any) -> None:
        from nekzus.events import Event

        self.call(self.services.bus.publish, Event(type_, data, **audience))

    def client(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("timeout", 15.0)
        return httpx.Client(base_url=self.url, **kwargs)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(15)


def admin_bearer(srv: InProcNekzus, client: httpx.Client) -> dict[str, str]:
    """First-run setup with the server's setup token, then login: the admin's Authorization header."""
    from tests.auth.conftest import ADMIN_PASSWORD, ADMIN_USER, bearer

    r = client.post(
        "/api/v1/auth/setup",
        json={"username": ADMIN_USER, "password": ADMIN_PASSWORD},
        headers={"X-Setup-Token": srv.setup_token},
    )
    assert r.status_code == 201, r.text
    r = client.post("/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
    assert r.status_code == 200, r.text
    return bearer(r.json()["token"])


def expiring_api_key(
    srv: InProcNekzus, client: httpx.Client, admin: dict[str, str], name: str, scopes: list[str]
) -> tuple[dict[str, str], int]:
    """An API key that expires 60 s after the manual clock's now: (its header, the expiry instant)."""
    from nekzus.timefmt import rfc3339

    expires = int(srv.clock.now) + 60  # the API keeps whole seconds
    r = client.post(
        "/api/v1/apikeys", json={"name": name, "scopes": scopes, "expiresAt": rfc3339(expires)}, headers=admin
    )
    assert r.status_code == 201, r.text
    return {"X-API-Key": r.json()["key"]}, expires
