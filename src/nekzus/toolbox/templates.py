"""The toolbox catalog: `<serviceId>/docker-compose.yml` templates described by `nekzus.toolbox.*` labels.

A template is accepted only when the real Compose loader accepts it (with placeholder values for its
required variables) and its primary service names itself (`nekzus.toolbox.name`) and a category. The
primary service is the first service in file order that carries `nekzus.toolbox.name`.

Variables are the `${NAME}` / `${NAME:-default}` references in the raw file: a reference without a
default (or with `:?`) is required; the type is guessed from the name (secrets are `password`, ports
`number`) so a client can render a form.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nekzus.toolbox.compose import Compose, ComposeFailed

log = logging.getLogger("nekzus.toolbox")

BUNDLED_DIR = Path(__file__).parent / "catalog"
COMPOSE_FILE = "docker-compose.yml"
SERVICE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
VAR_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# `$${X}` is an escaped dollar, not a reference.
_REFERENCE = re.compile(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)(?:(:?[-?])([^}]*))?\}")
_LABEL_PREFIXES = ("GF_", "PIHOLE_", "UPTIME_", "MEMOS_")
# Filled in by the deployment itself, never asked from the user.
_AUTOMATIC = {"SERVICE_NAME", "BASE_URL"}
_META = "nekzus.toolbox."
_VALIDATE_CONCURRENCY = 4


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    description: str
    type: str
    required: bool
    default: str | None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "description": self.description,
            "type": self.type,
            "required": self.required,
        }
        if self.default is not None:
            out["default"] = self.default
        return out


@dataclass
class Template:
    id: str
    name: str
    category: str
    description: str
    path: Path
    primary_service: str
    image: str
    variables: list[Variable]
    source: str
    icon: str = ""
    tags: list[str] = field(default_factory=list)
    documentation: str = ""
    image_url: str = ""
    repository_url: str = ""
    website: str = ""
    difficulty: str = "beginner"
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def default_port(self) -> int | None:
        for var in self.variables:
            if (var.name == "PORT" or var.name.endswith("_PORT")) and var.default and var.default.isdigit():
                return int(var.default)
        return None

    @property
    def port_variable(self) -> str | None:
        for var in self.variables:
            if var.name == "PORT" or var.name.endswith("_PORT"):
                return var.name
        return None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "category": self.category,
            "icon": self.icon,
            "difficulty": self.difficulty,
            "tags": list(self.tags),
            "image": self.image,
            "env_vars": [v.as_json() for v in self.variables],
            "source": self.source,
        }
        for key in ("documentation", "image_url", "repository_url", "website"):
            value = getattr(self, key)
            if value:
                out[key] = value
        port = self.default_port
        if port is not None:
            out["default_port"] = port
        return out


def variable_label(name: str) -> str:
    for prefix in _LABEL_PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            name = name[len(prefix) :]
            break
    return " ".join(word.capitalize() for word in name.split("_") if word)


def variable_type(name: str) -> str:
    lowered = name.lower()
    if any(word in lowered for word in ("password", "secret", "token")):
        return "password"
    if "port" in lowered:
        return "number"
    return "text"


def infer_variables(raw: str) -> list[Variable]:
    """Every variable the file references, first occurrence wins, in file order."""
    seen: dict[str, Variable] = {}
    # Comments are not interpolated by Compose, so references there are not variables.
    text = "\n".join(line for line in raw.splitlines() if not line.lstrip().startswith("#"))
    for match in _REFERENCE.finditer(text):
        name, operator, value = match.group(1), match.group(2), match.group(3)
        if name in seen or name in _AUTOMATIC:
            continue
        has_default = operator in (":-", "-")
        label = variable_label(name)
        seen[name] = Variable(
            name=name,
            label=label,
            description=f"Configuration for {label}",
            type=variable_type(name),
            required=not has_default,
            default=value if has_default else None,
        )
    return list(seen.values())


def placeholders(variables: list[Variable]) -> dict[str, str]:
    """Stand-in values so the loader can check a template whose required variables are still unknown."""
    values = {"SERVICE_NAME": "toolbox-validate", "BASE_URL": "http://127.0.0.1"}
    for var in variables:
        if var.required:
            values[var.name] = "1" if var.type == "number" else "placeholder"
    return values


def _service_order(raw: str) -> list[str]:
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError:
        return []
    services = data.get("services") if isinstance(data, dict) else None
    return [str(name) for name in services] if isinstance(services, dict) else []


def _labels(service: dict[str, Any]) -> dict[str, str]:
    labels = service.get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def primary_service(project: dict[str, Any], order: list[str]) -> str | None:
    services = project.get("services") or {}
    names = [n for n in order if n in services] + sorted(n for n in services if n not in order)
    for name in names:
        if _labels(services[name]).get(_META + "name"):
            return str(name)
    return str(names[0]) if names else None


async def load_template(service_id: str, path: Path, compose: Compose, source: str) -> Template | None:
    """Parse and validate one template; None (with a logged reason) when it is not usable."""
    try:
        raw = await asyncio.to_thread(path.read_text, encoding="utf-8")
    except OSError as exc:
        log.warning("toolbox template %s unreadable: %s", service_id, exc)
        return None
    variables = infer_variables(raw)
    try:
        project = await compose.config([path], service_id, cwd=path.parent, env=placeholders(variables))
    except ComposeFailed as exc:
        log.warning("toolbox template %s rejected by docker-compose: %s", service_id, exc.message)
        return None
    primary = primary_service(project, _service_order(raw))
    if primary is None:
        log.warning("toolbox template %s has no services", service_id)
        return None
    service = project["services"][primary]
    labels = _labels(service)
    name = labels.get(_META + "name", "").strip()
    category = labels.get(_META + "category", "").strip()
    if not name or not category:
        log.warning("toolbox template %s lacks nekzus.toolbox.name/category labels; skipped", service_id)
        return None
    tags = [t.strip() for t in labels.get(_META + "tags", "").split(",") if t.strip()]
    return Template(
        id=service_id,
        name=name,
        category=category,
        description=labels.get(_META + "description", "").strip(),
        path=path,
        primary_service=primary,
        image=str(service.get("image") or ""),
        variables=variables,
        source=source,
        icon=labels.get(_META + "icon", "").strip(),
        tags=tags,
        documentation=labels.get(_META + "documentation", "").strip(),
        image_url=labels.get(_META + "image_url", "").strip(),
        repository_url=labels.get(_META + "repository_url", "").strip(),
        website=labels.get(_META + "website", "").strip(),
        difficulty=labels.get(_META + "difficulty", "").strip() or "beginner",
        labels=labels,
    )


def _candidates(directory: Path) -> list[tuple[str, Path]]:
    if not directory.is_dir():
        return []
    found = []
    for child in sorted(directory.iterdir()):
        path = child / COMPOSE_FILE
        if child.is_dir() and SERVICE_ID.match(child.name) and path.is_file():
            found.append((child.name, path))
    return found


async def load_catalog(directories: list[tuple[Path, str]], compose: Compose) -> dict[str, Template]:
    """Templates from each directory in order; a later directory overrides an earlier one's id."""
    gate = asyncio.Semaphore(_VALIDATE_CONCURRENCY)

    async def one(service_id: str, path: Path, source: str) -> Template | None:
        async with gate:
            return await load_template(service_id, path, compose, source)

    jobs = [
        one(sid, path, source) for directory, source in directories for sid, path in _candidates(directory)
    ]
    catalog: dict[str, Template] = {}
    for template in await asyncio.gather(*jobs):
        if template is not None:
            catalog[template.id] = template
    return dict(sorted(catalog.items()))
