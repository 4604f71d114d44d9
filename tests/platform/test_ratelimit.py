"""Rate limiting: headers count down, 429 with Retry-After after the burst, categories are separate."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from nekzus.config.model import RateLimitsConfig
from nekzus.http.ratelimit import Bucket, RateLimiter
from tests.nekzus_server import NekzusServer


def test_headers_count_down_then_429(make_server: Callable[..., NekzusServer]) -> None:
    srv: NekzusServer = make_server(
        {"rate_limits": {"general": {"rate": "1/min", "burst": 3}}}, rate_limits=True
    )
    with srv.client() as c:
        remaining = []
        for _ in range(3):
            response = c.get("/api/v1/nothing-here")
            assert response.status_code == 404
            assert response.headers["x-ratelimit-limit"] == "3"
            assert response.headers["ratelimit-limit"] == "3"
            assert int(response.headers["x-ratelimit-reset"]) >= int(time.time())
            remaining.append(int(response.headers["x-ratelimit-remaining"]))
        assert remaining == [2, 1, 0]
        refused = c.get("/api/v1/nothing-here")
        assert refused.status_code == 429
        message = "Rate limit exceeded, please slow down"
        assert refused.json() == {
            "error": {"code": "RATE_LIMIT_EXCEEDED", "message": message},
            "message": message,
            "code": "RATE_LIMIT_EXCEEDED",
        }
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["x-ratelimit-remaining"] == "0"
        assert refused.headers["x-api-version"] == "v1"
        # Another category keeps its own bucket.
        other = c.get("/api/v1/healthz")
        assert other.status_code == 200
        assert other.headers["x-ratelimit-limit"] == "50"


def test_rate_limits_can_be_disabled(make_server: Callable[..., NekzusServer]) -> None:
    srv: NekzusServer = make_server(
        {"rate_limits": {"enabled": False, "health": {"rate": "1/min", "burst": 1}}}, rate_limits=True
    )
    with srv.client() as c:
        for _ in range(5):
            response = c.get("/livez")
            assert response.status_code == 200
            assert "x-ratelimit-limit" not in response.headers


def test_ref_defaults_per_category(make_server: Callable[..., NekzusServer]) -> None:
    srv: NekzusServer = make_server(rate_limits=True)
    with srv.client() as c:
        assert c.get("/livez").headers["x-ratelimit-limit"] == "50"
        assert c.get("/api/v1/whatever").headers["x-ratelimit-limit"] == "30"
        assert c.get("/api/v1/devices-nope").headers["x-ratelimit-limit"] == "30"
        assert c.get("/api/v1/containers/x").headers["x-ratelimit-limit"] == "20"
        assert c.get("/api/v1/auth/whatever").headers["x-ratelimit-limit"] == "10"


def test_bucket_refills_over_time() -> None:
    now = [1000.0]
    bucket = Bucket(rate=2.0, burst=2, clock=lambda: now[0])
    assert bucket.take("k").allowed and bucket.take("k").allowed
    denied = bucket.take("k")
    assert not denied.allowed and denied.retry_after == 1
    now[0] += 0.5
    assert bucket.take("k").allowed
    assert bucket.take("other").allowed


def test_classification_matches_the_reference_table() -> None:
    limiter = RateLimiter(RateLimitsConfig())
    cases = {
        "/healthz": "health",
        "/api/v1/services/grafana/health": "health",
        "/api/v1/auth/qr": "qr",
        "/pair": "qr",
        "/api/v1/auth/login": "auth",
        "/api/v1/pair": "auth",
        "/api/v1/ws": "websocket",
        "/api/v1/devices/x": "device",
        "/api/v1/audit-logs": "device",
        "/api/v1/containers": "container",
        "/api/v1/system/resources": "container",
        "/api/v1/stats/quick": "container",
        "/api/v1/apps": "general",
        "/metrics": "metrics",
        "/apps/grafana/": "proxy",
        "/": None,
    }
    for path, category in cases.items():
        assert limiter.classify("GET", path) == category, path


def test_client_ip_keys_ignore_spoofed_forwarding_headers(make_server: Callable[..., NekzusServer]) -> None:
    srv: NekzusServer = make_server(
        {"rate_limits": {"general": {"rate": "1/min", "burst": 2}}}, rate_limits=True
    )
    spoofed = [{"X-Forwarded-For": f"10.0.0.{n}", "X-Real-IP": f"10.8.8.{n}"} for n in range(3)]
    with httpx.Client(base_url=srv.url) as c:
        assert [c.get("/api/v1/x", headers=h).status_code for h in spoofed] == [404, 404, 429]


def test_forwarded_client_counts_only_behind_a_trusted_proxy(
    make_server: Callable[..., NekzusServer],
) -> None:
    srv: NekzusServer = make_server(
        {
            "server": {"trusted_proxies": ["127.0.0.1/32"]},
            "rate_limits": {"general": {"rate": "1/min", "burst": 1}},
        },
        rate_limits=True,
    )
    with httpx.Client(base_url=srv.url) as c:
        # Each forwarded client has its own bucket when the peer (loopback) is a trusted proxy.
        statuses = [
            c.get("/api/v1/x", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code for n in range(3)
        ]
        assert statuses == [404, 404, 404]
        assert c.get("/api/v1/x", headers={"X-Forwarded-For": "203.0.113.1"}).status_code == 429
