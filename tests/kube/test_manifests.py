"""The test objects are real manifests: every one validates against the Kubernetes OpenAPI schemas
(kubernetes-validate ships them; nothing is downloaded) for each version the code targets."""

from __future__ import annotations

import kubernetes_validate
import pytest

from tests.kube import objects

TARGETED = ["1.29", "1.30", "1.31", "1.32", "1.33"]


@pytest.mark.parametrize("version", TARGETED)
def test_manifests_validate(version: str) -> None:
    for obj in objects.all_objects():
        kubernetes_validate.validate(obj, version, strict=True)
