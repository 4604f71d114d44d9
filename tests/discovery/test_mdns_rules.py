"""mDNS record handling as pure functions: lenient TXT decoding and the proposal built from a record."""

from __future__ import annotations

from nekzus.discovery.mdns import build_proposal, decode_txt


def test_decode_txt_survives_garbage() -> None:
    txt = decode_txt({b"\xff\xfe": b"\x00x", b"APP_ID": b"grafana", b"empty": None, b"k" * 100: b"v", 5: 7})
    assert txt["app_id"] == "grafana" and txt["empty"] == ""
    assert all(len(k) <= 64 for k in txt)
    assert decode_txt(None) == {} and decode_txt([b"x"]) == {}
    assert len(decode_txt({b"big": b"v" * 10_000})["big"]) == 512


def test_proposal_from_record() -> None:
    p = build_proposal(
        "_http._tcp.local.",
        "Home Assistant._http._tcp.local.",
        ["fe80::1", "192.168.1.5"],
        8123,
        "ha.local.",
        {"app_id": "ha", "tags": "home, iot"},
    )
    assert p is not None
    assert p.id == "proposal_mdns_http_Home_Assistant_8123"
    assert p.host == "192.168.1.5" and p.app.tags == ("home", "iot")
    v6 = build_proposal("_https._tcp.local.", "Printer._https._tcp.local.", ["fe80::1"], 443, "", {})
    assert v6 is not None and v6.route.target == "https://[fe80::1]:443"
    assert build_proposal("_ssh._tcp.local.", "nas._ssh._tcp.local.", ["10.0.0.2"], 22, "", {}) is None
    assert (
        build_proposal(
            "_http._tcp.local.", "x._http._tcp.local.", ["10.0.0.2"], 80, "", {"nekzus_enable": "no"}
        )
        is None
    )
    assert build_proposal("_http._tcp.local.", "x._http._tcp.local.", [], 80, "", {}) is None
