"""Checkpoints: asl-edge's own format and import of ActionFormer's ``.pth.tar`` files.

asl-edge checkpoint = ``torch.save`` of a dict with plain types only::

    {"format": "asl-edge-checkpoint", "format_version": 1,
     "config": <nested dict of the Config, class names in dataset.class_names>,
     "state_dict": {name: tensor}, "meta": {...}}

Every load uses ``torch.load(..., weights_only=True)``: nothing is unpickled beyond tensors
and containers.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor

from ..compute import resolve_device
from ..config import Config, ConfigError, config_from_dict, config_to_dict
from ..outputs import atomic_output
from .network import ASLNetwork, validate_config

FORMAT = "asl-edge-checkpoint"
FORMAT_VERSION = 1
# the format tag of a run's training state (checkpoints/last.pt, written by asl_edge.train)
TRAINING_STATE_FORMAT = "asl-edge-training-state"


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint, or weights that do not fit the model."""


@dataclasses.dataclass
class Checkpoint:
    model: ASLNetwork
    config: Config
    meta: Dict[str, Any]

    @property
    def class_names(self) -> List[str]:
        return class_names(self.config)


def class_names(config: Config) -> List[str]:
    """Class names of a config, ``class_<id>`` where the config names none."""
    names = config.dataset.class_names
    if names is None:
        return [f"class_{i}" for i in range(config.dataset.num_classes)]
    return list(names)


def read_torch_file(path: Union[str, Path], what: str = "asl-edge checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU. A missing, foreign or damaged file is a
    one-line CheckpointError; torch's own message stays in the chained exception (its advice to
    retry with ``weights_only=False`` must not be followed for a file of unknown origin)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"{path} is not an {what} or is damaged (torch.load with weights_only=True "
                              f"refused it: {type(err).__name__})") from err


def save_checkpoint(model: ASLNetwork, config: Config, path: Union[str, Path],
                    meta: Optional[Mapping[str, Any]] = None) -> None:
    """Write an asl-edge checkpoint (config, class names inside it, weights, metadata); a config
    that :func:`validate_config` refuses is a CheckpointError and nothing is written."""
    try:
        validate_config(config)
    except ConfigError as err:
        raise CheckpointError(f"cannot save {path}: {err}") from None
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config_to_dict(config),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "meta": dict(meta or {}),
    }
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> Checkpoint:
    """Load an asl-edge checkpoint into an ``ASLNetwork`` in eval mode on ``device`` (a DeviceError,
    before the file is read, when there is no such device)."""
    device = resolve_device(device)
    payload = read_torch_file(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        if isinstance(payload, dict) and payload.get("format") == TRAINING_STATE_FORMAT:
            raise CheckpointError(f"{path} is a training state (a run's checkpoints/last.pt), not an asl-edge "
                                  "checkpoint: use the run's model.pt, which holds its EMA weights (asl-edge eval "
                                  "takes either)")
        keys = sorted(payload)[:8] if isinstance(payload, dict) else type(payload).__name__
        hint = ""
        if isinstance(payload, dict) and ("state_dict_ema" in payload or "state_dict" in payload):
            hint = " It looks like an ActionFormer checkpoint: convert it with `asl-edge import-checkpoint`."
        raise CheckpointError(f"{path} is not an asl-edge checkpoint (found {keys}).{hint}")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {payload.get('format_version')} is not supported "
            f"(this asl-edge reads version {FORMAT_VERSION})"
        )
    try:
        config = config_from_dict(payload["config"], origin=f"{path} (config)")
        model = ASLNetwork(config)
    except ConfigError as err:
        raise CheckpointError(f"{path}: its config cannot be built: {err}") from None
    load_weights(model, payload["state_dict"], source=str(path))
    model.eval().to(device)
    return Checkpoint(model=model, config=config, meta=dict(payload.get("meta", {})))


def load_weights(model: ASLNetwork, state_dict: Mapping[str, Tensor], source: str) -> None:
    """Copy ``state_dict`` into ``model``; any missing, unexpected or mis-shaped entry is an error
    that lists every difference."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or wrong_shape:
        lines = [f"{source}: weights do not fit the model built from the config"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:20])
                             + (" ..." if len(items) > 20 else ""))
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(dict(state_dict), strict=True)


# ActionFormer parameter names (after stripping "module.") -> ours. Patterns are anchored.
_ACTIONFORMER_RULES: List[Tuple[str, str]] = [
    (r"backbone\.proj\.(\d+)\.conv\.(weight|bias)", r"embedding.stream_proj.\1.\2"),
    (r"backbone\.embd\.(\d+)\.conv\.(weight|bias)", r"embedding.layers.\1.conv.\2"),
    (r"backbone\.embd_norm\.(\d+)\.(weight|bias)", r"embedding.layers.\1.norm.\2"),
    (r"backbone\.(stem|branch)\.(\d+)\.ln1\.(weight|bias)", r"\1.\2.attn_norm.\3"),
    (r"backbone\.(stem|branch)\.(\d+)\.ln2\.(weight|bias)", r"\1.\2.mlp_norm.\3"),
    (r"backbone\.(stem|branch)\.(\d+)\.attn\.query_conv\.conv\.weight", r"\1.\2.attn.q_conv.weight"),
    (r"backbone\.(stem|branch)\.(\d+)\.attn\.key_conv\.conv\.weight", r"\1.\2.attn.k_conv.weight"),
    (r"backbone\.(stem|branch)\.(\d+)\.attn\.value_conv\.conv\.weight", r"\1.\2.attn.v_conv.weight"),
    (r"backbone\.(stem|branch)\.(\d+)\.attn\.query_norm\.(weight|bias)", r"\1.\2.attn.q_norm.\3"),
    (r"backbone\.(stem|branch)\.(\d+)\.attn\.key_norm\.(weight|bias)", r"\1.\2.attn.k_norm.\3"),
    (r"backbone\.(stem|branch)\.(\d+)\.attn\.value_norm\.(weight|bias)", r"\1.\2.attn.v_norm.\3"),
    (r"backbone\.(stem|branch)\.(\d+)\.attn\.query\.(weight|bias)", r"\1.\2.attn.q_proj.\3"),
    (r"backbone\.(stem|branch)\.(\d+)\.attn\.key\.(weight|bias)", r"\1.\2.attn.k_proj.\3"),
    (r"backbone\.(stem|branch)\.(\d+)\.attn\.value\.(weight|bias)", r"\1.\2.attn.v_proj.\3"),
    (r"backbone\.(stem|branch)\.(\d+)\.attn\.proj\.(weight|bias)", r"\1.\2.attn.out_proj.\3"),
    (r"backbone\.(stem|branch)\.(\d+)\.mlp\.0\.(weight|bias)", r"\1.\2.mlp.fc1.\3"),
    (r"backbone\.(stem|branch)\.(\d+)\.mlp\.3\.(weight|bias)", r"\1.\2.mlp.fc2.\3"),
    (r"backbone\.(stem|branch)\.(\d+)\.drop_path_attn\.scale", r"\1.\2.attn_residual.scale"),
    (r"backbone\.(stem|branch)\.(\d+)\.drop_path_mlp\.scale", r"\1.\2.mlp_residual.scale"),
    (r"neck\.fpn_norms\.(\d+)\.(weight|bias)", r"neck.\1.\2"),
    (r"(cls_head|reg_head)\.head\.(\d+)\.conv\.(weight|bias)", r"\1.layers.\2.conv.\3"),
    (r"(cls_head|reg_head)\.norm\.(\d+)\.(weight|bias)", r"\1.layers.\2.norm.\3"),
    (r"cls_head\.cls_head\.conv\.(weight|bias)", r"cls_head.classifier.\1"),
    (r"reg_head\.offset_head\.conv\.(weight|bias)", r"reg_head.regressor.\1"),
]
_ACTIONFORMER_LEVEL_SCALE = re.compile(r"reg_head\.scale\.(\d+)\.scale")
_ACTIONFORMER_RULES_COMPILED = [(re.compile(p + r"\Z"), r) for p, r in _ACTIONFORMER_RULES]


def actionformer_to_asl_state_dict(af_state: Mapping[str, Tensor], num_levels: int,
                                   source: str = "checkpoint") -> Dict[str, Tensor]:
    """Rename an ActionFormer state dict (``module.`` prefixes allowed) to asl-edge names."""
    out: Dict[str, Tensor] = {}
    level_scales: Dict[int, Tensor] = {}
    unknown = []
    for key, value in af_state.items():
        if not isinstance(value, Tensor):
            raise CheckpointError(f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor")
        name = key[len("module."):] if key.startswith("module.") else key
        scale = _ACTIONFORMER_LEVEL_SCALE.match(name)
        if scale and scale.end() == len(name):
            level_scales[int(scale.group(1))] = value
            continue
        for pattern, replacement in _ACTIONFORMER_RULES_COMPILED:
            if pattern.match(name):
                out[pattern.sub(replacement, name)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(
            f"{source}: {len(unknown)} ActionFormer entries have no counterpart in asl-edge: "
            + ", ".join(unknown[:20]) + (" ..." if len(unknown) > 20 else "")
            + " (relative position encoding and the conv backbone are not supported)"
        )
    if level_scales:
        missing_levels = [lv for lv in range(num_levels) if lv not in level_scales]
        if missing_levels or len(level_scales) != num_levels:
            raise CheckpointError(
                f"{source}: reg_head.scale has levels {sorted(level_scales)}, the model has {num_levels}"
            )
        out["reg_head.level_scales"] = torch.stack([level_scales[lv].reshape(()) for lv in range(num_levels)])
    return out


def from_actionformer_checkpoint(path: Union[str, Path], config: Config, use_ema: bool = True) -> Checkpoint:
    """The ASL network for ``config`` with the weights of an ActionFormer ``.pth.tar``.

    ActionFormer has no channel branch, so the network and the returned config are
    ``actionformer_config(config)`` (``tca.theta = 0``); pass the config ActionFormer was
    trained with (its own YAML works). ``use_ema`` picks ``state_dict_ema`` (the weights
    ActionFormer evaluates) over ``state_dict``; a file without EMA weights falls back to
    ``state_dict`` with a warning. The model is returned in eval mode. The config is validated
    (ConfigError listing every problem) before the file is read.
    """
    config = actionformer_config(config)
    validate_config(config)
    payload = read_torch_file(path, "ActionFormer checkpoint")
    if isinstance(payload, dict) and payload.get("format") in (FORMAT, TRAINING_STATE_FORMAT):
        what = "checkpoint" if payload["format"] == FORMAT else "training state"
        raise CheckpointError(f"{path} is already an asl-edge {what}, not an ActionFormer one: it needs no import "
                              "(infer, eval and export take an asl-edge model.pt as it is)")
    key = "state_dict_ema" if use_ema else "state_dict"
    if isinstance(payload, dict) and key not in payload and "state_dict" in payload and use_ema:
        warnings.warn(f"{path} has no EMA weights; importing 'state_dict'")
        key = "state_dict"
    if not isinstance(payload, dict) or key not in payload:
        found = sorted(payload)[:8] if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path} is not an ActionFormer checkpoint: no {key!r} entry (found {found})")
    model = ASLNetwork(config)
    state = actionformer_to_asl_state_dict(payload[key], len(model.strides), source=f"{path} [{key}]")
    load_weights(model, state, source=f"{path} [{key}]")
    model.eval()
    return Checkpoint(model=model, config=config,
                      meta={"source": "actionformer", "source_file": str(path), "weights": key})


def actionformer_config(config: Config) -> Config:
    """Copy of ``config`` with the channel branch off: the network ActionFormer trained."""
    config = copy.deepcopy(config)
    config.model.tca.theta = 0.0
    return config
