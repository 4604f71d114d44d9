"""Nekzus: a secure gateway for the home lab."""

from __future__ import annotations

__version__ = "1.0.0"
API_VERSION = "v1"
BUILD_DATE = "2026-11-27"
