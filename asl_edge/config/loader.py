"""Reading, validating and writing configurations (YAML <-> typed dataclasses)."""

from __future__ import annotations

import copy
import dataclasses
import typing
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import yaml

from ..outputs import atomic_output
from .schema import Config

PRESET_DIR = Path(__file__).resolve().parent / "presets"
DEFAULT_PRESET = "thumos_i3d"


class ConfigError(ValueError):
    """A configuration file or dictionary that does not fit the schema."""


def problems_message(what: str, problems: Sequence[str]) -> str:
    """One message for every problem found in ``what``: one line per problem, then their count
    when there are several."""
    count = f"\n({len(problems)} problems in {what})" if len(problems) > 1 else ""
    return "\n".join(problems) + count


def preset_names() -> list:
    """Names of the built-in presets (``thumos_i3d``, ``anet_tsp``, ...)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_config(source: Union[str, Path, None] = None, overrides: Optional[Mapping] = None) -> Config:
    """Load a configuration.

    ``source`` is a preset name, a YAML file (ours or ActionFormer's, merged onto
    ActionFormer's defaults) or None for the default preset. ``overrides`` is a nested
    mapping applied last. Unknown keys and wrong types raise :class:`ConfigError`.
    """
    if source is None:
        source = DEFAULT_PRESET
    path = Path(source)
    if not path.is_file():
        if str(source) in preset_names():
            path = PRESET_DIR / f"{source}.yaml"
        else:
            raise ConfigError(
                f"config {str(source)!r} is neither a file nor a preset "
                f"(presets: {', '.join(preset_names())})"
            )
    data = _read_yaml(path)
    if overrides:
        data = merge_dicts(data, overrides)
    return config_from_dict(data, origin=str(path))


def _read_yaml(path: Path) -> Dict[str, Any]:
    try:
        with open(path, "r", encoding="utf-8") as fd:
            data = yaml.safe_load(fd)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def merge_dicts(base: Mapping, update: Mapping) -> Dict[str, Any]:
    """Deep merge: values of ``update`` win; nested mappings are merged key by key."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_dicts(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def config_from_dict(data: Mapping, origin: str = "config") -> Config:
    """Build a :class:`Config` from a (partial) nested mapping over the defaults."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origin}: expected a mapping, got {type(data).__name__}")
    try:
        return _build_dataclass(Config, data, prefix="")
    except ConfigError as err:
        raise ConfigError(f"{origin}: {err}") from None


def config_to_dict(config: Config) -> Dict[str, Any]:
    """Plain nested dict (lists, numbers, strings) of a configuration."""
    return dataclasses.asdict(config)


def save_config(config: Config, path: Union[str, Path]) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as fd:
        yaml.safe_dump(config_to_dict(config), fd, sort_keys=False)


def _build_dataclass(cls, data: Mapping, prefix: str):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        where = prefix.rstrip(".") or "top level"
        raise ConfigError(
            f"unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(prefix + str(k)) for k in unknown)} "
            f"(allowed in {where}: {', '.join(names)})"
        )
    kwargs = {name: _convert(data[name], hints[name], prefix + name) for name in names if name in data}
    return cls(**kwargs)


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Union:
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(value, tp, key: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return _build_dataclass(tp, value, prefix=key + ".")
    if origin is Union:
        if value is None and type(None) in args:
            return None
        for option in args:
            if option is type(None):
                continue
            try:
                return _convert(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
        return [_convert(item, args[0], f"{key}[{i}]") for i, item in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # PyYAML reads exponents without a dot (1e-4) as strings
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Any:
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
