"""Credential expiry on the reverse proxy, judged against a manual clock: an API key and a device token
reach the upstream until their expiry and are refused (401) from that instant, with no real-second waits.
The real app runs in-process under uvicorn; requests and the upstream go over loopback sockets."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import jwt
import pytest

from tests.auth.conftest import PERMANENT_BOOTSTRAP, bearer, pair
from tests.inproc_server import InProcNekzus, admin_bearer, expiring_api_key
from tests.proxy.conftest import Upstream

DEFAULT_SCOPES = ["read:catalog", "read:events"]


@pytest.fixture(scope="module")
def srv(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcNekzus]:
    config = {
        "routes": [{"id": "plain", "app_id": "plain", "path_base": "/apps/plain/", "to": upstream.url}],
        "auth": {"local_networks": [], "default_scopes": DEFAULT_SCOPES, "token_ttl": "1h"},
        "bootstrap": {"tokens": [PERMANENT_BOOTSTRAP]},
        "health_checks": {"enabled": False},
    }
    server = InProcNekzus(tmp_path_factory.mktemp("proxy-expiry"), config).start()
    yield server
    server.stop()


@pytest.fixture
def client(srv: InProcNekzus) -> Iterator[httpx.Client]:
    with srv.client() as c:
        yield c


def reached_upstream(r: httpx.Response, path: str) -> bool:
    return r.status_code == 200 and r.headers.get("x-upstream") == "yes" and r.json()["path"] == path


def refused_as_expired(r: httpx.Response) -> bool:
    return r.status_code == 401 and "expired" in r.json()["error"]["message"].lower()


def test_api_key_expiry_is_honoured_on_the_proxy(client: httpx.Client, srv: InProcNekzus) -> None:
    admin = admin_bearer(srv, client)
    headers, expires = expiring_api_key(srv, client, admin, "proxy soon", DEFAULT_SCOPES)
    srv.clock.now = expires - 0.001
    assert reached_upstream(client.get("/apps/plain/e", headers=headers), "/apps/plain/e")
    srv.clock.now = expires
    assert refused_as_expired(client.get("/apps/plain/e", headers=headers))


def test_device_token_expiry_is_honoured_on_the_proxy(client: httpx.Client, srv: InProcNekzus) -> None:
    token = pair(client, "proxy-expiring")["accessToken"]
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    srv.clock.now = exp - 0.001
    assert reached_upstream(client.get("/apps/plain/t", headers=bearer(token)), "/apps/plain/t")
    srv.clock.now = exp
    r = client.get("/apps/plain/t", headers=bearer(token))
    assert refused_as_expired(r) and r.json()["error"]["code"] == "TOKEN_EXPIRED"
