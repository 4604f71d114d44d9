"""Property tests (hypothesis) for the proxy's own parsers: route matching, path refusal and the
upstream path computation. Each property states the rule in the simplest terms and checks the fast
implementation against it on generated input."""

from __future__ import annotations

from urllib.parse import quote, unquote

from hypothesis import given, settings
from hypothesis import strategies as st

from nekzus.catalog.spec import RouteSpec
from nekzus.proxy.phases import bad_path, header_key, parse_head, strip_list, upstream_path
from nekzus.proxy.rewrite import Rewriter
from nekzus.proxy.routes import CompiledRoute, RouteTable
from nekzus.proxy.upstream import UpstreamPool

# Few distinct segments, so generated routes and paths overlap often.
SEGMENT = st.sampled_from(["apps", "a", "b", "ab", "x", "demo", "~u", "é"])
PATH_CHARS = st.characters(exclude_categories=["Cs"])
FAST = settings(max_examples=200, deadline=None)


@st.composite
def path_bases(draw: st.DrawFn) -> str:
    segments = draw(st.lists(SEGMENT, min_size=1, max_size=3))
    return "/apps/" + "/".join(segments) + ("/" if draw(st.booleans()) else "")


@st.composite
def request_paths(draw: st.DrawFn) -> str:
    segments = draw(st.lists(st.one_of(SEGMENT, st.just("")), min_size=0, max_size=5))
    return "/" + "/".join(segments) + ("/" if draw(st.booleans()) else "")


@st.composite
def proxied_paths(draw: st.DrawFn) -> str:
    """Mostly below /apps/ (where routes live), sometimes anywhere."""
    path = draw(request_paths())
    return path if draw(st.integers(0, 4)) == 0 else "/apps" + path


def compiled(path_base: str, *, to: str = "http://127.0.0.1:9000", strip: bool = True) -> CompiledRoute:
    spec = RouteSpec.model_validate(
        {
            "route_id": "r" + str(abs(hash(path_base))),
            "app_id": "a",
            "path_base": path_base,
            "to": to,
            "strip_prefix": strip,
        }
    )
    prefix = spec.path_base.rstrip("/")
    base = to.split("://", 1)[1].partition("/")[2]
    return CompiledRoute(
        spec=spec,
        pool=UpstreamPool("127.0.0.1", 9000, None, None),
        pool_key=("http", "127.0.0.1", 9000, True),
        prefix=prefix,
        prefix_raw=quote(prefix).encode("latin-1"),
        base_path=(b"/" + base.rstrip("/").encode()) if base else b"",
        scopes=(),
        loop=False,
        rewriter=Rewriter(prefix, ()) if strip else None,
        upstream_host=b"127.0.0.1:9000",
    )


def covers(path_base: str, path: str) -> bool:
    """The rule: a route covers its own path and everything below it, on a segment boundary."""
    if path == path_base:
        return True
    if path_base.endswith("/"):
        return path.startswith(path_base)
    return path.startswith(path_base + "/")


@FAST
@given(st.lists(path_bases(), min_size=1, max_size=6, unique=True), proxied_paths())
def test_route_match_is_the_longest_covering_path_base(bases: list[str], path: str) -> None:
    table = RouteTable([compiled(b, strip=False) for b in bases])
    hit = table.match(path)
    covering = [b for b in bases if covers(b, path)]
    if not covering:
        assert hit is None
        return
    assert hit is not None
    assert covers(hit.spec.path_base, path)
    # No other route covering the path is more specific (longer once a trailing slash is ignored).
    assert len(hit.spec.path_base.rstrip("/")) == max(len(b.rstrip("/")) for b in covering)


@FAST
@given(st.text(PATH_CHARS, max_size=40))
def test_bad_path_refuses_exactly_dot_segments_and_control_characters(tail: str) -> None:
    path = "/" + tail
    expected = any(c in path for c in "\x00\r\n\\") or any(s in (".", "..") for s in path.split("/"))
    assert bad_path(path) is expected


@FAST
@given(path_bases(), st.text(PATH_CHARS, max_size=30), st.booleans(), st.booleans())
def test_upstream_path_strips_the_prefix_and_keeps_the_rest(
    base: str, rest: str, raw_given: bool, with_target_path: bool
) -> None:
    to = "http://127.0.0.1:9000" + ("/base/v1" if with_target_path else "")
    route = compiled(base, to=to)
    tail = "/" + rest if rest else ""
    path = route.prefix + tail
    raw = quote(path).encode("latin-1") if raw_given else None
    out = upstream_path(route, path, raw, False)
    target = b"/base/v1" if with_target_path else b""
    assert out == target + (quote(tail).encode("latin-1") if tail else b"/")
    # What goes into the upstream request line is always an absolute path without spaces or controls,
    # and decodes back to the client's path below the prefix.
    assert out.startswith(b"/")
    assert not any(ch in out for ch in b" \r\n\x00\t")
    assert unquote(out.decode("latin-1")) == (target.decode() + (tail or "/"))


@FAST
@given(path_bases(), st.text(PATH_CHARS, min_size=1, max_size=30), st.booleans())
def test_upstream_path_without_strip_or_by_subdomain_keeps_the_whole_path(
    base: str, rest: str, subdomain: bool
) -> None:
    route = compiled(base.rstrip("/") + "/", strip=subdomain)  # by subdomain the prefix stays
    path = "/" + rest
    out = upstream_path(route, path, None, subdomain)
    assert out == quote(path).encode("latin-1")
    assert not any(ch in out for ch in b" \r\n\x00\t")


HEADER_NAME = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz-_0123456789"), min_size=1, max_size=20)


@FAST
@given(
    st.lists(st.tuples(HEADER_NAME, st.binary(max_size=8)), max_size=12),
    st.lists(HEADER_NAME, max_size=3),
)
def test_no_spelling_of_a_stripped_header_is_forwarded(
    headers: list[tuple[str, bytes]], configured: list[str]
) -> None:
    strip = strip_list(configured)
    head = parse_head([(n.encode(), v) for n, v in headers], strip)
    for name, _value in head.forward:
        assert header_key(name) not in strip
