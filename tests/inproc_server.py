"""The real Nekzus app under uvicorn on a loopback port, in a thread of this process, with a manual clock
for token and API-key expiry: a test moves time on instead of waiting for it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
    """`create_app(config, clock=...)` served by uvicorn on 127.0.0.1: the same ASGI stack as `nekzus`,
    talked to over real HTTP."""

    def __init__(
        self, data_dir: Path, config: Mapping[str, Any] | None = None, clock: ManualClock | None = None
    ):
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
        self.app = create_app(cfg, base_url=self.url, clock=self.clock)
        self.services = self.app.services
        self.thread: threading.Thread | None = None
        self.server: Any = None

    @property
    def setup_token(self) -> str:
        """The one-time first-run setup token (the `nekzus` command logs it)."""
        token = self.services.domains.auth.setup_token
        assert token is not None, "setup already done"
        return token

    def start(self, timeout: float = 30.0) -> InProcNekzus:
        import uvicorn

        from nekzus.server import bind_socket

        config = uvicorn.Config(self.app, lifespan="on", log_config=None, access_log=False, loop="asyncio")
        self.server = uvicorn.Server(config)
        sock = bind_socket(f"127.0.0.1:{self.port}")

        def run() -> None:
            asyncio.run(self.server.serve(sockets=[sock]))

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

    def client(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("timeout", 15.0)
        return httpx.Client(base_url=self.url, **kwargs)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(15)
