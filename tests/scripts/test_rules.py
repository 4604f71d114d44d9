"""Pure rules of the scripts domain: parameter validation, environment names, paths in the directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nekzus.errors import Invalid
from nekzus.scripts.params import build_environment, check_env_name, parse_specs, validate_values
from nekzus.scripts.paths import resolve_in, scan, script_type
from nekzus.scripts.service import slug


def test_slug() -> None:
    assert slug("Backup Database") == "backup-database"
    assert slug("  ../etc/Passwd! ") == "etcpasswd"
    assert slug("日本") == ""


@pytest.mark.parametrize(
    "name",
    [
        "PATH",
        "path",
        "LD_PRELOAD",
        "ld_library_path",
        "PYTHONPATH",
        "pythonstartup",
        "BASH_ENV",
        "IFS",
        "DRY_RUN",
        "NEKZUS_X",
        "BASH_FUNC_x%%",
        "1abc",
        "a-b",
        "",
        "GLIBC_TUNABLES",
        "NODE_OPTIONS",
    ],
)
def test_reserved_or_malformed_names(name: str) -> None:
    with pytest.raises(Invalid):
        check_env_name(name)


def test_values_types_defaults_and_environment() -> None:
    specs = parse_specs(
        [
            {"name": "target", "required": True, "validation": "[a-z]+"},
            {"name": "verbose", "type": "boolean", "default": False},
            {"name": "ratio", "type": "number"},
            {"name": "level", "type": "select", "options": ["low", "high"], "default": "low"},
        ]
    )
    values = validate_values(specs, {"target": "db", "verbose": "1", "ratio": 0.5})
    assert values == {"target": "db", "verbose": "true", "ratio": "0.5", "level": "low"}
    env = build_environment("/srv/scripts", {"FIXED": "1"}, values, dry_run=True, execution_id="exec_1")
    assert env["TARGET"] == "db" and env["DRY_RUN"] == "true" and env["FIXED"] == "1"
    assert env["PATH"].startswith("/usr/local/sbin") and env["HOME"] == "/srv/scripts"
    for bad in (
        {"target": "db1"},
        {"target": "db", "ratio": "nan"},
        {"target": "db", "verbose": "maybe"},
        {"target": "x\x00y"},
        {"target": "db", "level": "mid"},
        {"other": "1", "target": "db"},
    ):
        with pytest.raises(Invalid):
            validate_values(specs, bad)
    with pytest.raises(Invalid):
        parse_specs([{"name": "n", "type": "integer", "default": "ten"}])


def test_paths_stay_inside(tmp_path: Path) -> None:
    root = tmp_path / "scripts"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.sh").write_text("echo a\n")
    (tmp_path / "outside.sh").write_text("echo out\n")
    os.symlink(tmp_path / "outside.sh", root / "link.sh")
    os.symlink(root / "sub" / "a.sh", root / "inner.sh")
    assert resolve_in(root, "sub/a.sh")[0] == "sub/a.sh"
    assert resolve_in(root, str(root / "sub" / "a.sh"))[0] == "sub/a.sh"
    assert resolve_in(root, "inner.sh")[1] == (root / "sub" / "a.sh").resolve()
    for bad, code in (
        ("../outside.sh", "INVALID_PATH"),
        ("link.sh", "INVALID_PATH"),
        ("/etc/hosts", "INVALID_PATH"),
        ("sub", "SCRIPT_NOT_FOUND"),
        ("", "MISSING_PATH"),
        ("sub\\a.sh", "INVALID_PATH"),
    ):
        with pytest.raises(Invalid) as info:
            resolve_in(root, bad)
        assert info.value.code == code, bad
    found = {item["path"] for item in scan(root, {"inner.sh"})}
    assert found == {"sub/a.sh"}
    assert (script_type("x.sh"), script_type("x.py"), script_type("x")) == ("shell", "python", "go_binary")
