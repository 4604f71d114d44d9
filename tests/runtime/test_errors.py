"""Runtime errors carry their API status, code and caller-facing message themselves (no router translates
them): an unknown runtime name is a 400 `INVALID_RUNTIME`, a missing container a 404 that names no ids."""

from __future__ import annotations

import pytest

from nekzus.errors import Invalid, NekzusError
from nekzus.runtime.base import ContainerNotFound
from nekzus.runtime.manager import RuntimeManager, UnknownRuntime


def test_unknown_runtime_is_an_invalid_request() -> None:
    with pytest.raises(UnknownRuntime) as caught:
        RuntimeManager().get("podman")
    exc = caught.value
    assert isinstance(exc, Invalid) and exc.status == 400 and exc.code == "INVALID_RUNTIME"
    assert exc.message == "runtime must be 'docker' or 'kubernetes'" and exc.name == "podman"


def test_container_not_found_hides_the_lookup_from_the_caller() -> None:
    exc = ContainerNotFound("namespace secret-ns is not managed by Nekzus")
    assert isinstance(exc, NekzusError) and exc.status == 404 and exc.code == "CONTAINER_NOT_FOUND"
    assert exc.message == "container not found"
    assert "secret-ns" in str(exc) and "secret-ns" in exc.detail
    assert ContainerNotFound().message == "container not found"
