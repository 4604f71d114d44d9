"""Component health: a registry each feature plugs its check into."""

from __future__ import annotations

from nekzus.health.registry import ComponentHealth, HealthRegistry, Status

__all__ = ["ComponentHealth", "HealthRegistry", "Status"]
