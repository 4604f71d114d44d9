"""CPU per proxied request, in process: steadier than wrk on a shared, busy machine.

    python bench/proxy_cpu.py LABEL [--requests 4000]
    PYTHONPATH=/path/to/other/src python bench/proxy_cpu.py main     # the same for another source tree

Builds the real app (`create_app`, storage started) with one route to a minimal keep-alive upstream on
loopback, then drives the proxy's ASGI callable directly (no HTTP server in front) with sequential small
GETs. Prints the best of five rounds of CPU time per request; the figure includes the upstream's own
work in the same process, so compare two trees with each other, not with the wrk numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: up\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n"
    b"Connection: keep-alive\r\n\r\nhello from upstream\n"
)


class Upstream(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        for _ in range(data.count(b"\r\n\r\n")):
            self.transport.write(RESPONSE)


async def measure(label: str, requests: int) -> None:
    from nekzus.app import create_app
    from nekzus.config import Config

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = Config.model_validate(
        {
            "server": {"addr": "127.0.0.1:18999"},
            "storage": {"database_path": str(Path(tempfile.mkdtemp()) / "nexus.db")},
            "rate_limits": {"enabled": False},
            "routes": [
                {
                    "id": "bench",
                    "app_id": "bench",
                    "path_base": "/apps/bench/",
                    "to": f"http://127.0.0.1:{port}",
                    "skip_health_check": True,
                }
            ],
        }
    )
    services = create_app(config, base_url="http://127.0.0.1:18999").services
    await services.start()
    proxy: Any = services.proxy
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/apps/bench/small",
        "raw_path": b"/apps/bench/small",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:18999"), (b"user-agent", b"wrk"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 18999),
        "scheme": "http",
        "http_version": "1.1",
    }
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(500):  # warm-up: pooled connection, route metrics
        await proxy(dict(scope), receive, send)
    assert statuses[-1] == 200, statuses[-5:]
    best = float("inf")
    for _round in range(5):
        started = time.process_time()
        for _ in range(requests):
            await proxy(dict(scope), receive, send)
        best = min(best, (time.process_time() - started) / requests * 1e6)
    print(f"{label}: {best:.1f} µs CPU per request (best of 5 x {requests})")
    await services.stop()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("label", nargs="?", default="nekzus")
    parser.add_argument("--requests", type=int, default=4000)
    args = parser.parse_args()
    asyncio.run(measure(args.label, args.requests))


if __name__ == "__main__":
    main()
