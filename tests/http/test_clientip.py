"""Who the client is behind trusted proxies: every X-Forwarded-For line counts, walked from the right."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from nekzus.http.clientip import in_networks, parse_ip, parse_networks, resolve_client_ip

PROXIES = parse_networks(["10.0.0.0/8"])


def scope(peer: str, *headers: tuple[str, str]) -> dict[str, Any]:
    return {"client": (peer, 1234), "headers": [(k.encode(), v.encode()) for k, v in headers]}


def test_lines_are_combined_so_an_appended_line_wins() -> None:
    forged = scope("10.0.0.1", ("x-forwarded-for", "127.0.0.1"), ("x-forwarded-for", "203.0.113.9"))
    assert resolve_client_ip(forged, PROXIES) == "203.0.113.9"


def test_walk_skips_trusted_hops_from_the_right() -> None:
    chain = scope("10.0.0.1", ("x-forwarded-for", "198.51.100.7, 203.0.113.9, 10.1.1.1"))
    assert resolve_client_ip(chain, PROXIES) == "203.0.113.9"


def test_unparsable_hop_never_falls_back_to_real_ip_or_the_proxy() -> None:
    broken = scope("10.0.0.1", ("x-forwarded-for", "nonsense, 10.2.2.2"), ("x-real-ip", "127.0.0.1"))
    assert resolve_client_ip(broken, PROXIES) == "unknown"


def test_headers_from_untrusted_peers_are_ignored() -> None:
    direct = scope("203.0.113.9", ("x-forwarded-for", "127.0.0.1"), ("x-real-ip", "127.0.0.1"))
    assert resolve_client_ip(direct, PROXIES) == "203.0.113.9"


def test_real_ip_only_without_a_chain() -> None:
    assert resolve_client_ip(scope("10.0.0.1", ("x-real-ip", "192.0.2.5")), PROXIES) == "192.0.2.5"


ips = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)
hops = st.lists(st.one_of(ips, st.text(max_size=12)), max_size=6)


@given(lines=st.lists(hops, max_size=3), untrusted=ips)
def test_a_client_can_never_choose_its_address(lines: list[list[str]], untrusted: str) -> None:
    """Whatever the client writes, the untrusted address a proxy appends last decides the result."""
    real = parse_ip(untrusted)
    if real is None or in_networks(real, PROXIES):
        return
    headers = [("x-forwarded-for", ", ".join(line)) for line in lines]
    headers.append(("x-forwarded-for", untrusted))
    assert resolve_client_ip(scope("10.0.0.1", *headers), PROXIES) == str(real)
