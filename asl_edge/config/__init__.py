"""Configuration: typed dataclasses, YAML presets and ActionFormer-compatible loading."""

from .loader import (
    DEFAULT_PRESET,
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
    merge_dicts,
    preset_names,
    problems_message,
    save_config,
)
from .schema import (
    Config,
    DatasetConfig,
    LoaderConfig,
    ModelConfig,
    OptConfig,
    SensitivityConfig,
    TCAConfig,
    TestConfig,
    TrainConfig,
)

__all__ = [
    "Config",
    "ConfigError",
    "DEFAULT_PRESET",
    "DatasetConfig",
    "LoaderConfig",
    "ModelConfig",
    "OptConfig",
    "SensitivityConfig",
    "TCAConfig",
    "TestConfig",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "merge_dicts",
    "preset_names",
    "problems_message",
    "save_config",
]
