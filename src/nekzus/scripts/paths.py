"""Where a registered script may live: only regular files inside `scripts.directory`.

A path with a `..` component is refused outright; any other path (relative, or absolute under the
directory) is resolved with every symlink followed and must still be inside the directory's real path,
so a symlink pointing out of it is refused too. Resolution is repeated before every run, so a file
swapped for an escaping symlink after registration does not run either.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path, PurePosixPath

from nekzus.errors import Invalid

__all__ = ["command_for", "resolve_in", "scan", "script_type"]

MAX_SCAN = 5000


def resolve_in(root: Path, given: str) -> tuple[str, Path]:
    """(path relative to the directory, real path) or Invalid (INVALID_PATH / SCRIPT_NOT_FOUND)."""
    text = str(given or "").strip()
    if not text:
        raise Invalid("scriptPath is required", code="MISSING_PATH")
    if "\x00" in text or "\\" in text:
        raise Invalid("Invalid script path", code="INVALID_PATH")
    pure = PurePosixPath(text)
    if ".." in pure.parts:
        raise Invalid("Script path must stay inside the scripts directory", code="INVALID_PATH")
    real_root = root.resolve()
    if pure.is_absolute():
        relative = None
        for base in (PurePosixPath(os.path.abspath(root)), PurePosixPath(real_root)):
            try:
                relative = pure.relative_to(base)
                break
            except ValueError:
                continue
        if relative is None:
            raise Invalid("Script path must be inside the scripts directory", code="INVALID_PATH")
        pure = relative
    if not pure.parts:
        raise Invalid("Script path names the scripts directory itself", code="INVALID_PATH")
    real = (real_root / pure).resolve()
    if not real.is_relative_to(real_root):
        raise Invalid("Script path resolves outside the scripts directory", code="INVALID_PATH")
    if not real.is_file():
        raise Invalid("Script file not found", code="SCRIPT_NOT_FOUND")
    return pure.as_posix(), real


def script_type(path: str) -> str:
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in (".sh", ".bash"):
        return "shell"
    if suffix == ".py":
        return "python"
    return "go_binary"  # anything else is executed directly (the old service's name for it)


def command_for(real: Path, kind: str, python: str) -> list[str]:
    """The argv that runs a script file: bash for shell, python3 for python, the file itself otherwise."""
    if kind == "shell":
        return ["/bin/bash", str(real)]
    if kind == "python":
        return [python, str(real)]
    if not os.access(real, os.X_OK):
        raise Invalid("Script file is not executable", code="SCRIPT_NOT_EXECUTABLE")
    return [str(real)]


def split_dry_run(root: Path, command: str) -> tuple[str, list[str]]:
    """A dry-run command: a file inside the directory plus arguments, split like a shell would but
    never run through one (`check.sh --verbose`)."""
    try:
        words = shlex.split(command)
    except ValueError:
        raise Invalid("dryRunCommand is not a valid command line", code="INVALID_DRY_RUN_COMMAND") from None
    if not words:
        raise Invalid("dryRunCommand is empty", code="INVALID_DRY_RUN_COMMAND")
    relative, _real = resolve_in(root, words[0])
    return relative, words[1:]


def scan(root: Path, registered: set[str]) -> list[dict[str, object]]:
    """Files under the directory (dotfiles skipped, symlinks that leave it skipped) not yet registered."""
    found: list[dict[str, object]] = []
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(real_root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or len(found) >= MAX_SCAN:
                continue
            full = Path(dirpath) / name
            try:
                real = full.resolve()
                if not real.is_relative_to(real_root) or not real.is_file():
                    continue
                stat = real.stat()
            except OSError:
                continue
            relative = full.relative_to(real_root).as_posix()
            if relative in registered:
                continue
            found.append(
                {
                    "path": relative,
                    "name": name,
                    "scriptType": script_type(relative),
                    "size": stat.st_size,
                    "modTime": stat.st_mtime,
                }
            )
    return found
