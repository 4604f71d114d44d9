"""Code the server process never runs, kept out of its memory (a gateway runs on small machines: idle RSS
is a target, see bench/startup.py).

Two imports are kept out:

- `uvicorn.main`: importing any part of uvicorn runs `uvicorn/__init__.py`, which imports the `uvicorn`
  command line with it: click, the auto-reloader (watchfiles, a Rust library) and the multiprocess
  supervisor (multiprocessing), ~2 MiB. Nekzus builds `uvicorn.Config` and `uvicorn.Server` itself and
  forks its own workers. A stand-in module takes the place of `uvicorn.main` before uvicorn is first
  imported: it hands out the real `Server` class and loads the real module only if something asks for
  anything else (`uvicorn.run`, `uvicorn.main`).
- `pydantic.v1`: FastAPI imports pydantic's legacy v1 package (~1.5 MiB) to check every route's types
  for v1 models, which it refuses anyway. Nekzus has none; with the package hidden those checks answer
  "not a v1 model" (they catch the ImportError, as for a pydantic built without it).

PyJWT's optional `cryptography` import is handled where PyJWT is imported (`nekzus.auth.tokens`).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class _UvicornMain(types.ModuleType):
    """Stands in for `uvicorn.main` (see the module docstring)."""

    def __getattr__(self, name: str) -> Any:
        if name == "Server":
            from uvicorn.server import Server

            return Server
        if name.startswith("__"):  # the import system probing it (`__path__`, ...): a plain module
            raise AttributeError(name)
        return getattr(_real_uvicorn_main(), name)

    @staticmethod
    def main(*args: Any, **kwargs: Any) -> Any:
        return _real_uvicorn_main().main(*args, **kwargs)

    @staticmethod
    def run(*args: Any, **kwargs: Any) -> Any:
        return _real_uvicorn_main().run(*args, **kwargs)


def _real_uvicorn_main() -> types.ModuleType:
    if isinstance(sys.modules.get("uvicorn.main"), _UvicornMain):
        del sys.modules["uvicorn.main"]
    return importlib.import_module("uvicorn.main")


def keep_out_unused_imports() -> None:
    """Install both; call before FastAPI builds routes and before uvicorn is first imported. What is
    already imported stays as it is."""
    if "uvicorn" not in sys.modules and "uvicorn.main" not in sys.modules:
        sys.modules["uvicorn.main"] = _UvicornMain("uvicorn.main")
    if "pydantic.v1" not in sys.modules:
        sys.modules["pydantic.v1"] = None  # type: ignore[assignment]  # importing it raises ImportError
