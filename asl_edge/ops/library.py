"""Finding and loading the native op library, and choosing between native and reference ops.

``asl-edge build-ext`` installs ``libasl_edge_torch_ops.so`` (and, with TensorRT, the plugin
library) into :func:`native_dir`. The environment variable ``ASL_EDGE_OPS`` picks the
implementation: ``auto`` (default) uses the native op when the library loaded and has a kernel
for the tensor's device and dtype, ``reference`` always uses pure PyTorch, ``native`` requires
the library and fails loudly without it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence, Tuple

import torch

from .tca_reference import tca_attention_reference

TORCH_OPS_LIBRARY = "libasl_edge_torch_ops.so"
TRT_PLUGIN_LIBRARY = "libasl_edge_trt_plugins.so"
BUILD_INFO = "build_info.json"
MODES = ("auto", "reference", "native")

# dtypes each device's kernels accept for the data inputs (q, k, v / segments, scores)
_NATIVE_DTYPES = {
    "cpu": {"tca_attention": (torch.float32, torch.float64), "nms1d": (torch.float32,)},
    "cuda": {"tca_attention": (torch.float32, torch.float16), "nms1d": (torch.float32,)},
}
_LABEL_DTYPES = (torch.int64, torch.int32)


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
_forced_mode: Optional[str] = None
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
    built_for = (state.build_info or {}).get("torch")
    if not path.is_file():
        state.reason = f"{path} does not exist (build it with `asl-edge build-ext`)"
    elif built_for and built_for != torch.__version__:
        # a library built against another torch's C++ ABI may crash on load: do not try
        state.reason = (f"{path} was built for torch {built_for}, this is torch {torch.__version__} "
                        "(rebuild with `asl-edge build-ext`)")
    else:
        try:
            torch.ops.load_library(str(path))
        except (OSError, RuntimeError) as err:
            state.reason = f"{path} failed to load: {err} (rebuild with `asl-edge build-ext`)"
        else:
            state.loaded = True
            state.devices = {"cpu": _has_kernel("tca_attention", "CPU"),
                             "cuda": _has_kernel("tca_attention", "CUDA")}
            _register_autograd()
    _state = state
    return state


def load_at_import() -> None:
    """Load the library when ``asl_edge.ops`` is imported (unless ``ASL_EDGE_OPS=reference``), so
    that artifacts recorded with the native ops (``torch.export``, traces) load and
    ``torch.compile`` sees the ops. Problems are recorded in ``native_state()``, never raised."""
    try:
        if ops_mode() != "reference":
            native_state()
    except NativeOpsError:
        pass


def _unsupported(op: str, tensors: Sequence[torch.Tensor]) -> Optional[str]:
    """Why the native ``op`` cannot take these inputs, or None."""
    data, device = tensors[0], tensors[0].device
    if any(t.device != device for t in tensors):
        return "inputs on different devices " + ", ".join(str(t.device) for t in tensors)
    allowed = _NATIVE_DTYPES.get(device.type, {}).get(op, ())
    if op == "tca_attention":
        q, k, v, mask = tensors
        if data.dtype not in allowed or k.dtype != q.dtype or v.dtype != q.dtype:
            return f"q, k, v of dtypes {q.dtype}, {k.dtype}, {v.dtype} (supported on {device.type}: {allowed})"
        if mask.dtype != torch.bool:
            return f"mask of dtype {mask.dtype} (bool needed)"
    else:
        segments, scores, labels = tensors
        if segments.dtype not in allowed or scores.dtype not in allowed:
            return f"segments/scores of dtypes {segments.dtype}, {scores.dtype} (float32 needed)"
        if labels.dtype not in _LABEL_DTYPES:
            return f"labels of dtype {labels.dtype} (int64 or int32 needed)"
    if device.type == "cuda":
        capability = torch.cuda.get_device_capability(device)
        if not cuda_arch_supported(capability):
            return f"no kernel image for compute capability {capability}"
    return None


def cuda_arch_supported(capability: Tuple[int, int]) -> bool:
    """Whether the CUDA architectures of the build (build_info.json) run on this capability:
    a real architecture of the same major version at most this minor, or PTX of an older one.
    True when the build did not record its architectures."""
    return _archs_cover(str((native_state().build_info or {}).get("cuda_architectures") or ""), tuple(capability))


@functools.lru_cache(maxsize=None)
def _archs_cover(archs: str, capability: Tuple[int, int]) -> bool:
    if not archs:
        return True
    cc = capability[0] * 10 + capability[1]
    for entry in archs.split(";"):
        number, _, kind = entry.strip().partition("-")
        if not number.isdigit():
            continue
        arch = int(number)
        if kind != "virtual" and arch // 10 == cc // 10 and arch <= cc:
            return True
        if kind != "real" and arch <= cc:
            return True
    return False


@contextlib.contextmanager
def forced_ops(mode: str) -> Iterator[None]:
    """Within the block, decide as if ``ASL_EDGE_OPS`` were ``mode``; ``"trace"`` takes the
    native op for every input (graph capture, where only the shape kernels run: e.g. an fp16
    ONNX graph traced on a CPU) and raises NativeOpsError when the library is not loaded."""
    global _forced_mode
    if mode not in MODES + ("trace",):
        raise ValueError(f"forced_ops: unknown mode {mode!r}")
    previous, _forced_mode = _forced_mode, mode
    try:
        yield
    finally:
        _forced_mode = previous


def use_native(op: str, *tensors: torch.Tensor) -> bool:
    """Whether ``op`` on these input tensors should run natively under ``ASL_EDGE_OPS``: in
    ``auto`` mode when the library is loaded, has kernels for their device and supports their
    dtypes; ``native`` mode raises NativeOpsError instead of falling back."""
    mode = _forced_mode or ops_mode()
    if mode == "reference":
        return False
    state = native_state()
    if mode == "trace":
        if not state.loaded:
            raise NativeOpsError(f"{op} must be captured as the native op, which is unavailable: {state.reason}")
        return True
    device = tensors[0].device.type
    if not state.loaded:
        problem = f"the native ops are unavailable: {state.reason}"
    elif not state.devices.get(device, False):
        problem = (f"the native library has no {device} kernels (rebuild with `asl-edge build-ext"
                   f"{' --cuda' if device == 'cuda' else ''}`, against a torch with {device} support)")
    else:
        problem = _unsupported(op, tensors)
    if problem is None:
        return True
    if mode == "native":
        raise NativeOpsError(f"ASL_EDGE_OPS=native but {op} cannot run natively: {problem}")
    return False


def _register_autograd() -> None:
    """Make the native attention differentiable: its backward is that of the reference."""
    global _autograd_registered
    if _autograd_registered:
        return
    _autograd_registered = True

    def setup_context(ctx, inputs, output):
        q, k, v, mask, num_heads, window, theta, channel_scale = inputs
        ctx.save_for_backward(q, k, v, mask)
        ctx.attrs = (num_heads, window, theta, channel_scale)

    def backward(ctx, grad_out):
        q, k, v, mask = ctx.saved_tensors
        higher_order = torch.is_grad_enabled()          # create_graph=True was asked for
        # for higher orders the gradients must stay functions of the saved inputs themselves
        inputs = [t if higher_order and needs else t.detach().requires_grad_(needs)
                  for t, needs in zip((q, k, v), ctx.needs_input_grad[:3])]
        wanted = [t for t, needs in zip(inputs, ctx.needs_input_grad[:3]) if needs]
        with torch.enable_grad():
            out = tca_attention_reference(*inputs, mask, *ctx.attrs)
            grads = iter(torch.autograd.grad(out, wanted, grad_out, create_graph=higher_order)) \
                if wanted else iter(())
        dq, dk, dv = (next(grads) if needs else None for needs in ctx.needs_input_grad[:3])
        return dq, dk, dv, None, None, None, None, None

    torch.library.register_autograd("asl_edge::tca_attention", backward, setup_context=setup_context)
