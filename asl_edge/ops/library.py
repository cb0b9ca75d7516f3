"""Finding and loading the native op library, and choosing between native and reference ops.

``asl-edge build-ext`` installs ``libasl_edge_torch_ops.so`` (and, with TensorRT, the plugin
library) into :func:`native_dir`. The environment variable ``ASL_EDGE_OPS`` picks the
implementation: ``auto`` (default) uses the native op when the library loaded and has a kernel
for the tensor's device and dtype, ``reference`` always uses pure PyTorch, ``native`` requires
the library and fails loudly without it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

import torch

TORCH_OPS_LIBRARY = "libasl_edge_torch_ops.so"
TRT_PLUGIN_LIBRARY = "libasl_edge_trt_plugins.so"
BUILD_INFO = "build_info.json"
MODES = ("auto", "reference", "native")

# dtypes each device's kernels accept
_NATIVE_DTYPES = {
    "cpu": {"tca_attention": (torch.float32, torch.float64), "nms1d": (torch.float32,)},
    "cuda": {"tca_attention": (torch.float32, torch.float16), "nms1d": (torch.float32,)},
}


class NativeOpsError(RuntimeError):
    """The native ops were required (``ASL_EDGE_OPS=native``) but cannot be used."""


@dataclass
class NativeState:
    """What loading the torch op library found."""

    path: Path
    loaded: bool = False
    reason: str = ""
    devices: Dict[str, bool] = field(default_factory=dict)
    build_info: Optional[dict] = None


_state: Optional[NativeState] = None
_autograd_registered = False


def native_dir() -> Path:
    """Folder of the native libraries: ``$ASL_EDGE_NATIVE_DIR`` or ``asl_edge/_native``."""
    override = os.environ.get("ASL_EDGE_NATIVE_DIR")
    return Path(override) if override else Path(__file__).resolve().parent.parent / "_native"


def ops_mode() -> str:
    """The value of ``ASL_EDGE_OPS`` (default ``auto``); anything else is an error."""
    mode = os.environ.get("ASL_EDGE_OPS", "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise NativeOpsError(f"ASL_EDGE_OPS must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def _has_kernel(op: str, key: str) -> bool:
    return bool(torch._C._dispatch_has_kernel_for_dispatch_key(f"asl_edge::{op}", key))


def native_state() -> NativeState:
    """Load the torch op library once and report what happened."""
    global _state
    if _state is not None:
        return _state
    path = native_dir() / TORCH_OPS_LIBRARY
    state = NativeState(path=path)
    info_path = path.parent / BUILD_INFO
    if info_path.is_file():
        try:
            state.build_info = json.loads(info_path.read_text())
        except (OSError, ValueError):
            state.build_info = None
    if not path.is_file():
        state.reason = f"{path} does not exist (build it with `asl-edge build-ext`)"
    else:
        try:
            torch.ops.load_library(str(path))
        except (OSError, RuntimeError) as err:
            built_with = (state.build_info or {}).get("torch")
            hint = f"; it was built for torch {built_with}, this is torch {torch.__version__}" \
                if built_with and built_with != torch.__version__ else ""
            state.reason = f"{path} failed to load: {err}{hint} (rebuild with `asl-edge build-ext`)"
        else:
            state.loaded = True
            state.devices = {"cpu": _has_kernel("tca_attention", "CPU"),
                             "cuda": _has_kernel("tca_attention", "CUDA")}
            _register_autograd()
    _state = state
    return state


def use_native(op: str, tensor: torch.Tensor) -> bool:
    """Whether ``op`` on ``tensor``'s device and dtype should run natively under ``ASL_EDGE_OPS``."""
    mode = ops_mode()
    if mode == "reference":
        return False
    state = native_state()
    device = tensor.device.type
    if mode == "native":
        if not state.loaded:
            raise NativeOpsError(f"ASL_EDGE_OPS=native but the native ops are unavailable: {state.reason}")
        if not state.devices.get(device, False):
            raise NativeOpsError(f"ASL_EDGE_OPS=native but the native library has no {device} kernels "
                                 f"(built with CUDA: {(state.build_info or {}).get('cuda', 'unknown')})")
        return True
    return (state.loaded and state.devices.get(device, False)
            and tensor.dtype in _NATIVE_DTYPES.get(device, {}).get(op, ()))


def _register_autograd() -> None:
    """Make the native attention differentiable: its backward is that of the reference."""
    global _autograd_registered
    if _autograd_registered:
        return
    _autograd_registered = True
    from .tca_attention import tca_attention_reference

    def setup_context(ctx, inputs, output):
        q, k, v, mask, num_heads, window, theta, channel_scale = inputs
        ctx.save_for_backward(q, k, v, mask)
        ctx.attrs = (num_heads, window, theta, channel_scale)

    def backward(ctx, grad_out):
        q, k, v, mask = ctx.saved_tensors
        inputs = [t.detach().requires_grad_(needs) for t, needs in zip((q, k, v), ctx.needs_input_grad[:3])]
        with torch.enable_grad():
            out = tca_attention_reference(*inputs, mask, *ctx.attrs)
            wanted = [t for t in inputs if t.requires_grad]
            grads = iter(torch.autograd.grad(out, wanted, grad_out)) if wanted else iter(())
        dq, dk, dv = (next(grads) if t.requires_grad else None for t in inputs)
        return dq, dk, dv, None, None, None, None, None

    torch.library.register_autograd("asl_edge::tca_attention", backward, setup_context=setup_context)
