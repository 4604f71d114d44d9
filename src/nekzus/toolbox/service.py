"""Deployments of toolbox templates: one Compose project each, created with the real Compose binary.

Lifecycle: `pending` (accepted, recorded) -> `deploying` -> `deployed` | `failed` (with `error_message`).
The request is checked before anything is recorded: the template exists, required variables are set,
the file renders with the user's values and every published host port is free. The slow part
(`execute`) runs as a job of kind `toolbox.deploy` on the server's job runner (bounded, recorded, listed
at `/api/v1/jobs`, cancellable there): it pulls missing images, creates the project (`up --no-start`),
starts it unless `autoStart` is false, and optionally creates a route. Its progress is published both as
the toolbox's own `toolbox.deploy.*` events and as the runner's `job.*` events.

A failed (or cancelled) deployment is rolled back completely: its containers and networks are removed,
and so are the volumes it created (volumes that existed before, e.g. kept from an earlier deployment of
the same name, are left alone). The project name comes from the service name, so redeploying under the
same name finds its named volumes, and their data, again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select, update

from nekzus.errors import Conflict, Invalid, NekzusError, NotFound
from nekzus.events import EventBus
from nekzus.jobs import Job, JobContext, JobFailed, JobRunner
from nekzus.store import Database
from nekzus.toolbox.compose import Compose, ComposeFailed
from nekzus.toolbox.models import Deployment, deployments
from nekzus.toolbox.templates import VAR_NAME, Template, load_catalog

log = logging.getLogger("nekzus.toolbox")


# Event types published on the bus (and so over the WebSocket).
class ToolboxEvent(StrEnum):
    DEPLOY_PROGRESS = "toolbox.deploy.progress"
    DEPLOY_COMPLETED = "toolbox.deploy.completed"
    DEPLOY_FAILED = "toolbox.deploy.failed"


DEPLOY_PROGRESS = ToolboxEvent.DEPLOY_PROGRESS
DEPLOY_COMPLETED = ToolboxEvent.DEPLOY_COMPLETED
DEPLOY_FAILED = ToolboxEvent.DEPLOY_FAILED

STATUSES = ("pending", "deploying", "deployed", "failed", "stopped")
DEPLOY_TIMEOUT = 600.0
DEPLOYMENT_ID = re.compile(r"^deploy_[0-9]{1,24}$")
_PROJECT_LABEL = "com.docker.compose.project"
_MAX_ENV_VARS = 200
_MAX_VALUE = 64 * 1024

# The job kind of a deployment on the job runner (its pool: `jobs.max_concurrent`, `jobs.max_queued`).
DEPLOY_JOB_KIND = "toolbox.deploy"
# The runner's own limit is a backstop only: a deployment times itself out (DEPLOY_TIMEOUT, with the phase
# it was stuck in) and rolls back first.
DEPLOY_JOB_TIMEOUT = DEPLOY_TIMEOUT + 120

Progress = Callable[[str, int], Awaitable[None]]


class DeployError(Exception):
    """A deployment step failed; the message is stored on the deployment and shown to the user."""


def sanitize_name(name: str) -> str:
    """A Compose project name from a display name: lower case, `-` for spaces and underscores."""
    value = re.sub(r"[\s_]+", "-", name.strip().lower())
    value = re.sub(r"[^a-z0-9-]", "", value)
    return re.sub(r"-{2,}", "-", value).strip("-")[:63]


def _pick(body: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in body:
            return body[name]
    return None


@dataclass
class DeployRequest:
    service_id: str
    service_name: str
    env_vars: dict[str, str]
    auto_start: bool
    custom_port: int | None
    custom_image: str | None

    @classmethod
    def parse(cls, body: Any, default_auto_start: bool) -> DeployRequest:
        """Accept both the camelCase and the snake_case spellings of every field."""
        if not isinstance(body, dict):
            raise Invalid("Request body must be a JSON object", code="INVALID_REQUEST")
        service_id = _pick(body, "serviceId", "service_id")
        if service_id in (None, ""):
            raise Invalid("serviceId is required", code="MISSING_SERVICE_ID")
        if not isinstance(service_id, str):
            raise Invalid("serviceId must be a string", code="INVALID_REQUEST")
        name = _pick(body, "serviceName", "service_name")
        if name is None or name == "":
            name = service_id
        if not isinstance(name, str) or len(name) > 255:
            raise Invalid("serviceName must be a string of at most 255 characters", code="INVALID_REQUEST")
        env = _pick(body, "envVars", "env_vars", "environment") or {}
        if not isinstance(env, dict) or len(env) > _MAX_ENV_VARS:
            raise Invalid("envVars must be an object of at most 200 variables", code="INVALID_REQUEST")
        values: dict[str, str] = {}
        for key, value in env.items():
            if not isinstance(key, str) or not VAR_NAME.match(key):
                raise Invalid(f"invalid variable name {key!r}", code="INVALID_REQUEST")
            if isinstance(value, bool):
                value = "true" if value else "false"
            if isinstance(value, int | float):
                value = str(value)
            if not isinstance(value, str) or len(value) > _MAX_VALUE or "\x00" in value:
                raise Invalid(f"variable {key} must be a string", code="INVALID_REQUEST")
            values[key] = value
        auto_start = _pick(body, "autoStart", "auto_start")
        if auto_start is None:
            auto_start = default_auto_start
        if not isinstance(auto_start, bool):
            raise Invalid("autoStart must be a boolean", code="INVALID_REQUEST")
        port = _pick(body, "customPort", "custom_port")
        if port in (None, "", 0):
            port = None
        elif isinstance(port, str) and port.isdigit():
            port = int(port)
        if port is not None and (
            isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535
        ):
            raise Invalid("customPort must be a port number between 1 and 65535", code="INVALID_PORT")
        image = _pick(body, "customImage", "custom_image")
        if image in (None, ""):
            image = None
        elif not isinstance(image, str) or len(image) > 512 or any(c.isspace() for c in image):
            raise Invalid("customImage must be an image reference", code="INVALID_REQUEST")
        return cls(service_id, name.strip(), values, auto_start, port, image)


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def published_ports(project: dict[str, Any]) -> list[tuple[str, int]]:
    """(host ip, host port) of every published TCP port in a rendered project."""
    found: list[tuple[str, int]] = []
    for service in (project.get("services") or {}).values():
        for port in service.get("ports") or []:
            published = str(port.get("published") or "")
            if not published.isdigit() or port.get("protocol", "tcp") != "tcp":
                continue
            found.append((str(port.get("host_ip") or "0.0.0.0"), int(published)))
    return found


def _write_project(folder: Path, rendered: dict[str, Any]) -> None:
    """Keep the rendered project for later `down`; it holds the user's secrets, so only we may read it."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(folder / "docker-compose.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(rendered, fh, indent=2)


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


class ToolboxService:
    """Owns the catalog and the deployments (their rows, Compose projects and background tasks)."""

    def __init__(
        self,
        *,
        db: Database,
        bus: EventBus,
        compose: Compose,
        docker: Any,
        jobs: JobRunner,
        catalog_dirs: list[tuple[Path, str]],
        data_dir: Path,
        base_url: str = "",
        auto_start_default: bool = True,
        auto_route: bool = False,
        catalog: Any = None,
        audit: Any = None,
    ) -> None:
        self.db = db
        self.bus = bus
        self.compose = compose
        self.docker = docker
        self.jobs = jobs
        self.catalog_dirs = catalog_dirs
        self.data_dir = data_dir
        self.base_url = base_url
        self.auto_start_default = auto_start_default
        self.auto_route = auto_route
        self.routes = catalog
        self.audit = audit
        # Host ports promised to deployments still on their way up (the engine has not bound them yet).
        self._reserved: dict[str, set[tuple[str, int]]] = {}
        self.templates: dict[str, Template] = {}
        # deployment id -> id of its job on the runner (while the job lives).
        self._jobs: dict[str, str] = {}
        # Deployments being removed: cancelling their job skips the rollback (removal takes them down).
        self._removing: set[str] = set()
        self._project_lock = asyncio.Lock()
        self._last_id = 0

    # -- catalog ---------------------------------------------------------------------------------------

    async def load_catalog(self) -> None:
        self.templates = await load_catalog(self.catalog_dirs, self.compose)
        log.info("toolbox catalog: %d templates", len(self.templates))

    def list_templates(self, category: str | None = None) -> list[dict[str, Any]]:
        return [t.as_json() for t in self.templates.values() if not category or t.category == category]

    def template(self, service_id: str) -> Template:
        template = self.templates.get(service_id)
        if template is None:
            raise NotFound(f"Service '{service_id[:64]}' not found", code="SERVICE_NOT_FOUND")
        return template

    # -- start-up --------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        await self.load_catalog()

    async def recover(self) -> None:
        """Deployments cut off by a restart are failed and rolled back (their containers removed).

        Run once per instance start (never by a worker process that starts beside others: their
        deployments in progress are not interrupted)."""
        rows = await self.db.rows(
            select(deployments.c.id, deployments.c.project_name).where(
                deployments.c.status.in_(("pending", "deploying"))
            )
        )
        stuck = [(row.id, row.project_name) for row in rows]
        for deployment_id, project in stuck:
            with contextlib.suppress(Exception):
                await self._down(deployment_id, project, remove_volumes=False)
            await self._update(
                deployment_id,
                status="failed",
                phase="failed",
                error_message="Interrupted by a server restart",
            )

    # -- queries ---------------------------------------------------------------------------------------

    def to_json(self, row: Deployment) -> dict[str, Any]:
        secret = set(row.secret_vars)
        env = {k: ("********" if k in secret else v) for k, v in row.env_vars.items()}
        return {
            "id": row.id,
            "service_template_id": row.service_template_id,
            "service_name": row.service_name,
            "status": row.status,
            "phase": row.phase,
            "progress": row.progress,
            "container_id": row.container_id,
            "container_name": row.container_name,
            "project_name": row.project_name,
            "network_names": list(row.network_names),
            "volume_names": list(row.volume_names),
            "env_vars": env,
            "custom_image": row.custom_image,
            "custom_port": row.custom_port,
            "auto_start": row.auto_start,
            "route_id": row.route_id,
            "error_message": row.error_message,
            "deployed_at": _iso(row.deployed_at),
            "deployed_by": row.deployed_by,
            "created_at": _iso(row.created_at),
            "updated_at": _iso(row.updated_at),
        }

    async def list_deployments(self, status: str | None = None) -> list[dict[str, Any]]:
        if status is not None and status not in STATUSES:
            raise Invalid(f"status must be one of {', '.join(STATUSES)}", code="INVALID_STATUS")
        query = select(deployments).order_by(deployments.c.created_at.desc(), deployments.c.id.desc())
        if status:
            query = query.where(deployments.c.status == status)
        return [self.to_json(Deployment.from_row(row)) for row in await self.db.rows(query)]

    async def _row(self, deployment_id: str) -> Deployment:
        if not DEPLOYMENT_ID.match(deployment_id):
            raise NotFound(f"Deployment '{deployment_id[:64]}' not found", code="DEPLOYMENT_NOT_FOUND")
        row = await self.db.first(select(deployments).where(deployments.c.id == deployment_id))
        if row is None:
            raise NotFound(f"Deployment '{deployment_id}' not found", code="DEPLOYMENT_NOT_FOUND")
        return Deployment.from_row(row)

    async def get_deployment(self, deployment_id: str) -> dict[str, Any]:
        return self.to_json(await self._row(deployment_id))

    async def _update(self, deployment_id: str, **values: Any) -> None:
        """Change some columns of a deployment (a removed one is left alone)."""
        await self.db.execute(
            update(deployments).where(deployments.c.id == deployment_id).values(**values, updated_at=_now())
        )

    # -- deploy: the checked, synchronous part ------------------------------------------------------------

    def _new_id(self) -> str:
        value = max(time.time_ns(), self._last_id + 1)
        self._last_id = value
        return f"deploy_{value}"

    def _project_dir(self, deployment_id: str) -> Path:
        return self.data_dir / deployment_id

    async def deploy(self, body: Any, *, actor: str, ip: str = "") -> dict[str, Any]:
        """Check and record a deployment, then run it in the background; answers with the pending record."""
        request = DeployRequest.parse(body, self.auto_start_default)
        template = self.template(request.service_id)
        project = sanitize_name(request.service_name)
        if not project or not project[0].isalnum():
            raise Invalid("serviceName must contain letters or digits", code="INVALID_REQUEST")
        missing = [
            v.name for v in template.variables if v.required and not request.env_vars.get(v.name, "").strip()
        ]
        if missing:
            raise Invalid(
                f"Invalid deployment request: missing required variables: {', '.join(missing)}",
                code="INVALID_REQUEST",
                extra={"missing": missing},
            )
        env = dict(request.env_vars)
        env["SERVICE_NAME"] = project
        if self.base_url:
            env["BASE_URL"] = self.base_url
        if request.custom_port is not None and template.port_variable:
            env[template.port_variable] = str(request.custom_port)
        async with self._project_lock:
            await self._check_project_free(project)
            deployment_id = self._new_id()
            rendered = await self._render(template, project, env, request, deployment_id)
            wanted = published_ports(rendered)
            promised = {port for ports in self._reserved.values() for _host, port in ports}
            for host, port in wanted:
                if port in promised or not await asyncio.to_thread(_port_free, host, port):
                    raise Conflict(f"Port {port} is already in use on the host", code="PORT_CONFLICT")
            folder = self._project_dir(deployment_id)
            await asyncio.to_thread(_write_project, folder, rendered)
            record = insert(deployments).values(
                id=deployment_id,
                service_template_id=template.id,
                service_name=request.service_name,
                status="pending",
                phase="pending",
                progress=0,
                project_name=project,
                network_names=sorted(
                    str(n.get("name") or k) for k, n in (rendered.get("networks") or {}).items()
                ),
                volume_names=sorted(
                    str(v.get("name") or k) for k, v in (rendered.get("volumes") or {}).items()
                ),
                env_vars=request.env_vars,
                secret_vars=[v.name for v in template.variables if v.type == "password"],
                custom_image=request.custom_image,
                custom_port=request.custom_port,
                auto_start=request.auto_start,
                deployed_by=actor,
            )
            try:
                await self.db.execute(record)
            except Exception:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            self._reserved[deployment_id] = set(wanted)
        try:
            job = await self.jobs.submit(
                DEPLOY_JOB_KIND,
                self._job_work(deployment_id),
                timeout=DEPLOY_JOB_TIMEOUT,
                triggered_by=actor,
                on_skipped=self._job_skipped(deployment_id),
            )
        except BaseException:
            # Not queued (the runner's queue is full or the server is stopping): nothing was started, so
            # nothing is kept; the caller gets the runner's error (503 QUEUE_FULL).
            self._reserved.pop(deployment_id, None)
            await self.db.execute(delete(deployments).where(deployments.c.id == deployment_id))
            shutil.rmtree(self._project_dir(deployment_id), ignore_errors=True)
            raise
        self._jobs[deployment_id] = job.id
        await self._audit(
            "toolbox.deploy",
            actor,
            deployment_id,
            ip,
            {"serviceId": template.id, "serviceName": request.service_name, "autoStart": request.auto_start},
        )
        return {
            "deployment_id": deployment_id,
            "deploymentId": deployment_id,
            "status": "pending",
            "jobId": job.id,
            "message": f"Deployment '{request.service_name}' initiated",
        }

    async def _project_taken_by_other(self, row: Deployment) -> bool:
        other = await self.db.first(
            select(deployments.c.id).where(
                deployments.c.project_name == row.project_name,
                deployments.c.id != row.id,
                deployments.c.status != "failed",
            )
        )
        return other is not None

    async def _check_project_free(self, project: str) -> None:
        existing = await self.db.first(
            select(deployments.c.id, deployments.c.service_name).where(
                deployments.c.project_name == project, deployments.c.status != "failed"
            )
        )
        if existing is not None:
            raise Conflict(
                f"A deployment named '{existing.service_name}' already exists ({existing.id}); "
                "remove it first",
                code="DEPLOYMENT_EXISTS",
            )

    async def _render(
        self,
        template: Template,
        project: str,
        env: dict[str, str],
        request: DeployRequest,
        deployment_id: str,
    ) -> dict[str, Any]:
        """The template as Compose loads it with the user's values, plus Nekzus' own settings."""
        try:
            rendered = await self.compose.config([template.path], project, cwd=template.path.parent, env=env)
        except ComposeFailed as exc:
            raise Invalid(f"Invalid deployment request: {exc.message}", code="INVALID_REQUEST") from None
        services = rendered.get("services") or {}
        primary = services.get(template.primary_service)
        if primary is None:
            raise Invalid("template has no primary service", code="INVALID_REQUEST")
        if request.custom_image:
            primary["image"] = request.custom_image
        if request.custom_port is not None:
            ports = primary.get("ports") or []
            if not ports:
                raise Invalid("this service publishes no port to customise", code="INVALID_PORT")
            ports[0]["published"] = str(request.custom_port)
        for service in services.values():
            labels = service.get("labels") or {}
            labels["nekzus.toolbox.deployment"] = deployment_id
            labels["nekzus.toolbox.service"] = template.id
            service["labels"] = labels
            service.setdefault("restart", "unless-stopped")
        for volume in (rendered.get("volumes") or {}).values():
            if isinstance(volume, dict) and not volume.get("external"):
                volume.setdefault("labels", {})["nekzus.toolbox"] = "true"
        return rendered

    # -- deploy: the background part -------------------------------------------------------------------

    def progress_reporter(self, deployment_id: str) -> Progress:
        """The default progress callback: persist the phase and publish it to WebSocket clients."""

        async def report(phase: str, percent: int) -> None:
            await self._update(deployment_id, phase=phase, progress=percent)
            self.bus.emit(
                DEPLOY_PROGRESS, {"deploymentId": deployment_id, "phase": phase, "percent": percent}
            )

        return report

    def _job_work(self, deployment_id: str) -> Callable[[JobContext], Awaitable[None]]:
        """The runner job of one deployment: `execute`, its progress mirrored on the job."""
        report = self.progress_reporter(deployment_id)

        async def work(ctx: JobContext) -> None:
            async def progress(phase: str, percent: int) -> None:
                ctx.progress(percent=percent, phase=phase)
                await report(phase, percent)

            try:
                error = await self.execute(deployment_id, progress)
            finally:
                self._jobs.pop(deployment_id, None)
            if error is not None:
                raise JobFailed(error)

        return work

    def _job_skipped(self, deployment_id: str) -> Callable[[Job], Awaitable[None]]:
        """A deployment whose job was cancelled while still queued: recorded failed, ports released."""

        async def skipped(_job: Job) -> None:
            self._jobs.pop(deployment_id, None)
            self._reserved.pop(deployment_id, None)
            if deployment_id in self._removing:
                return
            message = "Deployment cancelled before it started"
            await self._update(deployment_id, status="failed", phase="failed", error_message=message)
            self.bus.emit(
                DEPLOY_FAILED,
                {"deploymentId": deployment_id, "status": "failed", "error": message},
            )

        return skipped

    async def _audit(self, action: str, actor: str, target: str, ip: str, details: dict[str, Any]) -> None:
        if self.audit is None:
            return
        try:
            await self.audit.record(action, actor=actor, target=target, ip=ip, details=details)
        except Exception:
            log.warning("audit of %s failed", action, exc_info=True)

    async def execute(self, deployment_id: str, progress: Progress) -> str | None:
        """Bring one recorded deployment up; a failed deployment is rolled back and recorded, and its
        error returned (None when it is deployed). Cancelled, it rolls back too, then re-raises."""
        try:
            return await self._execute(deployment_id, progress)
        finally:
            self._reserved.pop(deployment_id, None)

    async def _execute(self, deployment_id: str, progress: Progress) -> str | None:
        row = await self._row(deployment_id)
        await self._update(deployment_id, status="deploying")
        phase = ["starting"]

        async def step(name: str, percent: int) -> None:
            phase[0] = name
            await progress(name, percent)

        created_volumes: set[str] = set()
        try:
            async with asyncio.timeout(DEPLOY_TIMEOUT):
                result = await self._bring_up(row, step, created_volumes)
        except (DeployError, ComposeFailed, NekzusError, TimeoutError, OSError) as exc:
            if isinstance(exc, TimeoutError):
                message = f"Deployment {phase[0]} timed out after {int(DEPLOY_TIMEOUT // 60)}m0s"
            else:
                message = str(getattr(exc, "message", "") or exc) or type(exc).__name__
            await self._fail(row, message, created_volumes)
            return message
        except asyncio.CancelledError:
            # Cancelled through the job API (or by shutdown): roll back like a failure, unless the
            # deployment is being removed anyway. A second cancellation (shutdown's last resort) cuts the
            # rollback short; the start-up recovery then finishes it.
            if deployment_id not in self._removing:
                await self._fail(row, f"Deployment cancelled while {phase[0]}", created_volumes)
            raise
        except Exception as exc:
            log.exception("deployment %s failed unexpectedly", deployment_id)
            message = f"Unexpected error: {type(exc).__name__}"
            await self._fail(row, message, created_volumes)
            return message
        await self._update(
            deployment_id,
            status="deployed",
            phase="completed",
            progress=100,
            deployed_at=_now(),
            container_id=result.get("container_id"),
            container_name=result.get("container_name"),
            route_id=result.get("route_id"),
            error_message=result.get("warning"),
        )
        await progress("completed", 100)
        self.bus.emit(
            DEPLOY_COMPLETED,
            {
                "deploymentId": deployment_id,
                "serviceId": row.service_template_id,
                "serviceName": row.service_name,
                "status": "deployed",
                "started": row.auto_start,
                "routeId": result.get("route_id"),
            },
        )
        return None

    def _compose_args(self, row: Deployment) -> list[str]:
        return ["-p", row.project_name, "-f", str(self._project_dir(row.id) / "docker-compose.json")]

    async def _bring_up(self, row: Deployment, step: Progress, created_volumes: set[str]) -> dict[str, Any]:
        folder = self._project_dir(row.id)
        project = json.loads((folder / "docker-compose.json").read_text(encoding="utf-8"))
        base = self._compose_args(row)
        await step("validating", 5)
        await self.compose.run([*base, "config", "--quiet"], cwd=folder)
        await self._pull_missing(row, project, step)
        before = await self._project_volumes(row.project_name)
        await step("creating", 50)
        try:
            await self.compose.run([*base, "up", "--no-start", "--pull", "never"], cwd=folder)
        finally:
            created_volumes.update(await self._project_volumes(row.project_name) - before)
        if row.auto_start:
            await step("starting", 75)
            started = await self.compose.run([*base, "start"], cwd=folder)
            await self._verify_started(row.project_name, started.stderr)
        container = await self._primary_container(row)
        result: dict[str, Any] = dict(container)
        if self.auto_route and self.routes is not None:
            await step("routing", 90)
            try:
                result["route_id"] = await self._create_route(row, project)
            except Exception as exc:
                message = str(getattr(exc, "message", "") or exc)
                log.warning("auto route for %s not created: %s", row.id, message)
                result["warning"] = f"Deployed, but the route was not created: {message}"
        return result

    async def _verify_started(self, project: str, stderr: str) -> None:
        """`compose start` exits 0 even when a container fails to start: check every container's state."""
        for info in await self._project_containers(project):
            state = str(info.get("State") or "")
            if state in ("running", "restarting") or (state == "exited" and "(0)" in str(info.get("Status"))):
                continue
            service = (info.get("Labels") or {}).get("com.docker.compose.service", "?")
            errors = [line.strip() for line in stderr.splitlines() if "Error" in line]
            detail = errors[-1][:500] if errors else f"state {state or 'unknown'}"
            raise DeployError(f"Service {service} did not start: {detail}")

    async def _pull_missing(self, row: Deployment, project: dict[str, Any], step: Progress) -> None:
        services = project.get("services") or {}
        missing: list[tuple[str, str]] = []
        for name, service in services.items():
            image = str(service.get("image") or "")
            if not image:
                raise DeployError(f"service {name} has no image")
            if not await self._image_present(image):
                missing.append((name, image))
        if not missing:
            await step("pulling", 40)
            return
        for index, (name, image) in enumerate(missing):
            await step("pulling", 10 + int(30 * index / len(missing)))
            try:
                await self.compose.run(
                    [*self._compose_args(row), "pull", "--quiet", name],
                    cwd=self._project_dir(row.id),
                    timeout=540,
                )
            except ComposeFailed as exc:
                raise DeployError(
                    f"Image {image} is not available locally and could not be pulled: {exc.message}"
                ) from None
            # Some pull failures are only warnings to Compose: trust the engine, not the exit status.
            if not await self._image_present(image):
                raise DeployError(f"Image {image} is not available locally and could not be pulled")
        await step("pulling", 40)

    async def _image_present(self, image: str) -> bool:
        from aiodocker.exceptions import DockerError

        try:
            await self.docker.images.inspect(image)
        except DockerError as exc:
            if exc.status == 404:
                return False
            raise DeployError(f"Docker engine error: {exc.message}") from None
        return True

    async def _project_volumes(self, project: str) -> set[str]:
        data = await self.docker.volumes.list(filters={"label": [f"{_PROJECT_LABEL}={project}"]})
        return {str(v["Name"]) for v in (data.get("Volumes") or [])}

    async def _project_containers(self, project: str) -> list[dict[str, Any]]:
        result = await self.docker.containers.list(
            all=True, filters={"label": [f"{_PROJECT_LABEL}={project}"]}
        )
        # The listing fields a deployment reads, through the container's public item access.
        keys = ("Id", "Names", "State", "Status", "Labels")
        return [{k: c[k] for k in keys if k in c} for c in result]

    async def _primary_container(self, row: Deployment) -> dict[str, Any]:
        template = self.templates.get(row.service_template_id)
        primary = template.primary_service if template else None
        containers = await self._project_containers(row.project_name)
        chosen = None
        for info in containers:
            if (info.get("Labels") or {}).get("com.docker.compose.service") == primary:
                chosen = info
                break
        if chosen is None and containers:
            chosen = containers[0]
        if chosen is None:
            raise DeployError("Compose created no containers")
        names = chosen.get("Names") or [""]
        return {"container_id": str(chosen.get("Id", ""))[:12], "container_name": str(names[0]).lstrip("/")}

    async def _create_route(self, row: Deployment, project: dict[str, Any]) -> str | None:
        template = self.templates.get(row.service_template_id)
        if template is None:
            return None
        service = (project.get("services") or {}).get(template.primary_service) or {}
        ports = [p for p in service.get("ports") or [] if str(p.get("published") or "").isdigit()]
        if not ports:
            return None
        labels = {str(k): str(v) for k, v in (service.get("labels") or {}).items()}
        wanted = labels.get("nekzus.primary_port", "")
        port = next((p for p in ports if str(p.get("target")) == wanted), ports[0])
        host = str(port.get("host_ip") or "")
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        app_id = row.project_name
        path = labels.get("nekzus.route.path") or f"/apps/{app_id}/"

        def flag(name: str, default: bool) -> bool:
            value = labels.get(name, "").strip().lower()
            return default if not value else value == "true"

        route_id = f"route_{app_id}"
        await self.routes.register(
            {
                "id": app_id,
                "name": row.service_name,
                "icon": labels.get("nekzus.app.icon") or template.icon,
                "tags": ["toolbox", template.category],
            },
            {
                "routeId": route_id,
                "appId": app_id,
                "pathBase": path,
                "to": f"http://{host}:{port['published']}",
                "stripPrefix": flag("nekzus.route.strip_prefix", True),
                "rewriteHTML": flag("nekzus.route.rewrite_html", True),
                "websocket": flag("nekzus.route.websocket", False),
            },
            actor=row.deployed_by or "system",
        )
        return route_id

    async def _fail(self, row: Deployment, message: str, created_volumes: set[str]) -> None:
        log.info("deployment %s failed: %s", row.id, message)
        try:
            await self._down(row.id, row.project_name, remove_volumes=False)
            for name in sorted(created_volumes):
                volume = await self.docker.volumes.get(name)
                await volume.delete()
        except Exception:
            log.warning("rollback of %s incomplete", row.id, exc_info=True)
        await self._update(row.id, status="failed", phase="failed", error_message=message)
        self.bus.emit(
            DEPLOY_FAILED,
            {
                "deploymentId": row.id,
                "serviceId": row.service_template_id,
                "serviceName": row.service_name,
                "status": "failed",
                "error": message,
            },
        )

    async def _down(self, deployment_id: str, project: str, *, remove_volumes: bool) -> None:
        folder = self._project_dir(deployment_id)
        compose_file = folder / "docker-compose.json"
        args = ["-p", project]
        if compose_file.is_file():
            args += ["-f", str(compose_file)]
        args += ["down", "--remove-orphans", "--timeout", "5"]
        if remove_volumes:
            args.append("--volumes")
        await self.compose.run(args, cwd=folder if folder.is_dir() else self.data_dir)

    # -- delete ------------------------------------------------------------------------------------------

    async def remove(
        self, deployment_id: str, *, remove_volumes: bool, actor: str = "system", ip: str = ""
    ) -> None:
        row = await self._row(deployment_id)
        self._removing.add(deployment_id)
        try:
            await self._remove(row, remove_volumes=remove_volumes, actor=actor, ip=ip)
        finally:
            self._removing.discard(deployment_id)

    async def _remove(self, row: Deployment, *, remove_volumes: bool, actor: str, ip: str) -> None:
        deployment_id = row.id
        job_id = self._jobs.get(deployment_id)
        if job_id is not None and self.jobs.cancel(job_id):
            with contextlib.suppress(TimeoutError, NotFound):
                await asyncio.wait_for(self.jobs.wait(job_id), 10)
        try:
            # A failed deployment was rolled back already, and its project name may now belong to a
            # newer deployment of the same name: only take the project down when it is still ours.
            if not await self._project_taken_by_other(row):
                await self._down(row.id, row.project_name, remove_volumes=remove_volumes)
        except ComposeFailed as exc:
            raise NekzusError(
                f"Could not remove the deployment: {exc.message}", code="DELETE_FAILED"
            ) from None
        if row.route_id and self.routes is not None:
            try:
                await self.routes.delete_route(row.route_id)
            except Exception:
                log.warning("route %s of %s not removed", row.route_id, row.id, exc_info=True)
        await self.db.execute(delete(deployments).where(deployments.c.id == deployment_id))
        shutil.rmtree(self._project_dir(deployment_id), ignore_errors=True)
        await self._audit(
            "toolbox.remove",
            actor,
            deployment_id,
            ip,
            {"serviceName": row.service_name, "removeVolumes": remove_volumes},
        )
