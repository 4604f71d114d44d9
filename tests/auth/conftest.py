"""Identity test helpers: servers shared per module, pairing and login shortcuts."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.nekzus_server import NekzusServer

PERMANENT_BOOTSTRAP = "perm-bootstrap-token-for-tests-0123456789abcdef"
ADMIN_USER = "admin"
ADMIN_PASSWORD = "correct horse battery staple"
UNTRUSTED = {"auth": {"local_networks": []}, "bootstrap": {"tokens": [PERMANENT_BOOTSTRAP]}}
TRUSTED = {"bootstrap": {"tokens": [PERMANENT_BOOTSTRAP]}}


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., NekzusServer]]:
    """Start servers that live for the whole test module (tests in it must stay independent)."""
    started: list[NekzusServer] = []

    def factory(config: dict[str, Any] | None = None, **kwargs: Any) -> NekzusServer:
        kwargs.setdefault("data_dir", tmp_path_factory.mktemp("auth"))
        srv = NekzusServer(config, **kwargs)
        started.append(srv)
        srv.start()
        return srv

    yield factory
    for srv in started:
        srv.stop()


@pytest.fixture(scope="module")
def srv(module_server: Callable[..., NekzusServer]) -> NekzusServer:
    """The module's server: untrusted by default; a module overrides this for other settings."""
    return module_server(UNTRUSTED)


@pytest.fixture(scope="module")
def admin(srv: NekzusServer) -> dict[str, str]:
    """Authorization headers of the first admin, created through setup and login."""
    with srv.client() as c:
        create_admin(c, srv)
        return bearer(login(c))


@pytest.fixture
def client(srv: NekzusServer) -> Iterator[httpx.Client]:
    with srv.client() as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def setup_token_from_logs(server: NekzusServer, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(r"X-Setup-Token\): (\S+)", server.logs())
        if match:
            return match.group(1)
        time.sleep(0.05)
    raise AssertionError("setup token not found in the server log")


def create_admin(client: httpx.Client, server: NekzusServer | None = None) -> None:
    headers = {"X-Setup-Token": setup_token_from_logs(server)} if server is not None else {}
    r = client.post(
        "/api/v1/auth/setup", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD}, headers=headers
    )
    assert r.status_code == 201, r.text


def login(client: httpx.Client) -> str:
    r = client.post("/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
    assert r.status_code == 200, r.text
    token: str = r.json()["token"]
    return token


def pair(
    client: httpx.Client,
    device_id: str,
    *,
    platform: str = "ios",
    token: str = PERMANENT_BOOTSTRAP,
    **extra: Any,
) -> dict[str, Any]:
    body = {"device": {"id": device_id, "platform": platform, "model": f"Model of {device_id}", **extra}}
    r = client.post("/api/v1/auth/pair", json=body, headers=bearer(token))
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error", "message", "code"}, body
    code: str = body["error"]["code"]
    assert body["error"]["message"] and body["message"] == body["error"]["message"] and body["code"] == code
    return code


def assert_healthy(client: httpx.Client) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.text == "ok"


def assert_rejected_as_too_large(client: httpx.Client, path: str, headers: dict[str, str]) -> None:
    """A body over the global limit is refused with 413 before it is read; the server may close the
    connection while the client is still sending, in which case the 413 cannot be read back."""
    try:
        r = client.post(path, content=b"x" * (2 * 1024 * 1024), headers=headers)
    except httpx.TransportError:
        return
    assert r.status_code == 413 and error_code(r) == "PAYLOAD_TOO_LARGE"
