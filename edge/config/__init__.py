"""The site configuration: one TOML file, validated before the daemon starts."""
from edge.config.files import check, check_files, load_config, resolve
from edge.config.sections import (
    ApiSection, AreaPath, ConfigError, DoorSection, GateConfig, IoModuleSection, MqttSection, ReaderSection,
)

__all__ = ["ApiSection", "AreaPath", "ConfigError", "DoorSection", "GateConfig", "IoModuleSection", "MqttSection",
           "ReaderSection", "check", "check_files", "load_config", "resolve"]
