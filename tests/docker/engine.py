"""A private Docker engine for the test session: Debian's dockerd on its own socket and data root,
plus a tiny `local/busybox:latest` image imported from Debian's busybox-static (no registry needed).

Everything talks to the daemon over its unix socket with httpx (no docker CLI).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

IMAGE = "local/busybox:latest"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nekzus-tests"
ROOTFS_TAR = CACHE_DIR / "busybox-rootfs.tar"


def _busybox_deb(workdir: Path) -> Path:
    def download() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["apt-get", "download", "busybox-static"],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=120,
        )

    result = download()
    if result.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300, check=False)
        result = download()
    debs = sorted(workdir.glob("busybox-static_*.deb"))
    if result.returncode != 0 or not debs:
        raise RuntimeError(f"apt-get download busybox-static failed: {result.stderr}")
    return debs[0]


def build_rootfs_tar() -> Path:
    """The busybox root filesystem as a tar (cached between runs)."""
    if ROOTFS_TAR.exists() and ROOTFS_TAR.stat().st_size > 100_000:
        return ROOTFS_TAR
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bbx-") as tmp:
        work = Path(tmp)
        deb = _busybox_deb(work)
        subprocess.run(["dpkg", "-x", str(deb), str(work / "x")], check=True, timeout=60)
        busybox = (work / "x" / "bin" / "busybox").read_bytes()
        applets = subprocess.run(
            [str(work / "x" / "bin" / "busybox"), "--list"], capture_output=True, text=True, check=True
        ).stdout.split()
        partial = ROOTFS_TAR.with_suffix(".tmp")
        with tarfile.open(partial, "w") as tar:

            def add_dir(name: str) -> None:
                info = tarfile.TarInfo(name)
                info.type = tarfile.DIRTYPE
                info.mode = 0o1777 if name == "tmp" else 0o755
                tar.addfile(info)

            def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), mode
                tar.addfile(info, io.BytesIO(data))

            for d in ("bin", "etc", "tmp", "www", "proc", "sys", "dev", "root"):
                add_dir(d)
            add_file("bin/busybox", busybox, 0o755)
            for applet in applets:
                if applet == "busybox":
                    continue
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
            add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
            add_file("etc/group", b"root:x:0:\n")
            add_file("www/index.html", b"ok\n")
        partial.replace(ROOTFS_TAR)
    return ROOTFS_TAR


class DockerEngine:
    """One dockerd started by the tests, and a small synchronous client for it."""

    def __init__(self) -> None:
        self.run_dir = Path(tempfile.mkdtemp(prefix="nkd", dir="/tmp"))
        self.socket = self.run_dir / "d.sock"
        self.host = f"unix://{self.socket}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.created: list[str] = []
        self._http: httpx.Client | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> DockerEngine:
        dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
        if not Path(dockerd).exists():
            raise RuntimeError("dockerd not found: run `make system-deps` (installs Debian's docker.io)")
        log = open(self.run_dir / "dockerd.log", "ab")  # noqa: SIM115 - kept for the child's lifetime
        self.proc = subprocess.Popen(
            [
                dockerd,
                "-H",
                self.host,
                "--data-root",
                str(self.run_dir / "data"),
                "--exec-root",
                str(self.run_dir / "exec"),
                "--pidfile",
                str(self.run_dir / "dockerd.pid"),
                "--default-ulimit",
                "nofile=20000:20000",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self._http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket)), base_url="http://docker", timeout=60.0
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited:\n{self.log_text()}")
            try:
                if self.http.get("/_ping").text == "OK":
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise TimeoutError(f"dockerd did not answer /_ping:\n{self.log_text()}")
        self.import_image()
        return self

    def log_text(self) -> str:
        try:
            return (self.run_dir / "dockerd.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    @property
    def http(self) -> httpx.Client:
        assert self._http is not None
        return self._http

    def import_image(self) -> None:
        data = build_rootfs_tar().read_bytes()
        response = self.http.post(
            "/images/create",
            params={
                "fromSrc": "-",
                "repo": "local/busybox",
                "tag": "latest",
                "changes": 'CMD ["/bin/sh"]',
            },
            content=data,
            headers={"Content-Type": "application/x-tar"},
            timeout=120.0,
        )
        response.raise_for_status()
        assert self.http.get(f"/images/{IMAGE}/json").status_code == 200, response.text

    def stop(self) -> None:
        for cid in list(self.created):
            self.remove(cid)
        if self._http is not None:
            self._http.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    # -- containers --------------------------------------------------------------------------------

    def run(
        self,
        name: str,
        cmd: list[str] | None = None,
        *,
        ports: Mapping[int, int] | None = None,
        labels: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        init: bool = True,
        start: bool = True,
        extra: Mapping[str, Any] | None = None,
        host_extra: Mapping[str, Any] | None = None,
    ) -> str:
        """Create (and start) a container; ports map container port -> 127.0.0.1 host port."""
        ports = dict(ports or {})
        body: dict[str, Any] = {
            "Image": IMAGE,
            "Cmd": cmd or ["sleep", "3600"],
            "Labels": dict(labels or {}),
            "Env": [f"{k}={v}" for k, v in (env or {}).items()],
            "ExposedPorts": {f"{p}/tcp": {} for p in ports},
            "StopTimeout": 1,
            "HostConfig": {
                "Init": init,
                "PortBindings": {
                    f"{cp}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(hp)}] for cp, hp in ports.items()
                },
                **dict(host_extra or {}),
            },
            **dict(extra or {}),
        }
        response = self.http.post("/containers/create", params={"name": name}, json=body)
        assert response.status_code == 201, response.text
        cid = str(response.json()["Id"])
        self.created.append(cid)
        if start:
            self.start_container(cid)
        return cid

    def httpd(self, name: str, port: int, *, labels: Mapping[str, str] | None = None, **kw: Any) -> str:
        """A busybox httpd serving `ok` on container port 80, published on 127.0.0.1:port."""
        return self.run(
            name, ["httpd", "-f", "-p", "80", "-h", "/www"], ports={80: port}, labels=labels, **kw
        )

    def start_container(self, cid: str) -> None:
        response = self.http.post(f"/containers/{cid}/start")
        assert response.status_code in (204, 304), response.text

    def stop_container(self, cid: str, t: int = 1) -> None:
        self.http.post(f"/containers/{cid}/stop", params={"t": t})

    def remove(self, cid: str) -> None:
        with contextlib.suppress(httpx.HTTPError):
            self.http.delete(f"/containers/{cid}", params={"force": "1", "v": "1"})
        if cid in self.created:
            self.created.remove(cid)

    def inspect(self, cid: str) -> dict[str, Any]:
        response = self.http.get(f"/containers/{cid}/json")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def state(self, cid: str) -> str:
        return str(self.inspect(cid)["State"]["Status"])

    def wait_state(self, cid: str, state: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state(cid) == state:
                return
            time.sleep(0.1)
        raise AssertionError(f"container {cid[:12]} not {state} after {timeout}s (is {self.state(cid)})")

    def logs(self, cid: str) -> bytes:
        """Everything the container wrote so far (stdout and stderr, in Docker's framing)."""
        response = self.http.get(f"/containers/{cid}/logs", params={"stdout": "1", "stderr": "1"})
        assert response.status_code == 200, response.text
        return response.content

    def wait_logged(self, cid: str, text: str, timeout: float = 15.0) -> None:
        """Wait until the container has written `text` (so a log tail is sure to include it)."""
        needle = text.encode()
        deadline = time.monotonic() + timeout
        while needle not in self.logs(cid):
            if time.monotonic() >= deadline:
                raise AssertionError(f"container {cid[:12]} never logged {text!r}")
            time.sleep(0.05)

    def events_json(self, since: float) -> list[dict[str, Any]]:
        params = {"since": str(int(since)), "until": str(int(time.time()) + 1)}
        response = self.http.get("/events", params=params)
        return [json.loads(line) for line in response.text.splitlines() if line.strip()]
