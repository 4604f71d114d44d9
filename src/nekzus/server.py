"""Run Nekzus: TLS material, sockets, uvicorn, the optional HTTP→HTTPS redirect, clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import re
import signal
import socket
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nekzus.config import Config
from nekzus.workers import WorkerInfo

log = logging.getLogger("nekzus")


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def bind_socket(addr: str) -> socket.socket:
    """Listen on `addr`; an empty host means every interface, IPv4 and IPv6 where available."""
    host, port = split_addr(addr)
    candidates: list[tuple[int, str]] = []
    if host in ("", "*"):
        if socket.has_ipv6:
            candidates.append((socket.AF_INET6, "::"))
        candidates.append((socket.AF_INET, "0.0.0.0"))
    else:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        candidates = [(int(family), str(sockaddr[0])) for family, _, _, _, sockaddr in info]
    last_error: OSError | None = None
    for family, bind_host in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and bind_host == "::":
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            # Inherited by accepted connections (Linux): without it a response written as head + body
            # waits for the client's delayed ACK (~40 ms per keep-alive request).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((bind_host, port))
            sock.listen(2048)
            sock.setblocking(False)
            return sock
        except OSError as exc:
            sock.close()
            last_error = exc
    raise OSError(f"cannot listen on {addr}: {last_error}")


def prepare_tls(config: Config) -> tuple[Path, Path] | None:
    if not config.tls_enabled:
        return None
    from nekzus.certs.selfsigned import ensure_certificate, validate_pair

    if config.server.tls_cert:
        cert, key, generated = Path(config.server.tls_cert), Path(config.server.tls_key), False
    else:
        tls_dir = Path(config.data_dir) / "tls"
        cert, key, generated = tls_dir / "server.crt", tls_dir / "server.key", True
    issuer = None
    if generated:

        def issuer(domains: list[str]) -> tuple[bytes, bytes]:
            def issue() -> tuple[bytes, bytes]:
                from nekzus.certs.ca import LocalCA

                return LocalCA.load_or_create(Path(config.data_dir) / "ca").issue(domains)

            return in_child(issue)

    ensure_certificate(cert, key, generated=generated, issue=issuer)
    validate_pair(cert, key)
    return cert, key


def in_child(issue: Callable[[], tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
    """Issue a certificate in a forked child and return its PEM pair (certificate, key).

    Issuing loads the local CA and `cryptography` (~10 MiB of code and libraries). Done in a child that
    exits, it stays out of the server and of the workers forked from it; a first start on a fresh data
    directory is then as small as a restart. Where fork is missing, it runs here."""
    if not hasattr(os, "fork"):
        return issue()
    from nekzus.certs.selfsigned import TlsSetupError

    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer through the pipe, then leave without running the parent's exit code
        os.close(reader)
        code = 0
        try:
            cert, key = issue()
            answer = {"cert": cert.decode("ascii"), "key": key.decode("ascii")}
        except BaseException as exc:  # every failure, reported to the parent
            answer, code = {"error": f"{type(exc).__name__}: {exc}"}, 1
        with os.fdopen(writer, "w") as out:
            out.write(json.dumps(answer))
        os._exit(code)
    os.close(writer)
    with os.fdopen(reader) as source:
        data = source.read()
    os.waitpid(pid, 0)
    try:
        answer = json.loads(data) if data else {}
    except ValueError:
        answer = {}
    if "cert" in answer and "key" in answer:
        return answer["cert"].encode("ascii"), answer["key"].encode("ascii")
    reason = answer.get("error") or "the issuing process ended without an answer"
    raise TlsSetupError(f"could not issue the TLS certificate: {reason}")


class ListenerSwap:
    """Switch uvicorn's listening socket from plain HTTP to TLS without a restart.

    The old asyncio server stops accepting (its open connections keep running), and a new one accepts
    on a duplicate of the same listening socket with TLS: queued connections wait in the kernel's
    backlog meanwhile, so none is refused.
    """

    def __init__(self, server: Any, sock: socket.socket, on_enabled: Any = None) -> None:
        self.server = server
        self.on_enabled = on_enabled
        # Duplicated before serving: the event loop may take ownership of (and later close) `sock`.
        self.spare = sock.dup()

    async def enable_tls(self, context: ssl.SSLContext) -> None:
        for _ in range(400):  # the first certificate may be found while uvicorn is still starting
            if self.server.started:
                break
            await asyncio.sleep(0.025)
        server, config = self.server, self.server.config
        for old in list(server.servers):
            old.close()

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            protocol: asyncio.Protocol = config.http_protocol_class(
                config=config, server_state=server.server_state, app_state=server.lifespan.state, _loop=_loop
            )
            return protocol

        loop = asyncio.get_running_loop()
        fresh = await loop.create_server(
            create_protocol, sock=self.spare, ssl=context, backlog=config.backlog
        )
        server.servers.append(fresh)
        config.ssl = context
        if self.on_enabled is not None:
            self.on_enabled()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.spare.close()


_PRINTABLE = re.compile(r"[\x21-\x7e]*")


async def _redirect_server(addr: str, https_port: int) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            target = parts[1] if len(parts) >= 2 else "/"
            # Only a plain origin-form target is copied into Location: no control characters (a CR or
            # LF would split the response), no spaces, nothing that is not printable ASCII.
            if not target.startswith("/") or target.startswith("//") or not _PRINTABLE.fullmatch(target):
                target = "/"
            host = "localhost"
            for line in lines[1:]:
                if line.lower().startswith("host:"):
                    host = line.split(":", 1)[1].strip()
            if host.startswith("["):
                host = host[: host.index("]") + 1] if "]" in host else "localhost"
            else:
                host = host.split(":", 1)[0]
            if not host or any(c in host for c in "\r\n\0/\\ @"):
                host = "localhost"
            port = "" if https_port == 443 else f":{https_port}"
            location = f"https://{host}{port}{target}"
            body = b"Redirecting to HTTPS\n"
            writer.write(
                b"HTTP/1.1 301 Moved Permanently\r\nLocation: "
                + location.encode("latin-1", "replace")
                + b"\r\nContent-Type: text/plain\r\nX-API-Version: v1\r\nConnection: close"
                + b"\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    sock = bind_socket(addr)
    return await asyncio.start_server(handle, sock=sock, limit=16384)


def collect_from_now_on() -> None:
    """End of start-up: move every object made so far to the collector's permanent generation (it is not
    scanned again, and forked workers keep sharing those pages instead of copying them when the
    collector touches their headers), then turn collection back on (`nekzus.cli` turned it off)."""
    gc.freeze()
    gc.enable()


# glibc's malloc serves blocks above its mmap threshold (128 KiB, then adapting) with fresh mmap()s and
# gives freed heap space back to the kernel past 128 KiB. The event loop reads sockets into buffers of
# up to 256 KiB, so a proxied download was mapping, faulting in and unmapping memory on every read:
# ~25 % of the CPU of a 1 MiB response (bench/RESULTS.md). Keeping such blocks on the heap, and up to
# 8 MiB of free heap for reuse, removes that; larger blocks are still mapped and returned at once.
MMAP_THRESHOLD = 1024 * 1024
TRIM_THRESHOLD = 8 * 1024 * 1024
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt() parameter numbers (malloc.h)


def tune_allocator() -> bool:
    """Set the thresholds above when the C library is glibc (elsewhere nothing changes); before
    workers are forked, so they inherit them. Returns whether they were set."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except AttributeError:  # not glibc (musl, for one)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def _exit_cleanly(_signum: int, _frame: Any) -> None:
    # uvicorn re-raises the signal it caught once shutdown is complete: finish with exit code 0.
    sys.exit(0)


def run(config: Config, config_path: str | None = None) -> int:
    """Prepare TLS and the listening socket once, then serve: in this process (`server.workers: 1`),
    or in that many forked workers under a supervisor (`nekzus.workers`)."""
    from nekzus.certs.selfsigned import TlsSetupError
    from nekzus.lean import keep_out_unused_imports
    from nekzus.workers import default_count

    keep_out_unused_imports()
    tune_allocator()
    try:
        tls = prepare_tls(config)
    except TlsSetupError as exc:
        print(f"nekzus: {exc}", file=sys.stderr)
        return 2
    if tls is None:
        log.warning("serving plain HTTP (--insecure-http): credentials and tokens travel unencrypted")
    count = default_count(config.server.workers)
    if count == 1:
        return serve(config, tls, config_path)
    try:
        sock = bind_socket(config.server.addr)
    except OSError as exc:
        print(f"nekzus: server.addr: {exc}", file=sys.stderr)
        return 1
    # Imported before fork: the workers share these pages and start faster.
    import uvicorn  # noqa: F401

    import nekzus.app
    import nekzus.http.protocol
    import nekzus.workers.wiring  # noqa: F401
    from nekzus.workers.supervisor import Supervisor

    def serve_worker(info: WorkerInfo) -> int:
        return serve(config, tls, config_path, sock=sock, worker=info)

    return Supervisor(count, serve_worker, config.server.shutdown_timeout, listener=sock).run()


def serve(
    config: Config,
    tls: tuple[Path, Path] | None,
    config_path: str | None,
    *,
    sock: socket.socket | None = None,
    worker: WorkerInfo | None = None,
) -> int:
    """Build the app and run uvicorn on `sock` (bound here when None) until a stop signal."""
    import uvicorn

    from nekzus.api.certificates import CERTIFICATES
    from nekzus.app import create_app
    from nekzus.http.protocol import CoalescingHttpToolsProtocol, TunnellingHttpToolsProtocol

    app = create_app(
        config,
        tls_cert_path=tls[0] if tls else None,
        tls_key_path=tls[1] if tls else None,
        config_path=config_path,
    )
    served: Any = app
    start_failed = False
    if worker is not None:
        from nekzus.workers.wiring import join

        def stop_failed_worker() -> None:
            # The supervisor restarts a worker that exits (with back-off): a worker whose start-up
            # failed leaves rather than answering "not ready" for good.
            nonlocal start_failed
            start_failed = True
            server.should_exit = True

        served = join(app, worker, on_failed=stop_failed_worker)
    leader = worker is None or worker.leader
    if sock is None:
        try:
            sock = bind_socket(config.server.addr)
        except OSError as exc:
            print(f"nekzus: server.addr: {exc}", file=sys.stderr)
            return 1
    uv_config = uvicorn.Config(
        served,
        ssl_certfile=str(tls[0]) if tls else None,
        ssl_keyfile=str(tls[1]) if tls else None,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,  # forwarding headers are judged by server.trusted_proxies, not uvicorn
        timeout_graceful_shutdown=max(1, int(config.server.shutdown_timeout) - 1),
        timeout_keep_alive=75,
        loop="uvloop",
        http=TunnellingHttpToolsProtocol.tunnelling(
            CoalescingHttpToolsProtocol.configured(
                head_timeout=config.server.read_header_timeout,
                body_timeout=config.server.read_body_timeout,
                # Proxied plain GETs are answered from protocol callbacks, without an ASGI task.
                direct=served.direct,
            ),
            # Proxied WebSocket routes take the client connection after the handshake (a byte tunnel).
            app.services.domains.proxy.claims_tunnel,
        ),
        ws="websockets-sansio",
        ws_max_size=1 << 20,
        h11_max_incomplete_event_size=1 << 20,
    )
    uv_config.load()
    collect_from_now_on()
    if uv_config.ssl is not None:
        uv_config.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
    swap: ListenerSwap | None = None

    class Server(uvicorn.Server):
        """Closes the spare listening socket as shutdown begins: while a duplicate stays open the kernel
        keeps queueing new connections that nobody will accept, so clients hang instead of being refused."""

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            if swap is not None:
                swap.close()
            await super().shutdown(sockets)

    server = Server(uv_config)
    swap = ListenerSwap(server, sock, on_enabled=lambda: setattr(app.stack, "tls", True))
    certs = app.services.domains.features.get(CERTIFICATES)
    if certs is not None:
        # Managed certificates are chosen per handshake by SNI; the file pair is the fallback.
        if tls:
            certs.set_fallback(tls[0], tls[1], own=not config.server.tls_cert)
            uv_config.ssl = certs.sni.listener_context()
        certs.attach(swap, serving_tls=tls is not None)
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGINT, _exit_cleanly)
    scheme = "https" if tls else "http"
    if leader:
        base = app.services.base_url
        log.info("Nekzus listening on %s://%s (base URL %s)", scheme, config.server.addr, base)

    async def main() -> None:
        redirect = None
        # One redirect listener per instance: the leader's (a restarted leader binds it again).
        if config.server.http_redirect_addr and tls and leader:
            redirect = await _redirect_server(
                config.server.http_redirect_addr, split_addr(config.server.addr)[1]
            )
            log.info("redirecting http://%s to HTTPS", config.server.http_redirect_addr)
        try:
            await server.serve(sockets=[sock])
        finally:
            swap.close()
            if redirect is not None:
                redirect.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(redirect.wait_closed(), 1)

    # uvicorn's `loop="uvloop"` only applies to uvicorn.run(); serve() runs on the caller's loop.
    loop_factory = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())
    return 1 if start_failed else 0
