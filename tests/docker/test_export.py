"""Export to Docker Compose, validated by the real `docker-compose config`."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.docker.conftest import ContainerFactory
from tests.docker.engine import DockerEngine
from tests.nekzus_server import free_port

pytestmark = [pytest.mark.xdist_group("docker"), pytest.mark.docker]

COMPOSE = Path(sys.executable).parent / "docker-compose"

# The `rich_container` fixture: (container id, published port, bind-mounted host directory).
RichContainer = tuple[str, int, Path]


def compose_config(engine: DockerEngine, workdir: Path, content: str, env: str = "") -> dict[str, Any]:
    """Write the export (and a filled-in .env) and let Compose parse, validate and normalise it."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "docker-compose.yml").write_text(content)
    if env:
        filled = "".join(
            line.replace("=CHANGE_ME", "=filled-in") + "\n" for line in env.splitlines() if line.strip()
        )
        (workdir / ".env").write_text(filled)
    result = subprocess.run(
        [str(COMPOSE), "-f", "docker-compose.yml", "config"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DOCKER_HOST": engine.host},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "variable is not set" not in result.stderr, result.stderr
    parsed: dict[str, Any] = yaml.safe_load(result.stdout)
    return parsed


@pytest.fixture
def rich_container(
    docker_engine: DockerEngine, container: ContainerFactory, tmp_path: Path
) -> Iterator[RichContainer]:
    net = docker_engine.http.post("/networks/create", json={"Name": "exportnet", "CheckDuplicate": True})
    assert net.status_code in (201, 409), net.text
    bind_dir = tmp_path / "bind"
    bind_dir.mkdir()
    port = free_port()
    cid = container(
        "export-me",
        ["httpd", "-f", "-p", "80", "-h", "/www"],
        ports={80: port},
        labels={"nekzus.app.id": "exportme", "com.docker.compose.project": "old", "cost": "$5"},
        env={"DB_PASSWORD": "hunter2", "API_TOKEN": "abc", "GREETING": "hello $USER", "PLAIN": "1"},
        host_extra={
            "Binds": ["exportdata:/data", f"{bind_dir}:/conf:ro"],
            "RestartPolicy": {"Name": "unless-stopped"},
            "NetworkMode": "exportnet",
            "CapAdd": ["NET_ADMIN"],
        },
        extra={
            "Healthcheck": {
                "Test": ["CMD", "wget", "-q", "-O", "-", "http://127.0.0.1/"],
                "Interval": 5_000_000_000,
                "Timeout": 2_000_000_000,
                "Retries": 3,
            },
            "WorkingDir": "/www",
        },
    )
    yield cid, port, bind_dir
    docker_engine.remove(cid)
    docker_engine.http.delete("/networks/exportnet")
    docker_engine.http.delete("/volumes/exportdata")


def test_single_export_round_trips_through_compose(
    dclient: httpx.Client, docker_engine: DockerEngine, rich_container: RichContainer, tmp_path: Path
) -> None:
    cid, port, bind_dir = rich_container
    response = dclient.post(f"/api/v1/containers/{cid[:12]}/export")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["format"] == "compose" and body["filename"] == "export-me-compose.yml"
    assert body["env_filename"] == ".env.example"
    assert "hunter2" not in body["content"] and "abc" not in body["content"].split("API_TOKEN")[1][:10]
    assert body["env_content"].splitlines()[3:] == ["API_TOKEN=CHANGE_ME", "DB_PASSWORD=CHANGE_ME"]
    assert body["env_content"].startswith("#")

    config = compose_config(docker_engine, tmp_path / "single", body["content"], body["env_content"])
    svc = config["services"]["export-me"]
    assert svc["image"] == "local/busybox:latest"
    assert svc["container_name"] == "export-me"
    assert svc["environment"] == {
        "DB_PASSWORD": "filled-in",
        "API_TOKEN": "filled-in",
        "GREETING": "hello $$USER",  # `config` re-escapes: the value is the literal `hello $USER`
        "PLAIN": "1",
    }
    assert svc["command"] == ["httpd", "-f", "-p", "80", "-h", "/www"]
    assert svc["ports"][0]["published"] == str(port) and svc["ports"][0]["target"] == 80
    assert svc["ports"][0]["host_ip"] == "127.0.0.1"
    assert svc["restart"] == "unless-stopped"
    assert svc["cap_add"] == ["NET_ADMIN"]
    assert svc["working_dir"] == "/www"
    assert svc["healthcheck"]["test"][:2] == ["CMD", "wget"] and svc["healthcheck"]["retries"] == 3
    assert svc["healthcheck"]["interval"] == "5s"
    assert svc["labels"] == {"nekzus.app.id": "exportme", "cost": "$$5"}
    assert "exportnet" in svc["networks"]
    assert config["networks"]["exportnet"]["external"] is True
    targets = {v["target"]: v for v in svc["volumes"]}
    assert targets["/data"]["source"] == "exportdata" and targets["/data"]["type"] == "volume"
    assert targets["/conf"]["source"] == str(bind_dir) and targets["/conf"]["read_only"] is True
    assert config["volumes"]["exportdata"]["external"] is True


def test_preview_get_and_post_match_export(dclient: httpx.Client, rich_container: RichContainer) -> None:
    cid = rich_container[0][:12]
    exported = dclient.post(f"/api/v1/containers/{cid}/export").json()
    assert dclient.get(f"/api/v1/containers/{cid}/export/preview").json() == exported
    assert dclient.post(f"/api/v1/containers/{cid}/export/preview").json() == exported
    assert dclient.post(f"/api/v1/containers/{cid}/export/preview", json={}).json() == exported


def test_export_options(dclient: httpx.Client, rich_container: RichContainer) -> None:
    cid = rich_container[0][:12]
    raw = dclient.post(
        f"/api/v1/containers/{cid}/export",
        json={"sanitizeSecrets": False, "include_volumes": False, "include_networks": False},
    ).json()
    assert "hunter2" in raw["content"] and "env_content" not in raw
    doc = yaml.safe_load(raw["content"])
    svc = doc["services"]["export-me"]
    assert "volumes" not in svc and "networks" not in svc and "volumes" not in doc
    bad = dclient.post(f"/api/v1/containers/{cid}/export", json={"sanitize_secrets": "maybe"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_REQUEST_BODY"
    not_obj = dclient.post(f"/api/v1/containers/{cid}/export", json=[1])
    assert not_obj.status_code == 400
    assert dclient.post("/api/v1/containers/ghost/export").status_code == 404
    assert dclient.post("/api/v1/containers/%2E%2E/export").status_code == 400


def test_batch_export_json_zip_and_partial(
    dclient: httpx.Client,
    docker_engine: DockerEngine,
    rich_container: RichContainer,
    container: ContainerFactory,
    tmp_path: Path,
) -> None:
    cid = rich_container[0]
    other = container("export-two", env={"SECRET_KEY": "s3"})
    body = {"container_ids": [cid[:12], other[:12]], "stack_name": "My Stack"}
    preview = dclient.post("/api/v1/containers/batch/export/preview", json=body)
    assert preview.status_code == 200, preview.text
    result = preview.json()
    assert result["filename"] == "my-stack-compose.yml"
    config = compose_config(docker_engine, tmp_path / "batch", result["content"], result["env_content"])
    assert config["name"] == "my-stack"
    assert set(config["services"]) == {"export-me", "export-two"}
    assert config["services"]["export-two"]["environment"]["SECRET_KEY"] == "filled-in"
    assert "SECRET_KEY=CHANGE_ME" in result["env_content"]

    exported = dclient.post("/api/v1/containers/batch/export", json={**body, "stackName": "zipped"})
    assert (
        exported.json()["content"]
        == dclient.post("/api/v1/containers/batch/export", json=body).json()["content"]
    )
    archive = dclient.post("/api/v1/containers/batch/export", params={"format": "zip"}, json=body)
    assert archive.status_code == 200
    assert archive.headers["content-type"] == "application/zip"
    assert 'filename="my-stack.zip"' in archive.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zf:
        assert set(zf.namelist()) == {"docker-compose.yml", ".env.example"}
        compose_config(
            docker_engine,
            tmp_path / "zip",
            zf.read("docker-compose.yml").decode(),
            zf.read(".env.example").decode(),
        )

    partial = dclient.post("/api/v1/containers/batch/export", json={"containerIds": [other[:12], "ghost"]})
    assert partial.status_code == 206
    assert any("ghost" in w for w in partial.json()["warnings"])
    none = dclient.post(
        "/api/v1/containers/batch/export/preview", json={"container_ids": ["ghost1", "ghost2"]}
    )
    assert none.status_code == 404 and none.json()["error"]["code"] == "ALL_CONTAINERS_FAILED"
    for bad, code in (
        ({}, "INVALID_REQUEST_BODY"),
        ({"container_ids": []}, "EMPTY_CONTAINER_LIST"),
        ({"container_ids": ["../../x"]}, "INVALID_CONTAINER_ID"),
        ({"container_ids": "abc"}, "INVALID_REQUEST_BODY"),
    ):
        response = dclient.post("/api/v1/containers/batch/export", json=bad)
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["error"]["code"] == code
    wrong = dclient.post("/api/v1/containers/batch/export", params={"format": "tar"}, json=body)
    assert wrong.status_code == 400


def test_exported_stack_actually_runs(
    dclient: httpx.Client, docker_engine: DockerEngine, container: ContainerFactory, tmp_path: Path
) -> None:
    """Round trip: export a web container, bring the stack up with Compose on a new port, get `ok`."""
    port = free_port()
    cid = container("roundtrip-src", ["httpd", "-f", "-p", "80", "-h", "/www"], ports={80: port})
    content = dclient.post(f"/api/v1/containers/{cid[:12]}/export").json()["content"]
    doc = yaml.safe_load(content)
    svc = doc["services"]["roundtrip-src"]
    new_port = free_port()
    svc["container_name"] = "roundtrip-copy"
    svc["ports"] = [f"127.0.0.1:{new_port}:80"]
    svc["stop_grace_period"] = "1s"
    work = tmp_path / "rt"
    work.mkdir()
    (work / "docker-compose.yml").write_text(yaml.safe_dump(doc))
    env = {**os.environ, "DOCKER_HOST": docker_engine.host}
    up = subprocess.run(
        [str(COMPOSE), "-p", "roundtrip", "up", "-d"],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    try:
        assert up.returncode == 0, up.stderr
        from tests.docker.conftest import wait_http

        assert wait_http(f"http://127.0.0.1:{new_port}/").text == "ok\n"
    finally:
        subprocess.run(
            [str(COMPOSE), "-p", "roundtrip", "down", "-t", "1"],
            cwd=work,
            capture_output=True,
            env=env,
            timeout=120,
        )
