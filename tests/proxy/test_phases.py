"""The proxy's pure phases, without sockets: header parsing and stripping, upstream path, forwarding
headers, cookie merge, request-id rule, body framing, response shaping, WebSocket handshake headers."""

from __future__ import annotations

import gzip

import pytest

from nekzus.catalog.spec import RouteSpec
from nekzus.http.envelope import request_id_from
from nekzus.http.requestid import valid_request_id
from nekzus.proxy.phases import (
    Forwarding,
    body_framing,
    check_head,
    chunk,
    decode_body,
    forwarded_prefix,
    forwarding_headers,
    merge_cookies,
    parse_head,
    request_bytes,
    shape_response,
    strip_list,
    upstream_path,
)
from nekzus.proxy.rewrite import Rewriter
from nekzus.proxy.routes import CompiledRoute
from nekzus.proxy.upstream import UpstreamPool
from nekzus.proxy.websocket import accept_value, handshake_headers


def _route(to: str = "http://127.0.0.1:9000", *, strip: bool = True, **extra: object) -> CompiledRoute:
    spec = RouteSpec.model_validate(
        {"route_id": "r", "app_id": "a", "path_base": "/apps/demo/", "to": to, "strip_prefix": strip, **extra}
    )
    base = to.split("://", 1)[1].partition("/")[2]
    return CompiledRoute(
        spec=spec,
        pool=UpstreamPool("127.0.0.1", 9000, None, None),
        pool_key=("https" if to.startswith("https") else "http", "127.0.0.1", 9000, True),
        prefix="/apps/demo",
        prefix_raw=b"/apps/demo",
        base_path=(b"/" + base.rstrip("/").encode()) if base else b"",
        scopes=(),
        loop=False,
        rewriter=Rewriter("/apps/demo", ()) if strip else None,
        upstream_host=b"127.0.0.1:9000",
    )


def test_parse_head_strips_credentials_hop_and_forwarding_headers() -> None:
    head = parse_head(
        [
            (b"host", b"nekzus.local:8443"),
            (b"authorization", b"Bearer secret"),
            (b"x-api-key", b"k"),
            (b"x_api_key", b"k"),
            (b"x-forwarded-for", b"6.6.6.6"),
            (b"x-nekzus-hop", b"abc"),
            (b"x-request-id", b"trace-1"),
            (b"content-length", b"12"),
            (b"connection", b"keep-alive, x-private"),
            (b"x-private", b"1"),
            (b"accept", b"*/*"),
            (b"cookie", b"a=1"),
        ]
    )
    assert head.forward == [(b"accept", b"*/*"), (b"cookie", b"a=1")]
    assert head.forwarded_in == [(b"x-forwarded-for", b"6.6.6.6")]
    assert (head.host, head.hop, head.request_id, head.content_length) == (
        b"nekzus.local:8443",
        b"abc",
        b"trace-1",
        12,
    )


def test_parse_head_normalises_names_and_honours_every_connection_line() -> None:
    head = parse_head(
        [
            (b"x-forwarded_for", b"7.7.7.7"),
            (b"x_real_ip", b"7.7.7.7"),
            (b"remote_user", b"admin"),
            (b"x-webauth-user", b"admin"),
            (b"x-site-token", b"t"),
            (b"connection", b"keep-alive"),
            (b"connection", b"X_Named"),
            (b"x-named", b"1"),
            (b"x-forwarded-for", b"10.0.0.1"),
            (b"accept", b"*/*"),
        ],
        strip_list(["X-Site_Token"]),
    )
    assert head.forward == [(b"accept", b"*/*")]
    # Only the canonical spelling is ever taken as a forwarding header.
    assert head.forwarded_in == [(b"x-forwarded-for", b"10.0.0.1")]


def test_trusted_chain_keeps_every_line_in_order() -> None:
    head = parse_head([(b"x-forwarded-for", b"1.1.1.1"), (b"x-forwarded-for", b"2.2.2.2, 3.3.3.3")])
    fwd = Forwarding("10.0.0.9", "1.1.1.1", True, b"https", b"id", b"tok")
    xff = dict(forwarding_headers(head, fwd, None))[b"x-forwarded-for"]
    assert xff == b"1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9"


@pytest.mark.parametrize(
    ("headers", "path", "status"),
    [
        ([(b"x-big", b"v" * 70_000)], "/apps/demo/", 431),
        ([(b"host", b"a b")], "/apps/demo/", 400),
        ([], "/apps/demo/../etc", 400),
        ([(b"content-length", b"nope")], "/apps/demo/", 400),
        ([(b"content-length", b"3"), (b"transfer-encoding", b"chunked")], "/apps/demo/", 400),
    ],
)
def test_check_head_refusals(headers: list[tuple[bytes, bytes]], path: str, status: int) -> None:
    refused = check_head(parse_head(headers), path)
    assert refused is not None and refused.status == status


def test_check_head_accepts_ordinary_request() -> None:
    assert check_head(parse_head([(b"host", b"x"), (b"content-length", b"3")]), "/apps/demo/a") is None


def test_one_request_id_rule_for_proxy_and_api() -> None:
    for good in (b"abc-123.def", b"trace:1_2", b"x" * 128):
        assert valid_request_id(good)
    for bad in (b"", b"bad id", b"a<script>", b"x" * 129, "é".encode()):
        assert not valid_request_id(bad)
    # The API envelope applies the same rule.
    assert request_id_from({"headers": [(b"x-request-id", b"trace:1_2")]}) == "trace:1_2"
    assert request_id_from({"headers": [(b"x-request-id", b"bad id")]}) != "bad id"


def test_upstream_path() -> None:
    route = _route()
    assert upstream_path(route, "/apps/demo/a b", b"/apps/demo/a%20b", False) == b"/a%20b"
    assert upstream_path(route, "/apps/demo", None, False) == b"/"
    # Found by subdomain: the path is the upstream's as is.
    assert upstream_path(route, "/x", b"/x", True) == b"/x"
    assert upstream_path(_route(strip=False), "/apps/demo/x", b"/apps/demo/x", False) == b"/apps/demo/x"
    assert upstream_path(_route("http://127.0.0.1:9000/base/"), "/apps/demo/x", None, False) == b"/base/x"


def _fwd(trusted: bool) -> Forwarding:
    return Forwarding("10.0.0.1", "203.0.113.9", trusted, b"http", b"rid", b"hop")


def test_forwarding_headers_start_afresh_unless_from_a_trusted_proxy() -> None:
    head = parse_head(
        [(b"host", b"gw.local:8080"), (b"x-forwarded-for", b"1.2.3.4"), (b"x-forwarded-proto", b"https")]
    )
    fresh = dict(forwarding_headers(head, _fwd(False), "/apps/demo"))
    assert fresh == {
        b"x-forwarded-for": b"10.0.0.1",
        b"x-real-ip": b"203.0.113.9",
        b"x-forwarded-proto": b"http",
        b"x-forwarded-host": b"gw.local:8080",
        b"x-forwarded-port": b"8080",
        b"x-request-id": b"rid",
        b"x-nekzus-hop": b"hop",
        b"x-forwarded-prefix": b"/apps/demo",
    }
    chained = dict(forwarding_headers(head, _fwd(True), None))
    assert chained[b"x-forwarded-for"] == b"1.2.3.4, 10.0.0.1"
    assert chained[b"x-forwarded-proto"] == b"https"
    assert b"x-forwarded-prefix" not in chained
    assert forwarded_prefix(_route(), True) is None and forwarded_prefix(_route(), False) == "/apps/demo"


def test_merge_cookies_client_first_stored_fill_in() -> None:
    headers = [(b"accept", b"*/*"), (b"cookie", b"a=1"), (b"cookie", b"b=2")]
    merged = merge_cookies(headers, {"a": "stored", "c": "3"})
    assert merged == [(b"accept", b"*/*"), (b"cookie", b"a=1; b=2; c=3")]
    assert merge_cookies([], {"c": "3"}) == [(b"cookie", b"c=3")]


def test_body_framing_and_request_bytes() -> None:
    assert body_framing(parse_head([(b"transfer-encoding", b"chunked")]), "POST") == [
        (b"transfer-encoding", b"chunked")
    ]
    assert body_framing(parse_head([]), "POST") == []
    assert body_framing(parse_head([(b"content-length", b"0")]), "POST") == [(b"content-length", b"0")]
    assert body_framing(parse_head([(b"content-length", b"0")]), "GET") == []
    assert chunk(b"abc", True) == b"3\r\nabc\r\n" and chunk(b"", False) == b"0\r\n\r\n"
    data = request_bytes("GET", b"/x?y=1", b"h", [(b"accept", b"*/*")], [(b"x-real-ip", b"1.1.1.1")])
    assert data == b"GET /x?y=1 HTTP/1.1\r\nhost: h\r\naccept: */*\r\nx-real-ip: 1.1.1.1\r\n\r\n"


def test_shape_response_drops_hop_and_own_headers_and_applies_cookie_policy() -> None:
    upstream = [
        (b"connection", b"keep-alive"),
        (b"transfer-encoding", b"chunked"),
        (b"content-type", b"text/html"),
        (b"content-length", b"10"),
        (b"x-request-id", b"upstream-id"),
        (b"set-cookie", b"sid=1; Path=/"),
    ]
    route = _route(rewrite_cookie_paths=True)
    shape = shape_response(upstream, route.spec, route.rewriter)
    assert shape.content_type == b"text/html" and shape.length == 10
    assert shape.set_cookies == [(b"set-cookie", b"sid=1; Path=/")]
    assert (b"set-cookie", b"sid=1; Path=/apps/demo/") in shape.headers
    assert not any(n in (b"connection", b"transfer-encoding", b"x-request-id") for n, _ in shape.headers)
    stripped = _route(strip_response_cookies=True)
    shape = shape_response(upstream, stripped.spec, stripped.rewriter)
    assert shape.set_cookies and not any(n == b"set-cookie" for n, _ in shape.headers)


def test_decode_body() -> None:
    assert decode_body(gzip.compress("héllo".encode()), b"gzip", b"text/html; charset=utf-8") == "héllo"
    assert decode_body(b"x", b"br", b"text/html") is None


def test_websocket_handshake_uses_the_same_strip_list() -> None:
    head = parse_head(
        [
            (b"host", b"gw"),
            (b"sec-websocket-key", b"k"),
            (b"origin", b"https://app"),
            (b"user-agent", b"ua"),
            (b"authorization", b"Bearer t"),
            (b"cookie", b"a=1"),
            (b"sec-websocket-extensions", b"permessage-deflate"),
            (b"sec-websocket-protocol", b"chat.v1 ,chat.v2"),
        ]
    )
    headers = handshake_headers(head, ["chat.v1", "chat.v2"])
    assert headers == [
        (b"sec-websocket-key", b"k"),
        (b"origin", b"https://app"),
        (b"user-agent", b"ua"),
        (b"cookie", b"a=1"),
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-protocol", b"chat.v1, chat.v2"),
    ]
    # RFC 6455's example key and answer.
    assert accept_value(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_fresh_request_ids_are_random_hex_and_not_shared_with_a_forked_child() -> None:
    import os

    from nekzus.http.requestid import new_request_id

    ids = [new_request_id() for _ in range(2000)]  # more than one batch
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 16 and valid_request_id(i) and int(i, 16) >= 0 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports the id it makes next
        os.write(write, new_request_id())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64)
    os.close(read)
    os.waitpid(pid, 0)
    assert child != new_request_id()  # the parent's next id (the child dropped the inherited batch)
