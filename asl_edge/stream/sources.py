"""A site's camera list, one file for every box: ``asl-edge stream --sources cameras.yaml``.

::

    cameras:
      - name: dock-1                    # unique: events carry it as their "stream"
        uri: rtsp://10.0.0.21/live
      - name: gate
        uri: v4l2:///dev/video0
        options: {hop: 4, min_score: 0.2}   # optional, see PER_STREAM_OPTIONS

Each box runs the same file with ``--shard K/N`` (or as rank K of a torchrun of N processes) and
takes the cameras that :class:`asl_edge.sharding.Shard` gives shard K, by name: every camera runs on
exactly one box, and adding or removing a camera can move others (restart every box with the new
file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

import yaml

from ..sharding import Shard
from ..video import VideoError, parse_uri
from .engine import PER_STREAM_OPTIONS, StreamError

# what each per-camera option must be (its range is checked by the runner)
OPTION_TYPES = {"hop": int, "min_score": (int, float)}


@dataclass(frozen=True)
class Camera:
    """One entry of a camera list: ``name`` (unique), ``uri`` and the options it sets for itself."""

    name: str
    uri: str
    options: Dict[str, Any] = field(default_factory=dict)


def load_cameras(path: str) -> List[Camera]:
    """The cameras of the YAML file ``path``, in its order; a StreamError naming the file and the
    entry (its position and name) for anything malformed."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise StreamError(f"--sources {path}: cannot read it ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        raise StreamError(f"--sources {path}: not valid YAML ({err})") from None
    if not isinstance(data, dict) or set(data) != {"cameras"} or not isinstance(data["cameras"], list):
        raise StreamError(f"--sources {path}: expected one key, 'cameras', holding a list of "
                          "{name, uri[, options]} entries")
    if not data["cameras"]:
        raise StreamError(f"--sources {path}: the camera list is empty")
    cameras: List[Camera] = []
    seen: Dict[str, int] = {}
    for number, entry in enumerate(data["cameras"], 1):
        label = f"--sources {path}: camera {number}"
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            label += f" ({entry['name']!r})"
        camera = _camera(entry, label)
        if camera.name in seen:
            raise StreamError(f"{label}: the name is camera {seen[camera.name]}'s too; names must be unique")
        seen[camera.name] = number
        cameras.append(camera)
    return cameras


def _camera(entry: Any, label: str) -> Camera:
    if not isinstance(entry, dict):
        raise StreamError(f"{label}: expected a mapping with name and uri, got {entry!r}")
    unknown = sorted(set(entry) - {"name", "uri", "options"})
    if unknown:
        raise StreamError(f"{label}: unknown key(s) {', '.join(map(str, unknown))} (an entry has name, uri, options)")
    for key in ("name", "uri"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise StreamError(f"{label}: '{key}' must be a non-empty string, got {entry.get(key)!r}")
    try:
        parse_uri(entry["uri"])
    except VideoError as err:
        raise StreamError(f"{label}: {err}") from None
    options = entry.get("options") or {}
    if not isinstance(options, dict):
        raise StreamError(f"{label}: 'options' must be a mapping, got {options!r}")
    for key, value in options.items():
        if key not in PER_STREAM_OPTIONS:
            raise StreamError(f"{label}: option {key!r} cannot be set per camera "
                              f"(only {', '.join(PER_STREAM_OPTIONS)})")
        if isinstance(value, bool) or not isinstance(value, OPTION_TYPES[key]):
            raise StreamError(f"{label}: option {key} must be a number{'' if key != 'hop' else ' of features'}, "
                              f"got {value!r}")
    return Camera(entry["name"], entry["uri"], dict(options))


def cameras_of_shard(cameras: List[Camera], shard: Shard, path: str) -> List[Camera]:
    """The cameras shard ``shard`` runs (by name); a StreamError when it has none."""
    mine = shard.take(cameras, key=lambda camera: camera.name)
    if not mine:
        raise StreamError(f"--sources {path}: shard {shard} has no camera: the list has {len(cameras)}, fewer than "
                          f"the {shard.count} shards")
    return mine
