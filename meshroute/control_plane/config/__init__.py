"""The configuration platform teams write: models, loading, and cross-object checks."""

from meshroute.control_plane.config.errors import ConfigError, ConfigErrors
from meshroute.control_plane.config.loader import load_config
from meshroute.control_plane.config.model import Agent, Config, Gateway

__all__ = ["Agent", "Config", "ConfigError", "ConfigErrors", "Gateway", "load_config"]
