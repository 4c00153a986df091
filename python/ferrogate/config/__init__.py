"""Configuration: the schema (:mod:`.model`) and the YAML loader (:mod:`.loader`)."""

from ferrogate.config.errors import ConfigError
from ferrogate.config.loader import default_config, load_config, load_config_text
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
