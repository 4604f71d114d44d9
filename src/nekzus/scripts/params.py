"""Script parameters: their declarations, validation of supplied values and the child's environment.

Parameters reach a script only as environment variables named after the parameter in upper case
(`output_dir` → `OUTPUT_DIR`). Names must fit `[A-Z_][A-Z0-9_]*` and may not be one the loader, the
shell or an interpreter reads (PATH, HOME, LD_*, PYTHON*, BASH_ENV, …): a parameter can never change what
program runs or how it loads. The same rule holds for a script's fixed `environment`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nekzus.errors import Invalid

__all__ = [
    "ParamSpec",
    "base_environment",
    "build_environment",
    "check_env_name",
    "parse_specs",
    "validate_values",
]

ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_RESERVED = frozenset(
    {
        "PATH",
        "HOME",
        "DRY_RUN",
        "IFS",
        "ENV",
        "BASH_ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "CDPATH",
        "GLOBIGNORE",
        "SHELL",
        "TMPDIR",
        "TZDIR",
        "GCONV_PATH",
        "GETCONF_DIR",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "LOCPATH",
        "NLSPATH",
        "RESOLV_HOST_CONF",
        "RES_OPTIONS",
        "GLIBC_TUNABLES",
        "PERL5LIB",
        "PERL5OPT",
        "PERLLIB",
        "RUBYLIB",
        "RUBYOPT",
        "NODE_OPTIONS",
        "NODE_PATH",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "CLASSPATH",
        "LUA_PATH",
        "LUA_CPATH",
        "OPENSSL_CONF",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    }
)
_RESERVED_PREFIXES = ("LD_", "PYTHON", "DYLD_", "BASH_FUNC_", "MALLOC_", "NEKZUS_", "GCONV_")
TYPES = ("string", "number", "integer", "boolean", "select")
MAX_VALUE = 4096
MAX_PARAMS = 64


def check_env_name(name: str, what: str = "parameter") -> str:
    """The environment variable for `name`, or Invalid when it is malformed or reserved."""
    env = str(name).upper()
    if not ENV_NAME.match(env) or len(env) > 128:
        raise Invalid(f"{what} name {name!r} must match [A-Za-z_][A-Za-z0-9_]*", code="INVALID_PARAMS")
    if env in _RESERVED or env.startswith(_RESERVED_PREFIXES):
        raise Invalid(
            f"{what} name {name!r} is reserved (it would change how the script runs)", code="INVALID_PARAMS"
        )
    return env


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    label: str
    description: str
    type: str
    required: bool
    default: Any
    options: tuple[str, ...]
    validation: str

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "required": self.required,
        }
        if self.description:
            out["description"] = self.description
        if self.default is not None:
            out["default"] = self.default
        if self.options:
            out["options"] = list(self.options)
        if self.validation:
            out["validation"] = self.validation
        return out


def parse_specs(raw: Any) -> list[ParamSpec]:
    """Validate parameter declarations (at registration); Invalid(INVALID_PARAMS) on any problem."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_PARAMS:
        raise Invalid(
            f"parameters must be a list of at most {MAX_PARAMS} declarations", code="INVALID_PARAMS"
        )
    specs: list[ParamSpec] = []
    seen: set[str] = set()
    for item in raw:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise Invalid("each parameter needs a name", code="INVALID_PARAMS")
        name = item["name"]
        env = check_env_name(name)
        if env in seen:
            raise Invalid(f"parameter {name!r} is declared twice", code="INVALID_PARAMS")
        seen.add(env)
        kind = str(item.get("type") or "string")
        if kind not in TYPES:
            raise Invalid(
                f"parameter {name!r}: type must be one of {', '.join(TYPES)}", code="INVALID_PARAMS"
            )
        options = item.get("options") or []
        if not isinstance(options, list) or not all(isinstance(o, str | int | float) for o in options):
            raise Invalid(f"parameter {name!r}: options must be a list of values", code="INVALID_PARAMS")
        validation = str(item.get("validation") or "")
        if validation:
            if len(validation) > 500:
                raise Invalid(f"parameter {name!r}: validation pattern too long", code="INVALID_PARAMS")
            try:
                re.compile(validation)
            except re.error:
                raise Invalid(
                    f"parameter {name!r}: invalid validation pattern", code="INVALID_PARAMS"
                ) from None
        spec = ParamSpec(
            name=name,
            label=str(item.get("label") or name),
            description=str(item.get("description") or ""),
            type=kind,
            required=bool(item.get("required", False)),
            default=item.get("default"),
            options=tuple(str(o) for o in options),
            validation=validation,
        )
        if spec.default is not None:
            _coerce(spec, spec.default)
        specs.append(spec)
    return specs


def _coerce(spec: ParamSpec, value: Any) -> str:
    """The value as the environment string, or Invalid when it does not fit the declaration."""
    bad = Invalid(f"parameter {spec.name!r} must be a {spec.type}", code="INVALID_PARAMS")
    if spec.type == "boolean":
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            text = "true" if value.lower() in ("true", "1") else "false"
        else:
            raise bad
    elif spec.type == "integer":
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise bad
        try:
            text = str(int(str(value).strip()))
        except ValueError:
            raise bad from None
    elif spec.type == "number":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise bad
        try:
            number = float(str(value).strip())
        except ValueError:
            raise bad from None
        if number != number or number in (float("inf"), float("-inf")):
            raise bad
        text = str(value).strip()
    else:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise bad
        text = str(value)
    if len(text) > MAX_VALUE or "\x00" in text:
        raise Invalid(f"parameter {spec.name!r} is too long or contains a NUL byte", code="INVALID_PARAMS")
    if spec.options and text not in spec.options:
        raise Invalid(
            f"parameter {spec.name!r} must be one of: {', '.join(spec.options)}", code="INVALID_PARAMS"
        )
    if spec.validation and re.fullmatch(spec.validation, text) is None:
        raise Invalid(f"parameter {spec.name!r} does not match its validation pattern", code="INVALID_PARAMS")
    return text


def validate_values(specs: list[ParamSpec], given: Mapping[str, Any] | None) -> dict[str, str]:
    """Supplied values checked against the declarations, defaults applied: {parameter name: value}.

    Undeclared parameters are refused, so a caller can only set what the script declared.
    """
    given = dict(given or {})
    by_name = {spec.name: spec for spec in specs}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        raise Invalid(f"unknown parameter(s): {', '.join(unknown)}", code="INVALID_PARAMS")
    values: dict[str, str] = {}
    for spec in specs:
        value = given.get(spec.name)
        if value is None or value == "":
            if spec.default is not None:
                values[spec.name] = _coerce(spec, spec.default)
            elif spec.required:
                raise Invalid(f"parameter {spec.name!r} is required", code="INVALID_PARAMS")
            continue
        values[spec.name] = _coerce(spec, value)
    return values


def check_environment(raw: Any) -> dict[str, str]:
    """A script's fixed environment: names follow the parameter rule, values are strings."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or len(raw) > MAX_PARAMS:
        raise Invalid("environment must be an object of at most 64 variables", code="INVALID_PARAMS")
    out: dict[str, str] = {}
    for key, value in raw.items():
        name = check_env_name(str(key), "environment variable")
        if name != key:
            raise Invalid(f"environment variable {key!r} must be upper case", code="INVALID_PARAMS")
        if (
            not isinstance(value, str | int | float | bool)
            or "\x00" in str(value)
            or len(str(value)) > MAX_VALUE
        ):
            raise Invalid(f"environment variable {key!r} must be a short string", code="INVALID_PARAMS")
        out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def base_environment(home: str) -> dict[str, str]:
    return {"PATH": SAFE_PATH, "HOME": home, "LANG": "C.UTF-8"}


def build_environment(
    home: str, fixed: Mapping[str, str], values: Mapping[str, str], *, dry_run: bool, execution_id: str
) -> dict[str, str]:
    """Only what the script should see: a fixed PATH/HOME, its environment, its parameters, DRY_RUN."""
    env = base_environment(home)
    env.update(fixed)
    for name, value in values.items():
        env[check_env_name(name)] = value
    env["DRY_RUN"] = "true" if dry_run else "false"
    env["NEKZUS_EXECUTION_ID"] = execution_id
    return env
