"""First-run setup, login, me, logout, lockout."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from tests.auth.conftest import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    UNTRUSTED,
    assert_healthy,
    assert_rejected_as_too_large,
    bearer,
    create_admin,
    error_code,
    login,
    setup_token_from_logs,
)
from tests.nekzus_server import NekzusServer


def test_setup_from_untrusted_network_needs_the_setup_token(make_server: Callable[..., NekzusServer]) -> None:
    srv = make_server(UNTRUSTED)
    body = {"username": ADMIN_USER, "password": ADMIN_PASSWORD}
    with srv.client() as c:
        assert c.get("/api/v1/auth/setup-status").json() == {"setupRequired": True, "hasUsers": False}
        r = c.post("/api/v1/auth/setup", json=body)
        assert r.status_code == 403 and error_code(r) == "FORBIDDEN"
        r = c.post("/api/v1/auth/setup", json=body, headers={"X-Setup-Token": "guess"})
        assert r.status_code == 403
        token = setup_token_from_logs(srv)
        r = c.post(
            "/api/v1/auth/setup",
            json={"username": "bad name!", "password": ADMIN_PASSWORD},
            headers={"X-Setup-Token": token},
        )
        assert r.status_code == 400 and error_code(r) == "USER_CREATION_FAILED"
        r = c.post(
            "/api/v1/auth/setup",
            json={"username": "admin", "password": "short"},
            headers={"X-Setup-Token": token},
        )
        assert r.status_code == 400 and error_code(r) == "USER_CREATION_FAILED"
        r = c.post("/api/v1/auth/setup", json={"username": "admin"}, headers={"X-Setup-Token": token})
        assert r.status_code == 400 and error_code(r) == "MISSING_FIELDS"
        r = c.post("/api/v1/auth/setup", json={**body, "setupToken": token})
        assert r.status_code == 201
        assert r.json() == {"message": "Setup completed successfully. Please log in.", "username": "admin"}
        assert c.get("/api/v1/auth/setup-status").json() == {"setupRequired": False, "hasUsers": True}
        # Once a user exists, setup is refused, even with the (now spent) token.
        r = c.post(
            "/api/v1/auth/setup",
            json={"username": "second", "password": ADMIN_PASSWORD},
            headers={"X-Setup-Token": token},
        )
        assert r.status_code == 400 and error_code(r) == "SETUP_ALREADY_COMPLETED"
    # The password is stored as an argon2id hash, never in clear.
    raw = b"".join(p.read_bytes() for p in srv.data_dir.glob("nexus.db*"))
    assert ADMIN_PASSWORD.encode() not in raw
    with sqlite3.connect(f"file:{srv.data_dir / 'nexus.db'}?mode=ro", uri=True) as db:
        (stored,) = db.execute("SELECT password_hash FROM auth_users").fetchone()
    assert stored.startswith("$argon2id$")


def test_login_me_logout_and_bad_input(make_server: Callable[..., NekzusServer]) -> None:
    srv = make_server()  # loopback is trusted: setup needs no token here
    with srv.client() as c:
        r = c.post("/api/v1/auth/setup", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
        assert r.status_code == 201
        r = c.post("/api/v1/auth/setup", json={"username": "again", "password": ADMIN_PASSWORD})
        assert r.status_code == 400 and error_code(r) == "SETUP_ALREADY_COMPLETED"

        r = c.post("/api/v1/auth/login", json={"username": ADMIN_USER, "password": "wrong password"})
        assert r.status_code == 401 and error_code(r) == "INVALID_CREDENTIALS"
        r = c.post("/api/v1/auth/login", json={"username": "nobody", "password": "wrong password"})
        assert r.status_code == 401 and error_code(r) == "INVALID_CREDENTIALS"
        r = c.post("/api/v1/auth/login", json={"username": ADMIN_USER})
        assert r.status_code == 400 and error_code(r) == "MISSING_FIELDS"
        r = c.post("/api/v1/auth/login", content=b"{bad json", headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and error_code(r) == "INVALID_JSON"
        r = c.post("/api/v1/auth/login", json={"username": ADMIN_USER, "password": "p" * 100_000})
        assert r.status_code == 401
        assert_rejected_as_too_large(c, "/api/v1/auth/login", {"Content-Type": "application/json"})

        r = c.post("/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
        assert r.status_code == 200
        body = r.json()
        token = body["token"]
        assert body["user"]["username"] == ADMIN_USER and body["user"]["isActive"] is True
        assert body["user"]["lastLogin"].endswith("Z")

        r = c.get("/api/v1/auth/me", headers=bearer(token))
        assert r.status_code == 200 and r.json()["user"]["id"] == body["user"]["id"]
        # /me needs a JWT even from a trusted network.
        assert c.get("/api/v1/auth/me").status_code == 401

        r = c.post("/api/v1/auth/logout", headers=bearer(token))
        assert r.status_code == 200 and r.json() == {"message": "Logged out successfully"}
        r = c.get("/api/v1/auth/me", headers=bearer(token))
        assert r.status_code == 401 and error_code(r) == "TOKEN_REVOKED"
        r = c.post("/api/v1/auth/refresh", headers=bearer(token))
        assert r.status_code == 401 and error_code(r) == "TOKEN_REVOKED"
        assert_healthy(c)


def test_unknown_user_costs_the_same_as_a_wrong_password(make_server: Callable[..., NekzusServer]) -> None:
    srv = make_server()
    with srv.client() as c:
        create_admin(c)

        def timed(username: str) -> float:
            start = time.perf_counter()
            r = c.post("/api/v1/auth/login", json={"username": username, "password": "not the password"})
            assert r.status_code == 401
            return time.perf_counter() - start

        timed("warm-up-unknown")
        known: list[float] = []
        unknown: list[float] = []
        # Interleaved, 4 rounds (under the lockout); the minimum is the intrinsic cost, free of load spikes.
        for i in range(4):
            known.append(timed(ADMIN_USER))
            unknown.append(timed(f"ghost{i}"))
        # Both verify an argon2id hash, so neither answers measurably faster.
        assert 0.5 < min(unknown) / min(known) < 2.0, (known, unknown)


def test_repeated_failures_lock_the_account(make_server: Callable[..., NekzusServer]) -> None:
    # Untrusted: a trusted network is never locked out (the owner at home can always sign in).
    srv = make_server(UNTRUSTED)
    with srv.client() as c:
        create_admin(c, srv)
        for _ in range(5):
            r = c.post("/api/v1/auth/login", json={"username": ADMIN_USER, "password": "wrong password"})
            assert r.status_code == 401
        r = c.post("/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
        assert r.status_code == 429 and error_code(r) == "RATE_LIMITED"
        assert int(r.headers["Retry-After"]) > 0
        # Other accounts' names are not affected by this lock.
        r = c.post("/api/v1/auth/login", json={"username": "someone", "password": "wrong password"})
        assert r.status_code == 401


def test_login_token_works_on_untrusted_server(make_server: Callable[..., NekzusServer]) -> None:
    srv = make_server(UNTRUSTED)
    with srv.client() as c:
        create_admin(c, srv)
        token = login(c)
        assert c.get("/api/v1/apikeys", headers=bearer(token)).status_code == 200
        assert c.get("/api/v1/apikeys").status_code == 401


def test_auth_rate_limit_applies_to_login(make_server: Callable[..., NekzusServer]) -> None:
    srv = make_server(rate_limits=True)
    with srv.client() as c:
        codes = []
        for i in range(12):
            r = c.post("/api/v1/auth/login", json={"username": f"x{i}", "password": "y"})
            codes.append(r.status_code)
            if r.status_code == 429:
                assert error_code(r) == "RATE_LIMIT_EXCEEDED"
                break
        assert 429 in codes
