"""Property tests for Host header parsing: what passes the protocol check can never name another target,
and only the host names Nekzus serves are served, whatever port, case or trailing dot is written."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nekzus.http.guard import ServedHosts, host_name
from nekzus.http.protocol import host_problem

HOSTS = ServedHosts({"localhost", "192.0.2.10", "nekzus.example"}, ["home.lab"])

header_bytes = st.binary(max_size=40)
labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
ports = st.one_of(st.just(""), st.integers(0, 99999).map(lambda p: f":{p}"))


@given(values=st.lists(header_bytes, max_size=3), version=st.sampled_from(["1.0", "1.1"]))
def test_host_problem_never_crashes_and_accepts_only_clean_targets(values: list[bytes], version: str) -> None:
    headers = [(b"host", v) for v in values]
    problem = host_problem(headers, version)
    if len(values) > 1:
        assert problem == "Duplicate Host header"
    elif problem is None and values:
        value = values[0]
        assert not any(c in value for c in b" \t\r\n/@\\?#\x00"), value
        # what the guard then reads out of it is a plain host name: no path, user info or whitespace
        name = host_name(value.decode("latin-1"))
        assert not any(c in name for c in " \t\r\n/@\\?#")


@given(value=st.text(st.characters(codec="ascii", exclude_categories=["Cc", "Zs"]), max_size=40))
def test_host_name_never_crashes_and_is_canonical(value: str) -> None:
    name = host_name(value)
    assert name == name.lower() and not name.endswith(".")
    assert host_name(name) == name or name.startswith("[") or ":" in name


@given(name=st.sampled_from(["localhost", "LocalHost", "192.0.2.10", "nekzus.example"]), port=ports)
def test_served_names_are_served_with_any_port_case_or_trailing_dot(name: str, port: str) -> None:
    assert HOSTS.serves(f"{name}{port}")
    assert HOSTS.serves(f"{name}.{port}")


@given(sub=st.lists(labels, min_size=1, max_size=3), port=ports)
def test_subdomains_of_the_base_domain_are_served(sub: list[str], port: str) -> None:
    assert HOSTS.serves(".".join([*sub, "home", "lab"]) + port)


@given(label=labels, port=ports)
def test_look_alike_names_are_not_served(label: str, port: str) -> None:
    for name in (
        f"{label}home.lab",
        f"home.lab.{label}",
        f"localhost.{label}",
        f"{label}-localhost",
        f"nekzus.example.{label}",
        f"{label}@localhost",
        f"localhost@{label}",
    ):
        assert not HOSTS.serves(name + port), name


@given(ip=st.ip_addresses(v=4), port=ports)
def test_only_loopback_and_listed_addresses_are_served(ip: object, port: str) -> None:
    text = str(ip)
    assert HOSTS.serves(text + port) == (text.startswith("127.") or text == "192.0.2.10")


@given(ip=st.ip_addresses(v=6))
def test_bracketed_ipv6_served_only_for_loopback(ip: object) -> None:
    assert HOSTS.serves(f"[{ip}]:8443") == (str(ip) == "::1")
