"""Certificates through the real server: local CA, SNI, in-place TLS upgrade, hot swap, deletion rules,
uploaded pairs, health and pairing pins.

The module's server starts on plain HTTP; the tests run in order and build on each other's state.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.auth.conftest import PERMANENT_BOOTSTRAP, error_code
from tests.certs.conftest import (
    admin_headers,
    issuer_cn,
    make_pair,
    peer_certificate,
    pem,
    pin,
    sans_of,
    use_https,
)
from tests.nekzus_server import NekzusServer

DOMAINS = ["localhost", "127.0.0.1", "nekzus.local"]


@pytest.fixture(scope="module")
def srv(module_servers: Callable[..., NekzusServer]) -> NekzusServer:
    return module_servers({"bootstrap": {"tokens": [PERMANENT_BOOTSTRAP]}})


@pytest.fixture(scope="module")
def admin(srv: NekzusServer) -> dict[str, str]:
    return admin_headers(srv)


@pytest.fixture(scope="module")
def cafile(srv: NekzusServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    with srv.client() as c:
        r = c.get("/api/v1/certificates/ca.pem")
    assert r.status_code == 200 and b"BEGIN CERTIFICATE" in r.content
    path = tmp_path_factory.mktemp("ca") / "ca.crt"
    path.write_bytes(r.content)
    return str(path)


def test_ca_created_once_with_private_key(srv: NekzusServer, cafile: str) -> None:
    key = srv.data_dir / "ca" / "ca.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert Path(cafile).read_bytes() == (srv.data_dir / "ca" / "ca.crt").read_bytes()


def test_admin_credential_required_even_from_trusted_network(
    srv: NekzusServer, admin: dict[str, str]
) -> None:
    with srv.client() as c:
        r = c.get("/api/v1/certificates")
        assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED"
        paired = c.post(
            "/api/v1/auth/pair",
            json={"device": {"id": "phone-1", "platform": "ios"}},
            headers={"Authorization": f"Bearer {PERMANENT_BOOTSTRAP}"},
        )
        assert paired.status_code == 200, paired.text
        device = {"Authorization": f"Bearer {paired.json()['accessToken']}"}
        r = c.get("/api/v1/certificates", headers=device)
        assert r.status_code == 403 and error_code(r) == "FORBIDDEN"
        r = c.get("/api/v1/certificates", headers=admin)
        assert r.status_code == 200 and r.json() == {"certificates": [], "count": 0}


@pytest.mark.parametrize(
    ("domains", "code"),
    [
        (["example.com"], "INVALID_DOMAIN"),
        (["localhost", "nekzus.io"], "INVALID_DOMAIN"),
        (["8.8.8.8"], "INVALID_DOMAIN"),
        (["bad_name!.local"], "INVALID_DOMAIN"),
        (["../etc/passwd"], "INVALID_DOMAIN"),
        (["*.com"], "INVALID_DOMAIN"),
        ([], "INVALID_DOMAINS"),
    ],
)
def test_public_and_malformed_domains_refused(
    srv: NekzusServer, admin: dict[str, str], domains: list[str], code: str
) -> None:
    with srv.client() as c:
        r = c.post("/api/v1/certificates/generate", json={"domains": domains}, headers=admin)
        assert r.status_code == 400 and error_code(r) == code
        logs = c.get("/api/v1/audit-logs", params={"action": "certificate.generate"}, headers=admin).json()
        assert any(not entry["success"] for entry in logs["logs"]), logs


def test_suggest(srv: NekzusServer, admin: dict[str, str]) -> None:
    with srv.client() as c:
        body = c.get("/api/v1/certificates/suggest", headers=admin).json()
    assert body["suggestions"][0] == "localhost" and body["count"] == len(body["suggestions"])


def test_first_certificate_starts_tls_in_place(srv: NekzusServer, admin: dict[str, str], cafile: str) -> None:
    with srv.client() as c:
        r = c.post("/api/v1/certificates/generate", json={"domains": DOMAINS}, headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["tls_upgraded"] is True
    cert = body["certificate"]
    assert cert["domain"] == "localhost" and sorted(cert["sans"]) == sorted(DOMAINS)
    assert cert["issuer"] == "Nekzus Self-Signed CA" and cert["fingerprint"].startswith("SHA256:")
    # Plain HTTP is gone on that port; TLS answers, verified against the downloadable CA.
    with pytest.raises(httpx.HTTPError), httpx.Client(timeout=3) as plain:
        plain.get(srv.url + "/api/v1/healthz")
    use_https(srv)
    with httpx.Client(verify=ssl.create_default_context(cafile=cafile), timeout=5) as verified:
        assert verified.get(f"https://localhost:{srv.port}/api/v1/healthz").text == "ok"
    served = peer_certificate(srv.port, "nekzus.local", cafile=cafile)
    assert sorted(sans_of(served)) == sorted(DOMAINS)
    assert issuer_cn(served) == "Nekzus Self-Signed CA"
    assert pin(served) == cert["spki"]
    # A client connecting by IP sends no SNI: it gets the certificate for the base URL's host.
    assert pin(peer_certificate(srv.port, None)) == cert["spki"]


def test_pairing_pins_match_the_served_certificate(srv: NekzusServer, admin: dict[str, str]) -> None:
    with srv.client() as c:
        code = c.get("/api/v1/auth/qr", headers=admin).json()["code"]
        config = c.post("/api/v1/pair", json={"code": code}, headers={"X-Pairing-Request": "true"}).json()
    assert config["baseUrl"].startswith("https://")
    assert config["spkiPins"] == [pin(peer_certificate(srv.port, None))]


def test_sni_selects_the_matching_certificate(srv: NekzusServer, admin: dict[str, str], cafile: str) -> None:
    with srv.client() as c:
        r = c.post(
            "/api/v1/certificates/generate", json={"domains": ["media.lan", "*.media.lan"]}, headers=admin
        )
        assert r.status_code == 200 and r.json()["tls_upgraded"] is False
        listed = c.get("/api/v1/certificates", headers=admin).json()
    assert [x["domain"] for x in listed["certificates"]] == ["localhost", "media.lan"]
    assert all(300 < x["expires_in_days"] <= 366 for x in listed["certificates"])
    media = peer_certificate(srv.port, "media.lan", cafile=cafile)
    assert "media.lan" in sans_of(media)
    assert "media.lan" in sans_of(peer_certificate(srv.port, "tv.media.lan", cafile=cafile))
    assert "localhost" in sans_of(peer_certificate(srv.port, "localhost", cafile=cafile))


def test_get_by_domain(srv: NekzusServer, admin: dict[str, str]) -> None:
    with srv.client() as c:
        r = c.get("/api/v1/certificates/media.lan", headers=admin)
        assert r.status_code == 200 and r.json()["certificate"]["domain"] == "media.lan"
        r = c.get("/api/v1/certificates/nothing.local", headers=admin)
        assert r.status_code == 404 and error_code(r) == "CERT_NOT_FOUND"


def test_renew_swaps_while_a_client_keeps_its_connection(srv: NekzusServer, admin: dict[str, str]) -> None:
    context = ssl._create_unverified_context()
    conn = http.client.HTTPSConnection("127.0.0.1", srv.port, timeout=5, context=context)
    try:
        conn.request("GET", "/api/v1/healthz")
        first = conn.getresponse()
        assert first.status == 200 and first.read() == b"ok"
        sock = conn.sock
        assert sock is not None
        old_der = sock.getpeercert(binary_form=True)
        with srv.client() as c:
            r = c.post("/api/v1/certificates/renew", json={"domain": "localhost"}, headers=admin)
        assert r.status_code == 200, r.text
        rotation = r.json()["rotation"]
        assert rotation["spki_changed"] is True and rotation["old_spki"] != rotation["new_spki"]
        assert rotation["devices_notified"] == -1
        # Same connection, same socket, still answering after the swap.
        conn.request("GET", "/api/v1/healthz")
        again = conn.getresponse()
        assert again.status == 200 and again.read() == b"ok"
        assert conn.sock is sock and sock.getpeercert(binary_form=True) == old_der
    finally:
        conn.close()
    assert pin(peer_certificate(srv.port, None)) == rotation["new_spki"]
    with srv.client() as c:
        r = c.post("/api/v1/certificates/renew", json={"domain": "nope.local"}, headers=admin)
        assert r.status_code == 400 and error_code(r) == "CERT_RENEWAL_FAILED"


def test_delete_refused_for_the_served_certificate(srv: NekzusServer, admin: dict[str, str]) -> None:
    with srv.client() as c:
        r = c.delete("/api/v1/certificates/localhost", headers=admin)
        assert r.status_code == 409 and error_code(r) == "CERT_IN_USE"
        r = c.delete("/api/v1/certificates/media.lan", headers=admin)
        assert r.status_code == 200 and r.json()["success"] is True
        assert c.get("/api/v1/certificates/media.lan", headers=admin).status_code == 404


def test_replace_validates_uploaded_pairs(srv: NekzusServer, admin: dict[str, str]) -> None:
    good, key = make_pair("nas.local")
    _, other_key = make_pair("nas.local")
    expired, expired_key = make_pair("nas.local", days=-1)
    ca, ca_key = make_pair("Test CA")
    leaf, leaf_key = make_pair("nas.local", issuer_key=ca_key, issuer_name=ca.subject)
    cases = [
        ({"certificate": "garbage", "privateKey": pem(key)}, "INVALID_CERTIFICATE"),
        ({"certificate": pem(good), "privateKey": "garbage"}, "INVALID_KEY"),
        ({"certificate": pem(good), "privateKey": pem(other_key)}, "CERT_REPLACE_FAILED"),
        ({"certificate": pem(expired), "privateKey": pem(expired_key)}, "CERT_REPLACE_FAILED"),
        ({"certificate": pem(ca) + pem(leaf), "privateKey": pem(leaf_key)}, "CERT_REPLACE_FAILED"),
        ({"certificate": pem(good), "privateKey": pem(key), "domain": "nas.com"}, "INVALID_DOMAIN"),
    ]
    with srv.client() as c:
        for body, code in cases:
            r = c.post("/api/v1/certificates/replace", json={"domain": "nas.local", **body}, headers=admin)
            assert r.status_code == 400 and error_code(r) == code, (code, r.text)
        r = c.post(
            "/api/v1/certificates/replace",
            json={"domain": "nas.local", "certificate": pem(leaf) + pem(ca), "privateKey": pem(leaf_key)},
            headers=admin,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["rotation"]["was_new_import"] is True and body["certificate"]["issuer"] == "Test CA"
    assert pin(peer_certificate(srv.port, "nas.local")) == pin(leaf)


def test_health_component_degrades_when_a_certificate_expires_soon(
    srv: NekzusServer, admin: dict[str, str]
) -> None:
    def component() -> dict[str, object]:
        with srv.client() as c:
            body = c.get("/healthz", headers={"Accept": "application/json"}).json()
        result: dict[str, object] = body["components"]["certificates"]
        return result

    assert component()["status"] == "healthy"
    soon, key = make_pair("soon.local", days=10)
    with srv.client() as c:
        r = c.post(
            "/api/v1/certificates/replace",
            json={"domain": "soon.local", "certificate": pem(soon), "privateKey": pem(key)},
            headers=admin,
        )
        assert r.status_code == 200
    # Component results are cached for a few seconds: poll, bounded.
    deadline = time.monotonic() + 10
    while component()["status"] != "degraded" and time.monotonic() < deadline:
        time.sleep(0.25)
    assert component()["status"] == "degraded"
    with srv.client() as c:
        assert c.delete("/api/v1/certificates/soon.local", headers=admin).status_code == 200


def test_restart_serves_tls_from_stored_certificates(srv: NekzusServer, admin: dict[str, str]) -> None:
    srv.url = srv.url.replace("https://", "http://", 1)
    srv.stop()
    srv.start(wait=False)
    use_https(srv)
    srv.wait_ready(60)
    served = peer_certificate(srv.port, "localhost")
    with srv.client() as c:
        stored = c.get("/api/v1/certificates/localhost", headers=admin).json()["certificate"]
    assert pin(served) == stored["spki"]
    assert json.dumps(stored)  # still listed after the restart
