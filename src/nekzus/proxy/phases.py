"""The pure phases of proxying one request, shared by the HTTP path and the WebSocket tunnel.

    parse head -> check head -> (admit: app.py) -> upstream target -> forwarding headers
               -> cookie merge -> request bytes ... response shaping

Each phase is a plain function over slotted data, with no I/O, so it is unit-tested without sockets
(tests/proxy/test_phases.py). The I/O (admission, upstream connection, streaming) lives in `app.py` and
`websocket.py`, which call these in order. There is one list of request headers never forwarded as sent,
one upstream path computation, one cookie merge and one request-id rule (`nekzus.http.requestid`).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

from nekzus import API_VERSION
from nekzus.catalog.spec import RouteSpec
from nekzus.http.errors import error_body
from nekzus.http.protocol import ABORT_EXTENSION
from nekzus.proxy.rewrite import Rewriter
from nekzus.proxy.routes import CompiledRoute

MAX_REQUEST_HEAD = 64 * 1024
HOP_HEADER = b"x-nekzus-hop"
Headers = list[tuple[bytes, bytes]]

# Request headers never forwarded as sent (HTTP and WebSocket alike). `_DROP`: hop-by-hop, credentials
# meant for Nekzus, identity headers an upstream may trust as "already authenticated" (forward-auth style
# apps), framing Nekzus sets itself; `_FORWARDED`: forwarding headers, rebuilt by `forwarding_headers` (a
# trusted proxy's chain is kept there). Names are matched with `_` read as `-` (some servers and
# frameworks treat them alike), and any non-canonical spelling of a listed name is dropped outright.
_DROP = 1
_FORWARDED = 2
IDENTITY_HEADERS = (
    b"remote-user",
    b"remote-email",
    b"remote-groups",
    b"remote-name",
    b"x-remote-user",
    b"x-remote-email",
    b"x-remote-groups",
    b"x-webauth-user",
    b"x-forwarded-user",
    b"x-forwarded-email",
    b"x-forwarded-groups",
    b"x-forwarded-preferred-username",
    b"x-auth-request-user",
    b"x-auth-request-email",
    b"x-authentik-username",
)
STRIPPED_REQUEST_HEADERS: dict[bytes, int] = {
    b"host": _DROP,
    b"connection": _DROP,
    b"keep-alive": _DROP,
    b"proxy-connection": _DROP,
    b"proxy-authorization": _DROP,
    b"te": _DROP,
    b"trailer": _DROP,
    b"transfer-encoding": _DROP,
    b"upgrade": _DROP,
    b"expect": _DROP,
    b"authorization": _DROP,
    b"x-api-key": _DROP,
    b"content-length": _DROP,
    b"x-request-id": _DROP,
    HOP_HEADER: _DROP,
    **dict.fromkeys(IDENTITY_HEADERS, _DROP),
    b"forwarded": _FORWARDED,
    b"x-forwarded-for": _FORWARDED,
    b"x-forwarded-proto": _FORWARDED,
    b"x-forwarded-host": _FORWARDED,
    b"x-forwarded-port": _FORWARDED,
    b"x-forwarded-prefix": _FORWARDED,
    b"x-real-ip": _FORWARDED,
}


def header_key(name: bytes) -> bytes:
    """A header name as the strip list matches it: lower case, `_` read as `-`."""
    return name.lower().replace(b"_", b"-")


def strip_list(extra: Iterable[str] = ()) -> dict[bytes, int]:
    """The built-in strip list plus configured names (dropped); a built-in entry keeps its kind."""
    added = {header_key(n.strip().encode("latin-1")): _DROP for n in extra if n.strip()}
    return {**added, **STRIPPED_REQUEST_HEADERS}


RESPONSE_HOP_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
    }
)
_CONNECTION_KEEP = frozenset({b"keep-alive", b"close", b"upgrade"})
_OWN_RESPONSE_HEADERS = (b"x-api-version", b"x-request-id")


class Refused(Exception):
    """A proxied request is turned away before reaching the upstream."""

    def __init__(self, status: int, code: str, message: str, headers: Headers | None = None):
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or []


@dataclass(slots=True)
class RequestHead:
    """What one pass over the client's request headers found."""

    forward: Headers  # headers to copy upstream as they are
    forwarded_in: Headers  # the client's forwarding headers (kept only from a trusted proxy)
    host: bytes = b""
    hop: bytes = b""
    request_id: bytes = b""  # as sent; see `nekzus.http.requestid` for the rule that accepts it
    content_length: int = -1  # -1: absent, -2: not a number
    chunked: bool = False
    size: int = 0
    connection: bytes = b""


def parse_head(raw: Headers, strip: Mapping[bytes, int] = STRIPPED_REQUEST_HEADERS) -> RequestHead:
    """One pass over the client's headers (ASGI gives them lower-cased): what to copy upstream, the
    client's forwarding headers, and the values the later phases need.

    `strip` is the strip list (`strip_list` with the configured names). Every `Connection` line counts:
    the headers any of them names stay with this hop, matched like the strip list."""
    forward: Headers = []
    forwarded_in: Headers = []
    keep = forward.append
    special = strip
    host = hop = request_id = connection = b""
    content_length = -1
    chunked = False
    size = 0
    for name, value in raw:  # locals only: this loop runs for every header of every request
        size += len(name) + len(value)
        kind = special.get(name)
        if kind is None:
            if b"_" not in name or header_key(name) not in special:
                keep((name, value))
            # else: an odd spelling of a listed name (`x-forwarded_for`): never copied, never trusted
        elif kind == _FORWARDED:
            forwarded_in.append((name, value))
        elif name == b"host":
            host = value
        elif name == b"content-length":
            try:
                content_length = int(value)
            except ValueError:
                content_length = -2
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            connection = connection + b"," + value if connection else value
        elif name == HOP_HEADER:
            hop = value
        elif name == b"x-request-id":
            request_id = value
    if connection:
        # Headers the client named hop-by-hop in `Connection` stay with this hop.
        named = {header_key(t.strip()) for t in connection.split(b",")} - _CONNECTION_KEEP
        named.discard(b"")
        if named:
            forward = [h for h in forward if header_key(h[0]) not in named]
    return RequestHead(
        forward, forwarded_in, host, hop, request_id, content_length, chunked, size, connection
    )


def bad_path(path: str) -> bool:
    if "\x00" in path or "\r" in path or "\n" in path or "\\" in path:
        return True
    if "/." in path:
        for segment in path.split("/"):
            if segment in (".", ".."):
                return True
    return False


def check_head(head: RequestHead, path: str) -> Refused | None:
    """Requests refused before any route lookup: oversized head, bad host or path, ambiguous framing."""
    if head.size > MAX_REQUEST_HEAD:
        return Refused(431, "HEADERS_TOO_LARGE", "Request headers are too large")
    host = head.host
    if b"\x00" in host or b"\r" in host or b"\n" in host or b" " in host:
        return Refused(400, "INVALID_REQUEST", "Invalid host header")
    if bad_path(path):
        return Refused(400, "INVALID_PATH", "Invalid request path")
    if head.content_length == -2 or (head.chunked and head.content_length >= 0):
        return Refused(400, "INVALID_REQUEST", "Invalid Content-Length")
    return None


def abort_of(scope: Mapping[str, object]) -> Callable[[], object] | None:
    """The server's way to end a response whose body cannot be completed (it closes the connection),
    when it offers one."""
    extensions = scope.get("extensions")
    offered = extensions.get(ABORT_EXTENSION) if isinstance(extensions, dict) else None
    return offered["abort"] if isinstance(offered, dict) else None


def error_response(common: Headers, code: str, message: str) -> tuple[Headers, bytes]:
    """Headers and body of an error answered by the proxy itself, in the API's error shape."""
    body = error_body(code, message)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *common,
    ]
    return headers, body


def common_headers(request_id: bytes, tls: bool) -> Headers:
    """Headers on every answer of the proxy itself, as on the API's."""
    if tls:
        return [_API_VERSION, (b"x-request-id", request_id), _HSTS]
    return [_API_VERSION, (b"x-request-id", request_id)]


_API_VERSION = (b"x-api-version", API_VERSION.encode())
_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")


def upstream_path(route: CompiledRoute, path: str, raw_path: bytes | None, subdomain: bool) -> bytes:
    """The path to ask the upstream for: the route prefix stripped (unless found by subdomain or the route
    keeps it), the target URL's own path in front. Percent-encoding is kept as the client sent it."""
    raw = raw_path or quote(path).encode("latin-1")
    if not subdomain and route.spec.strip_prefix:
        if raw.startswith(route.prefix_raw):
            raw = raw[len(route.prefix_raw) :]
        else:
            raw = quote(path[len(route.prefix) :]).encode("latin-1")
    if not raw.startswith(b"/"):
        raw = b"/" + raw
    return route.base_path + raw if route.base_path else raw


def with_query(path: bytes, query: bytes) -> bytes:
    return path + b"?" + query if query else path


@dataclass(slots=True)
class Forwarding:
    """Who the client is and how it reached Nekzus, as the upstream is told."""

    peer: str  # the TCP peer
    client_ip: str  # the resolved client address
    peer_is_trusted_proxy: bool
    scheme: bytes  # http or https, as Nekzus is served
    request_id: bytes
    hop_token: bytes


def forwarding_headers(head: RequestHead, fwd: Forwarding, prefix: str | None) -> Headers:
    """X-Forwarded-*, X-Real-IP, the request id and the loop-detection hop header.

    From a trusted proxy its X-Forwarded-For chain and protocol are kept; otherwise they start afresh.
    """
    xff = fwd.peer.encode("latin-1")
    proto = fwd.scheme
    if fwd.peer_is_trusted_proxy:
        # Every X-Forwarded-For line, in order, then the peer (the chain is one list across lines).
        chain = [value for name, value in head.forwarded_in if name == b"x-forwarded-for"]
        if chain:
            xff = b", ".join([*chain, xff])
        for name, value in head.forwarded_in:
            if name == b"x-forwarded-proto":
                proto = value
    host = head.host
    port = host.rpartition(b":")[2] if host.rfind(b":") > host.rfind(b"]") else b""
    out = [
        (b"x-forwarded-for", xff),
        (b"x-real-ip", fwd.client_ip.encode("latin-1")),
        (b"x-forwarded-proto", proto),
        (b"x-forwarded-host", host),
        (b"x-forwarded-port", port or (b"443" if proto == b"https" else b"80")),
        (b"x-request-id", fwd.request_id),
        (HOP_HEADER, fwd.hop_token),
    ]
    if prefix is not None:
        out.append((b"x-forwarded-prefix", prefix.encode("latin-1")))
    return out


def forwarded_prefix(route: CompiledRoute, subdomain: bool) -> str | None:
    return route.prefix if route.spec.strip_prefix and not subdomain else None


def merge_cookies(headers: Headers, stored: dict[str, str]) -> Headers:
    """Stored cookies fill in what the client did not send itself (one `Cookie` header, client's first)."""
    sent: set[str] = set()
    out = []
    existing = b""
    for name, value in headers:
        if name == b"cookie":
            existing = value if not existing else existing + b"; " + value
            continue
        out.append((name, value))
    for part in existing.decode("latin-1").split(";"):
        key = part.split("=", 1)[0].strip()
        if key:
            sent.add(key)
    extra = "; ".join(f"{k}={v}" for k, v in stored.items() if k not in sent)
    merged = existing.decode("latin-1")
    if extra:
        merged = f"{merged}; {extra}" if merged else extra
    if merged:
        out.append((b"cookie", merged.encode("latin-1")))
    return out


def body_framing(head: RequestHead, method: str) -> Headers:
    """How the request body is delimited upstream: chunked as sent, or its length."""
    if head.chunked:
        return [(b"transfer-encoding", b"chunked")]
    length = head.content_length
    if length >= 0 and (length > 0 or method in ("POST", "PUT", "PATCH")):
        return [(b"content-length", str(length).encode())]
    return []


def chunk(body: bytes, more: bool) -> bytes:
    """One piece of a chunked request body (the terminator after the last)."""
    return (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + (b"" if more else b"0\r\n\r\n")


def request_bytes(method: str, target: bytes, host: bytes, headers: Headers, extra: Headers) -> bytes:
    parts = [method.encode("latin-1"), b" ", target, b" HTTP/1.1\r\nhost: ", host, b"\r\n"]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    for name, value in extra:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


@dataclass(slots=True)
class ResponseShape:
    """The upstream's response headers as the client gets them, and what the proxy needs to know."""

    headers: Headers
    content_type: bytes = b""
    length: int | None = None
    set_cookies: Headers | None = None  # (b"set-cookie", value) as the upstream sent them


def shape_response(upstream: Headers, spec: RouteSpec, rewriter: Rewriter | None) -> ResponseShape:
    """Drop hop-by-hop and Nekzus' own headers; apply the route's cookie policy (strip, or rewrite the
    path under the prefix). Location/CSP rewriting that needs the request host is done by the caller."""
    shape = ResponseShape([])
    out = shape.headers
    rewrite_cookies = rewriter is not None and spec.rewrite_cookie_paths
    for name, value in upstream:
        if name in RESPONSE_HOP_HEADERS:
            continue
        if name == b"content-type":
            shape.content_type = value
        elif name == b"content-length":
            try:
                shape.length = int(value)
            except ValueError:
                shape.length = None
        elif name == b"set-cookie":
            if shape.set_cookies is None:
                shape.set_cookies = []
            shape.set_cookies.append((name, value))
            if spec.strip_response_cookies:
                continue
            if rewrite_cookies:
                assert rewriter is not None
                value = rewriter.cookie_path(value)
        elif name in _OWN_RESPONSE_HEADERS:
            continue
        out.append((name, value))
    return shape


def header_value(headers: Headers, name: bytes) -> bytes:
    for key, value in headers:
        if key == name:
            return value
    return b""


def charset_of(content_type: bytes) -> str:
    lowered = content_type.lower()
    idx = lowered.find(b"charset=")
    if idx >= 0:
        name = lowered[idx + 8 :].split(b";", 1)[0].strip().strip(b'"').decode("latin-1")
        try:
            "".encode(name)
            return name
        except LookupError:
            return "utf-8"
    return "utf-8"


def decode_body(body: bytes, encoding: bytes, content_type: bytes) -> str | None:
    """The text of a buffered response for rewriting, or None when it cannot be decoded."""
    enc = encoding.strip().lower()
    try:
        if enc == b"gzip":
            body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
        elif enc == b"deflate":
            body = zlib.decompress(body)
        elif enc not in (b"", b"identity"):
            return None
        return body.decode(charset_of(content_type), errors="surrogateescape")
    except (zlib.error, UnicodeDecodeError, LookupError):
        return None
