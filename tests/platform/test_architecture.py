"""The import graph: domain packages never import the HTTP routers or the composition root, and no two
packages import each other (directly or through others)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "nekzus"
DOMAINS = (
    "auth",
    "backup",
    "catalog",
    "certs",
    "config",
    "discovery",
    "events",
    "federation",
    "health",
    "jobs",
    "proxy",
    "runtime",
    "scripts",
    "store",
    "system",
)
WIRING = ("nekzus.api", "nekzus.app", "nekzus.compose", "nekzus.services")
# Known exceptions, each with its reason (none today: the proxy gets narrow collaborators too).
ALLOWED: set[tuple[str, str]] = set()


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports() -> dict[str, set[str]]:
    """module name -> modules it imports (including imports under TYPE_CHECKING)."""
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nekzus"):
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("nekzus"))
        graph[name] = found
    return graph


def test_domains_do_not_import_the_http_layer_or_the_wiring() -> None:
    bad = []
    for module, imported in _imports().items():
        if _package(module) not in DOMAINS:
            continue
        for target in imported:
            wiring = any(target == w or target.startswith(w + ".") for w in WIRING)
            if wiring and (module, target) not in ALLOWED:
                bad.append(f"{module} -> {target}")
    assert not bad, bad


def test_no_package_cycles() -> None:
    edges: dict[str, set[str]] = {}
    for module, imported in _imports().items():
        source = _package(module)
        if not source or (SRC / f"{source}.py").exists():
            continue  # top-level modules (app, compose, services, ...) are the wiring, not packages
        for target in imported:
            dest = _package(target)
            if dest and dest != source and (SRC / dest).is_dir():
                edges.setdefault(source, set()).add(dest)

    def reaches(start: str, goal: str) -> bool:
        seen, stack = set(), [start]
        while stack:
            node = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt == goal:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return False

    cycles = sorted(f"{a} <-> {b}" for a in edges for b in edges[a] if reaches(b, a))
    assert not cycles, cycles
