"""Serving certificates: one listening SSL context whose SNI callback picks a per-certificate context.

Each handshake asks `select()` which context to use, so replacing an entry changes what *new* connections
see while connections already established keep the context they negotiated with: a hot swap that drops
nothing.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nekzus.certs.pem import CertInfo


class Served:
    """One certificate handshakes can be served: its SSL context and what the API shows about it.

    `info` may be given as a function: it is then parsed (with `cryptography`, ~10 MiB once loaded) on
    first use, so a server that only serves its own certificate never loads it; `not_after`, which
    health and renewal read, can be given up front (read through `ssl`).
    """

    def __init__(
        self,
        info: CertInfo | Callable[[], CertInfo],
        context: ssl.SSLContext,
        not_after: dt.datetime | None = None,
    ) -> None:
        self.context = context
        self._info: CertInfo | None = None
        self._describe: Callable[[], CertInfo] | None = None
        if callable(info):
            self._describe = info
        else:
            self._info = info
        self._not_after = not_after

    @property
    def info(self) -> CertInfo:
        if self._info is None:
            assert self._describe is not None
            self._info = self._describe()
        return self._info

    @property
    def not_after(self) -> dt.datetime:
        return self._not_after if self._not_after is not None else self.info.not_after


def build_context(cert_pem: bytes, key_pem: bytes, runtime_dir: Path) -> ssl.SSLContext:
    """An SSL context for one pair. `ssl` only loads from files: a 0600 temp file, removed at once."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(dir=runtime_dir, suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(cert_pem.rstrip(b"\n") + b"\n" + key_pem)
        context.load_cert_chain(name)
    finally:
        os.unlink(name)
    return context


class SniStore:
    """What each handshake is served: managed certificates by name, then the fallback, then any."""

    def __init__(self, default_name: Callable[[], str]) -> None:
        self.default_name = default_name
        self.managed: dict[str, Served] = {}
        self.fallback: Served | None = None
        self._listener: ssl.SSLContext | None = None
        self.served_total = 0
        self.missed_total = 0

    def select(self, server_name: str | None) -> Served | None:
        name = (server_name or self.default_name()).lower()
        now = dt.datetime.now(dt.UTC)
        live = [s for s in self.managed.values() if s.not_after > now]
        exact = self.managed.get(name)
        if exact is not None and exact in live:
            return exact
        for served in live:
            if served.info.covers(name):
                return served
        if self.fallback is not None:
            return self.fallback
        for preferred in ("localhost", "localhost.local"):
            hit = self.managed.get(preferred)
            if hit is not None and hit in live:
                return hit
        return live[0] if live else None

    def has_any(self) -> bool:
        return bool(self.managed) or self.fallback is not None

    def listener_context(self) -> ssl.SSLContext:
        """The context the listening socket uses; built once, its SNI callback reads the live table."""
        if self._listener is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            # No certificate of its own: the SNI callback (also called without SNI) switches every
            # handshake to the chosen certificate's context before the certificate is sent.
            context.sni_callback = self._on_sni
            self._listener = context
        return self._listener

    def _on_sni(self, ssl_obj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        chosen = self.select(server_name)
        if chosen is None:
            self.missed_total += 1
            return
        self.served_total += 1
        ssl_obj.context = chosen.context
