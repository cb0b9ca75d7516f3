"""The ASL network (pure PyTorch), its attention op and checkpoint I/O."""

from ..ops import tca_attention
from .attention import TemporalChannelAttention
from .checkpoint import (
    Checkpoint,
    CheckpointError,
    actionformer_config,
    class_names,
    from_actionformer_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from .network import (
    ASLNetwork,
    build_model,
    config_problems,
    input_channels,
    level_lengths,
    level_strides,
    padded_length,
    padding_unit,
    shortest_input_length,
    validate_config,
    window_sizes,
)

__all__ = [
    "ASLNetwork",
    "Checkpoint",
    "CheckpointError",
    "TemporalChannelAttention",
    "actionformer_config",
    "build_model",
    "class_names",
    "config_problems",
    "from_actionformer_checkpoint",
    "input_channels",
    "level_lengths",
    "level_strides",
    "load_checkpoint",
    "padded_length",
    "padding_unit",
    "save_checkpoint",
    "shortest_input_length",
    "tca_attention",
    "validate_config",
    "window_sizes",
]
