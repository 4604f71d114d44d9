"""`configs/config.example.yaml` shows every key of the config model with its real default, and every
environment variable the README names exists in the loader."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from nekzus.compose import UNBUILT_SECTIONS, unbuilt_enabled
from nekzus.config import Config, loader

ROOT = Path(__file__).resolve().parents[2]
# Keys the example leaves out on purpose: lists of entries (shown as commented examples) and
# flags set only from the command line or the environment.
NOT_IN_EXAMPLE = {"apps", "routes", "insecure_http", "debug", "debug_tokens", "environment"}
_KEY_LINE = re.compile(r"^#( {0,})([a-z_][a-z0-9_]*:.*|- .*)$")


def _uncommented() -> dict[str, Any]:
    lines = []
    for line in (ROOT / "configs" / "config.example.yaml").read_text().splitlines():
        match = _KEY_LINE.match(line)
        if match:
            text = match.group(1)[1:] + match.group(2)
            lines.append(re.sub(r"\s+#\s.*$", "", text))
    data: dict[str, Any] = yaml.safe_load("\n".join(lines)) or {}
    return data


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        for key, child in value.items():
            _flatten(child, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value
    return out


def _normalise(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def test_example_shows_every_key_with_its_default() -> None:
    raw = _uncommented()
    shown = _flatten(raw, "", {})
    parsed = _flatten(Config.model_validate(raw).model_dump(), "", {})
    defaults = _flatten(Config().model_dump(), "", {})
    missing, wrong = [], []
    for key, default in defaults.items():
        if key.split(".")[0] in NOT_IN_EXAMPLE:
            continue
        if key not in shown and not any(k.startswith(key + ".") for k in shown):
            missing.append(key)
            continue
        if _normalise(parsed.get(key)) != _normalise(default):
            wrong.append(f"{key}: example {shown.get(key)!r}, model {default!r}")
    assert not missing, f"keys missing from the example: {missing}"
    assert not wrong, f"example values that are not the defaults: {wrong}"


def test_readme_env_vars_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"\b(NEKZUS_[A-Z_]+)\b", readme))
    source = Path(loader.__file__).read_text()
    known = {name for name in named if f'"{name}"' in source}
    assert named - known == set(), f"README names variables the loader does not read: {named - known}"


def test_unbuilt_sections_are_named() -> None:
    raw: dict[str, Any] = {"scripts": {"enabled": True}, "discovery": {"mdns": {"enabled": True}}}
    for section in UNBUILT_SECTIONS:
        node = raw
        for part in section.split("."):
            node = node.setdefault(part, {})
        node["enabled"] = True
    cfg = Config.model_validate(raw)
    assert unbuilt_enabled(cfg) == list(UNBUILT_SECTIONS)  # built sections (scripts, mDNS) are not named
    assert "scripts" not in UNBUILT_SECTIONS and "discovery.mdns" not in UNBUILT_SECTIONS
    assert unbuilt_enabled(Config()) == []
