"""The compose export keeps secrets out of the file and escapes every `$` Compose would interpolate."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from nekzus.runtime.compose import ExportOptions, _esc, build_service, is_secret


def inspect(env: list[str], cmd: list[str] | None = None, **config: Any) -> dict[str, Any]:
    mounts = config.pop("mounts", [])
    return {
        "Id": "0" * 64,
        "Name": "/app",
        "Config": {"Image": "local/busybox:latest", "Env": env, "Cmd": cmd, **config},
        "HostConfig": {},
        "Mounts": mounts,
    }


def test_secret_names_and_values_are_recognised() -> None:
    for key in ("DB_PASS", "APP_KEY", "SECRET_KEY", "MYSQL_ROOT_PASSWORD", "GITEA__security__SECRET", "PW"):
        assert is_secret(key), key
    assert is_secret("DATABASE_URL", "postgres://app:hunter2@db:5432/app")
    assert is_secret("REDIS", "redis://:hunter2@cache:6379")
    for key, value in (("TZ", "Europe/Paris"), ("PUID", "1000"), ("URL", "https://example.org/x")):
        assert not is_secret(key, value), key


def test_exported_service_carries_no_secret_values() -> None:
    info = inspect(
        ["DB_PASS=hunter2", "APP_KEY=base64:abc", "DATABASE_URL=mysql://u:hunter2@db/x", "TZ=UTC"],
        ["serve", "--password=hunter2", "--api-token", "hunter2", "--port", "80"],
        User="$uid",
        WorkingDir="/srv/$app",
        mounts=[{"Type": "bind", "Source": "/data/$x", "Destination": "/in/$y", "RW": True}],
    )
    _name, svc, _vols, _nets, secrets, _warn = build_service(info, None, ExportOptions())
    dumped = yaml.safe_dump(svc)
    assert "hunter2" not in dumped and "base64:abc" not in dumped
    assert svc["environment"]["TZ"] == "UTC"
    hidden = ["serve", "--password=${PASSWORD}", "--api-token", "${API_TOKEN}", "--port", "80"]
    assert svc["command"] == hidden
    assert set(secrets) >= {"DB_PASS", "APP_KEY", "DATABASE_URL", "PASSWORD", "API_TOKEN"}
    assert svc["user"] == "$$uid"
    assert svc["working_dir"] == "/srv/$$app"
    assert svc["volumes"] == ["/data/$$x:/in/$$y"]


def test_without_sanitising_values_are_kept_but_escaped() -> None:
    info = inspect(["DB_PASS=a$b"], ["run", "--password=p$w"])
    _name, svc, *_rest = build_service(info, None, ExportOptions(sanitize_secrets=False))
    assert svc["environment"]["DB_PASS"] == "a$$b"
    assert svc["command"] == ["run", "--password=p$$w"]


@given(st.text())
def test_escaping_round_trips_and_leaves_no_lone_dollar(value: str) -> None:
    escaped = _esc(value)
    assert escaped.replace("$$", "$") == value
    assert "$" not in escaped.replace("$$", "")
