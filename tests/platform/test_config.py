"""Configuration: precedence, parsing and every start-up error path (exit code 2, one line)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml

from nekzus.config import ConfigError, load_config, parse_duration
from tests.nekzus_server import NekzusServer, free_port, run_cli


def write(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_defaults_match_the_documented_values() -> None:
    config = load_config(None, env={})
    assert config.server.addr == ":8443"
    assert config.storage.database_path == "./data/nexus.db"
    assert config.auth.issuer == "nekzus"
    assert config.auth.audience == "nekzus-mobile"
    assert config.auth.local_networks == ["127.0.0.0/8", "::1/128"]
    assert config.server.trusted_proxies == []
    assert config.health_checks.interval == 10.0
    assert config.rate_limits.general.burst == 30
    assert config.rate_limits.general.rate == pytest.approx(0.5)
    assert config.rate_limits.health.rate == 10.0
    assert config.rate_limits.proxy.enabled is False
    assert config.metrics.path == "/metrics"


def test_precedence_default_then_file_then_env(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.yaml",
        {"server": {"addr": ":9000", "base_url": "https://file:1"}, "auth": {"issuer": "from-file"}},
    )
    from_file = load_config(str(path), env={})
    assert from_file.server.addr == ":9000"
    assert from_file.auth.issuer == "from-file"
    assert from_file.auth.audience == "nekzus-mobile"  # default kept
    from_env = load_config(str(path), env={"NEKZUS_ADDR": ":9100", "NEKZUS_BASE_URL": "https://env:2"})
    assert from_env.server.addr == ":9100"
    assert from_env.server.base_url == "https://env:2"
    assert from_env.auth.issuer == "from-file"


def test_env_feature_switches_only_turn_features_on(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", {"toolbox": {"enabled": True}})
    assert load_config(str(path), env={"NEKZUS_TOOLBOX_ENABLED": "false"}).toolbox.enabled is True
    assert load_config(None, env={"NEKZUS_DISCOVERY_ENABLED": "1"}).discovery.enabled is True
    assert load_config(None, env={"NEKZUS_METRICS_ENABLED": "true"}).metrics.enabled is True
    assert load_config(None, env={"NEKZUS_NOTIFICATIONS_ENABLED": "yes"}).notifications.enabled is False


def test_bootstrap_token_env_appends(tmp_path: Path) -> None:
    first, second = "first-token-" + "a" * 21, "second-token-" + "b" * 20
    path = write(tmp_path / "c.yaml", {"bootstrap": {"tokens": [first]}})
    config = load_config(str(path), env={"NEKZUS_BOOTSTRAP_TOKEN": second})
    assert config.bootstrap.tokens == [first, second]


def test_short_permanent_bootstrap_tokens_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", {"bootstrap": {"tokens": ["short"]}})
    with pytest.raises(ConfigError, match=r"bootstrap\.tokens: each token must be at least 32 characters"):
        load_config(str(path))
    with pytest.raises(ConfigError, match=r"bootstrap\.tokens"):
        load_config(None, env={"NEKZUS_BOOTSTRAP_TOKEN": "short"})


def test_json_config_and_durations(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(
        '{"health_checks": {"interval": "1m30s", "timeout": "500ms"}, "backup": {"schedule": "1h"}}'
    )
    config = load_config(str(path), env={})
    assert config.health_checks.interval == 90.0
    assert config.health_checks.timeout == 0.5
    assert config.backup.schedule == 3600.0
    assert parse_duration("30s") == 30.0
    assert parse_duration("5m") == 300.0
    assert parse_duration(12) == 12.0


def test_routes_accept_both_websocket_spellings(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.yaml",
        {
            "routes": [
                {"id": "a", "path_base": "/apps/a/", "to": "http://127.0.0.1:1", "websocket": True},
                {"id": "b", "path_base": "/apps/b/", "to": "http://127.0.0.1:1", "websockets": True},
                {"id": "c", "path_base": "/apps/c/", "to": "http://127.0.0.1:1"},
            ]
        },
    )
    routes = load_config(str(path), env={}).routes
    assert [r.websockets for r in routes] == [True, True, False]


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(str(tmp_path / "absent.yaml"), env={}).server.addr == ":8443"


def test_insecure_http_defaults_to_8080_unless_configured(tmp_path: Path) -> None:
    assert load_config(None, env={}, insecure_http=True).server.addr == ":8080"
    path = write(tmp_path / "c.yaml", {"server": {"addr": ":9443", "tls_cert": "a.crt", "tls_key": "a.key"}})
    config = load_config(str(path), env={}, insecure_http=True)
    assert config.server.addr == ":9443"
    assert config.server.tls_cert == ""
    assert config.tls_enabled is False


BAD_CONFIGS = [
    ({"auth": {"hs256_secret": "short"}}, {}, "auth.hs256_secret: must be at least 32 characters"),
    ({}, {"NEKZUS_JWT_SECRET": "tooshort"}, "auth.hs256_secret: must be at least 32 characters"),
    (
        {"auth": {"hs256_secret": "change-me-min-32-chars-for-production"}},
        {},
        "auth.hs256_secret: looks like",
    ),
    ({"server": {"addr": "nohostport"}}, {}, "server.addr: must be host:port"),
    ({}, {"NEKZUS_ADDR": ":70000"}, "server.addr: port must be a number between 0 and 65535"),
    (
        {"server": {"tls_cert": "only-cert.pem"}},
        {},
        "server.tls_key: tls_cert and tls_key must be set together",
    ),
    ({"health_checks": {"interval": "ten seconds"}}, {}, "health_checks.interval: invalid duration"),
    (
        {"routes": [{"id": "r", "path_base": "apps/x", "to": "http://127.0.0.1:1"}]},
        {},
        "routes[0].path_base: must start with /",
    ),
    ({"routes": [{"path_base": "/apps/x/", "to": "http://127.0.0.1:1"}]}, {}, "routes[0].id: is required"),
    (
        {"routes": [{"id": "r", "path_base": "/x/", "to": "ftp://nope"}]},
        {},
        "routes[0].to: must be an http:// or https:// URL",
    ),
    (
        {"auth": {"local_networks": ["not-a-cidr"]}},
        {},
        "auth.local_networks: 'not-a-cidr' is not an IP network",
    ),
    (
        {"server": {"trusted_proxies": ["10.0.0.0/33"]}},
        {},
        "server.trusted_proxies: '10.0.0.0/33' is not an IP network",
    ),
    (
        {"rate_limits": {"general": {"rate": "5 per hour", "burst": 3}}},
        {},
        "rate_limits.general.rate: invalid rate",
    ),
    ({"rate_limits": {"auth": {"rate": "1/s", "burst": 0}}}, {}, "rate_limits.auth.burst:"),
    ({"metrics": {"path": "/api/metrics"}}, {}, "metrics.path: must not collide"),
    (
        {"federation": {"enabled": True, "cluster_secret": "x"}},
        {},
        "federation.cluster_secret: must be at least 32",
    ),
    (
        {"discovery": {"docker": {"network_mode": "bogus"}}},
        {},
        "discovery.docker.network_mode: must be one of",
    ),
    ({"runtimes": {"primary": "lxc"}}, {}, "runtimes.primary: must be one of"),
    (
        {},
        {"NEKZUS_BOOTSTRAP_ALLOW_ANY": "1"},
        "bootstrap.allow_any: NEKZUS_BOOTSTRAP_ALLOW_ANY needs ENVIRONMENT",
    ),
    ("server: [unclosed\n", {}, "config: "),
    ("- just\n- a list\n", {}, "config: "),
]


@pytest.mark.parametrize(("content", "env", "message"), BAD_CONFIGS)
def test_each_bad_value_is_reported_as_one_line(
    tmp_path: Path, content: object, env: dict[str, str], message: str
) -> None:
    path = write(tmp_path / "config.yaml", content)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), env=env)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("content", "env", "message"),
    [BAD_CONFIGS[0], BAD_CONFIGS[4], BAD_CONFIGS[7], BAD_CONFIGS[-2], BAD_CONFIGS[-1]],
)
def test_cli_exits_2_with_the_key_and_no_traceback(
    tmp_path: Path, content: object, env: dict[str, str], message: str
) -> None:
    path = write(tmp_path / "config.yaml", content)
    result = run_cli(["--config", str(path)], env=env, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith(f"nekzus: {message}")
    assert "Traceback" not in result.stderr + result.stdout


def test_unknown_format_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[server]\naddr = ':1'\n")
    result = run_cli(["--config", str(path)], cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown config format" in result.stderr


def test_single_dash_flags_and_version(tmp_path: Path) -> None:
    result = run_cli(["-version"], cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("nekzus ")
    path = write(tmp_path / "c.yaml", {"auth": {"hs256_secret": "x"}})
    assert run_cli([f"-config={path}"], cwd=tmp_path).returncode == 2


def test_running_server_uses_env_over_file(tmp_path: Path) -> None:
    env_port = free_port()
    srv = NekzusServer(data_dir=tmp_path / "d", env={"NEKZUS_ADDR": f"127.0.0.1:{env_port}"})
    file_url = srv.url
    srv.url = f"http://127.0.0.1:{env_port}"
    with srv:
        assert httpx.get(srv.url + "/livez").text == "ok"
        with pytest.raises(httpx.TransportError):
            httpx.get(file_url + "/livez", timeout=1)
