"""Configuration: the schema (:mod:`.model`) and the YAML loader (:mod:`.loader`)."""

from ferrogate.config.loader import ConfigError, default_config, load_config, load_config_text
from ferrogate.config.model import Config, Deployment, ModelGroup, ServerSettings, Upstream

__all__ = [
    "Config",
    "ConfigError",
    "Deployment",
    "ModelGroup",
    "ServerSettings",
    "Upstream",
    "default_config",
    "load_config",
    "load_config_text",
]
