"""QR pairing end to end: PNG → code → /pair → /auth/pair → working device token; abuse controls."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import zxingcpp
from PIL import Image

from tests.auth.conftest import (
    PERMANENT_BOOTSTRAP,
    assert_healthy,
    assert_rejected_as_too_large,
    bearer,
    error_code,
    pair,
)
from tests.nekzus_server import NekzusServer

ALPHABET = set("ABCDEFGHJKMNPQRSTUVWXYZ23456789")
PAIR_HEADERS = {"X-Pairing-Request": "true"}


def decode_png(data: bytes) -> dict[str, str]:
    image = Image.open(io.BytesIO(data))
    results = zxingcpp.read_barcodes(image)
    assert results, "no QR code found in the PNG"
    payload: dict[str, str] = json.loads(results[0].text)
    return payload


def redeem(client: httpx.Client, code: str) -> httpx.Response:
    return client.post("/api/v1/pair", json={"code": code}, headers=PAIR_HEADERS)


def test_full_journey_from_png_to_working_device_token(
    client: httpx.Client, admin: dict[str, str], srv: NekzusServer
) -> None:
    r = client.get("/api/v1/auth/qr", params={"format": "png"}, headers=admin)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    payload = decode_png(r.content)
    code = payload["c"]
    assert len(code) == 8 and set(code) <= ALPHABET
    assert payload["u"].startswith("http://")

    # Codes are case-insensitive and trimmed.
    r = redeem(client, f"  {code.lower()} ")
    assert r.status_code == 200, r.text
    config = r.json()
    assert config["baseUrl"] == payload["u"]
    assert config["spkiPins"] == []  # plain HTTP
    assert re.fullmatch(r"nexus_[0-9a-f]{12}", config["nexusId"])
    assert isinstance(config["capabilities"], list)
    assert config["name"].startswith("Nekzus @ ")
    assert config["bootstrapToken"].startswith("temp_")

    # The bootstrap token alone is no credential for the rest of the API.
    r = client.get("/api/v1/devices", headers=bearer(config["bootstrapToken"]))
    assert r.status_code == 403 and error_code(r) == "FORBIDDEN"

    r = client.post(
        "/api/v1/auth/pair",
        json={"device": {"id": "journey-phone", "model": "Pixel 9", "platform": "android", "pushToken": "x"}},
        headers=bearer(config["bootstrapToken"]),
    )
    assert r.status_code == 200, r.text
    paired = r.json()
    assert paired["deviceId"] == "journey-phone"
    assert paired["expiresIn"] == 43200
    assert paired["scopes"] == ["read:catalog", "read:events"]

    r = client.get("/api/v1/devices/journey-phone", headers=bearer(paired["accessToken"]))
    assert r.status_code == 200
    device = r.json()
    assert device["deviceName"] == "Pixel 9" and device["platform"] == "android"
    assert device["lastSeenAt"] is not None and device["createdAt"].endswith("Z")

    # Single use: the code and the temporary bootstrap token are consumed.
    r = redeem(client, code)
    assert r.status_code == 404 and error_code(r) == "INVALID_CODE"
    r = client.post(
        "/api/v1/auth/pair",
        json={"device": {"id": "second", "platform": "ios"}},
        headers=bearer(config["bootstrapToken"]),
    )
    assert r.status_code == 401 and error_code(r) == "INVALID_BOOTSTRAP"
    status = client.get("/api/v1/auth/qr/status", params={"code": code}, headers=admin).json()
    assert status["redeemed"] is True and status["valid"] is False


def test_qr_json_shape_and_hash(client: httpx.Client, admin: dict[str, str]) -> None:
    r = client.get("/api/v1/auth/qr", headers=admin)
    assert r.status_code == 200
    body = r.json()
    assert body["code"] == body["qr"]["c"]
    assert set(body["qr"]) >= {"u", "c"}
    status = client.get("/api/v1/auth/qr/status", params={"code": body["code"]}, headers=admin).json()
    assert status["valid"] is True and 290 <= status["ttl"] <= 300
    # Single use: a second redemption of the same code gets nothing.
    first = redeem(client, body["code"]).json()
    second = redeem(client, body["code"])
    assert second.status_code == 404 and error_code(second) == "INVALID_CODE"
    expected = hashlib.sha256(
        (body["code"] + ":" + first["baseUrl"] + first["nexusId"] + first["bootstrapToken"]).encode()
    ).hexdigest()[:32]
    assert body["qr"]["v"] == expected


def test_consumed_code_locks_after_five_failures(client: httpx.Client, admin: dict[str, str]) -> None:
    code = client.get("/api/v1/auth/qr", headers=admin).json()["code"]
    config = redeem(client, code).json()
    pair(client, "locker", token=config["bootstrapToken"])
    for _ in range(5):
        assert redeem(client, code).status_code == 404
    status = client.get("/api/v1/auth/qr/status", params={"code": code}, headers=admin).json()
    assert status["locked"] is True and status["valid"] is False


def test_bootstrap_token_locks_after_three_failures(client: httpx.Client) -> None:
    body = {"device": {"id": "x", "platform": "ios"}}
    for _ in range(3):
        r = client.post("/api/v1/auth/pair", json=body, headers=bearer("not-a-real-bootstrap-token"))
        assert r.status_code == 401 and error_code(r) == "INVALID_BOOTSTRAP"
    r = client.post("/api/v1/auth/pair", json=body, headers=bearer("not-a-real-bootstrap-token"))
    assert r.status_code == 429 and error_code(r) == "RATE_LIMITED"
    r = client.post("/api/v1/auth/pair", json=body)
    assert r.status_code == 401


def test_redeem_input_errors(client: httpx.Client) -> None:
    r = client.post("/api/v1/pair", json={"code": "ABCDEFGH"})
    assert r.status_code == 400 and error_code(r) == "MISSING_HEADER"
    r = client.post("/api/v1/pair", json={"code": "  "}, headers=PAIR_HEADERS)
    assert r.status_code == 400 and error_code(r) == "INVALID_CODE"
    r = client.post("/api/v1/pair", content=b"{nope", headers=PAIR_HEADERS)
    assert r.status_code == 400 and error_code(r) == "INVALID_JSON"
    r = client.post("/api/v1/pair", content=b"", headers=PAIR_HEADERS)
    assert r.status_code == 400
    r = client.post("/api/v1/pair", json=["ABCDEFGH"], headers=PAIR_HEADERS)
    assert r.status_code == 400
    r = client.post("/api/v1/pair", json={"code": "Z" * 5000}, headers=PAIR_HEADERS)
    assert r.status_code == 404
    r = client.post("/api/v1/pair", content=b'{"code":"' + b"A" * 20000 + b'"}', headers=PAIR_HEADERS)
    assert r.status_code == 413 and error_code(r) == "PAYLOAD_TOO_LARGE"
    assert client.get("/api/v1/pair").status_code == 405
    assert_healthy(client)


@pytest.mark.parametrize(
    ("device", "status"),
    [
        ({"id": "p1", "platform": "symbian"}, 400),
        ({"id": "p1"}, 400),
        ({"id": "a/b", "platform": "ios"}, 400),
        ({"id": "..evil", "platform": "ios"}, 400),
        ({"id": "x" * 101, "platform": "ios"}, 400),
        ({"id": "p1", "platform": "ios", "model": "m" * 256}, 400),
        ({"id": "p1", "platform": "ios", "pushToken": "t" * 513}, 400),
        ({"id": 12, "platform": "ios"}, 400),
    ],
)
def test_pair_body_validation(client: httpx.Client, device: dict[str, object], status: int) -> None:
    r = client.post("/api/v1/auth/pair", json={"device": device}, headers=bearer(PERMANENT_BOOTSTRAP))
    assert r.status_code == status and error_code(r) == "VALIDATION_ERROR"


def test_pair_malformed_and_oversized_bodies(client: httpx.Client) -> None:
    auth = bearer(PERMANENT_BOOTSTRAP)
    r = client.post("/api/v1/auth/pair", content=b"", headers=auth)
    assert r.status_code == 400 and error_code(r) == "INVALID_REQUEST"
    r = client.post("/api/v1/auth/pair", content=b'{"device":', headers=auth)
    assert r.status_code == 400 and error_code(r) == "INVALID_JSON"
    r = client.post("/api/v1/auth/pair", content=b"x" * (11 * 1024), headers=auth)
    assert r.status_code == 413
    assert_rejected_as_too_large(client, "/api/v1/auth/pair", auth)
    assert_healthy(client)


@pytest.mark.parametrize("platform", ["ios", "android", "web", "desktop", "linux", "macos", "WINDOWS"])
def test_every_supported_platform_pairs(client: httpx.Client, platform: str) -> None:
    result = pair(client, f"plat-{platform.lower()}", platform=platform)
    r = client.get(f"/api/v1/devices/plat-{platform.lower()}", headers=bearer(result["accessToken"]))
    assert r.status_code == 200 and r.json()["platform"] == platform.lower()


def test_missing_device_id_is_generated(client: httpx.Client) -> None:
    result = pair(client, "", platform="web")
    assert result["deviceId"].startswith("dev-")


def test_qr_needs_admin(client: httpx.Client) -> None:
    r = client.get("/api/v1/auth/qr")
    assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED"
    device = pair(client, "qr-asker")
    r = client.get("/api/v1/auth/qr", headers=bearer(device["accessToken"]))
    assert r.status_code == 403 and error_code(r) == "FORBIDDEN"
    assert client.get("/pair").status_code == 401


def test_pair_page_shows_a_scannable_code(client: httpx.Client, admin: dict[str, str]) -> None:
    r = client.get("/pair", headers=admin)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    match = re.search(r'src="data:image/png;base64,([^"]+)"', r.text)
    assert match
    payload = decode_png(base64.b64decode(match.group(1)))
    assert f'id="code">{payload["c"]}<' in r.text
    assert redeem(client, payload["c"]).status_code == 200


def test_global_failure_cap(make_server: Callable[..., NekzusServer]) -> None:
    srv = make_server()
    with srv.client() as c:
        code = c.get("/api/v1/auth/qr").json()["code"]
        wrong = "ABCDEFGH" if code != "ABCDEFGH" else "HGFEDCBA"
        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda _: redeem(c, wrong).status_code, range(100)))
        assert codes == [404] * 100
        r = redeem(c, code)
        assert r.status_code == 429 and error_code(r) == "RATE_LIMITED"
        assert_healthy(c)


def test_qr_cap_per_hour(make_server: Callable[..., NekzusServer]) -> None:
    srv = make_server()
    with srv.client() as c:
        codes = set()
        for _ in range(10):
            r = c.get("/api/v1/auth/qr")
            assert r.status_code == 200
            codes.add(r.json()["code"])
        assert len(codes) == 10
        r = c.get("/api/v1/auth/qr")
        assert r.status_code == 429 and error_code(r) == "RATE_LIMITED"


def test_spki_pins_over_tls(make_server: Callable[..., NekzusServer]) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    srv = make_server(tls=True)
    with srv.client() as c:
        code = c.get("/api/v1/auth/qr").json()["code"]
        config = redeem(c, code).json()
    cert = x509.load_pem_x509_certificate((srv.data_dir / "tls" / "server.crt").read_bytes())
    der = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    expected = "sha256/" + base64.b64encode(hashlib.sha256(der).digest()).decode()
    assert config["spkiPins"] == [expected]
    assert config["baseUrl"].startswith("https://")
