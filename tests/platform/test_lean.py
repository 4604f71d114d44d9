"""`nekzus.lean`, in fresh interpreters: uvicorn runs without its command line until something asks for
it, and FastAPI works with pydantic's v1 package hidden."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_uvicorn_serves_without_its_command_line_until_asked() -> None:
    out = python(
        """
import sys
from nekzus.lean import keep_out_unused_imports
keep_out_unused_imports()
import uvicorn
import uvicorn.server
print(uvicorn.Server is uvicorn.server.Server, uvicorn.Config.__module__, "click" in sys.modules)
# Anything else of uvicorn.main (here a constant) loads the real module in the stand-in's place.
print(uvicorn.main.__module__, type(sys.modules["uvicorn.main"]).__name__, "click" in sys.modules)
real = sys.modules["uvicorn.main"]
print(real.STARTUP_FAILURE, sys.modules["uvicorn.main"] is real, "click" in sys.modules)
"""
    )
    assert out.splitlines() == [
        "True uvicorn.config False",
        "nekzus.lean _UvicornMain False",
        "3 False True",
    ]


def test_the_command_line_entry_points_still_reach_uvicorn() -> None:
    out = python(
        """
from nekzus.lean import keep_out_unused_imports
keep_out_unused_imports()
import uvicorn
try:
    uvicorn.run("no_such_module:app")  # the real uvicorn.run: it cannot import the app (exit 3)
except SystemExit as exc:
    print("exit", exc.code)
"""
    )
    assert out.splitlines()[-1] == "exit 3"


def test_fastapi_works_with_pydantic_v1_hidden() -> None:
    out = python(
        """
import asyncio, json
from nekzus.lean import keep_out_unused_imports
keep_out_unused_imports()
from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel

class Item(BaseModel):
    name: str

app = FastAPI()

@app.post("/items", response_model=Item)
async def create(item: Item) -> Item:
    return item

try:
    import pydantic.v1
except ImportError:
    print("hidden")

async def call(body: bytes) -> tuple[int, bytes]:
    sent = []
    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}
    async def send(message):
        sent.append(message)
    scope = {"type": "http", "method": "POST", "path": "/items", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json")], "scheme": "http",
             "server": ("127.0.0.1", 80)}
    await app(scope, receive, send)
    return sent[0]["status"], sent[1]["body"]

print(*asyncio.run(call(b'{"name": "lamp"}')))
print(asyncio.run(call(b'{"name": 5}'))[0])
print(json.dumps(jsonable_encoder(Item(name="x"))))
"""
    )
    assert out.splitlines() == ["hidden", '200 b\'{"name":"lamp"}\'', "422", '{"name": "x"}']


def test_what_is_already_imported_stays() -> None:
    out = python(
        """
import sys
import uvicorn
import pydantic.v1
from nekzus.lean import keep_out_unused_imports
keep_out_unused_imports()
print(type(sys.modules["uvicorn.main"]).__name__, sys.modules["pydantic.v1"] is not None)
"""
    )
    assert out == "module True"
