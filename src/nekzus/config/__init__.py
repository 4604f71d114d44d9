"""Configuration: typed model and loader."""

from __future__ import annotations

from nekzus.config.loader import ConfigError, load_config
from nekzus.config.model import Config, parse_duration, parse_rate

__all__ = ["Config", "ConfigError", "load_config", "parse_duration", "parse_rate"]
