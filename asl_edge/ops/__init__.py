"""The asl_edge ops (DESIGN §4): native kernels when built, pure PyTorch otherwise.

Each op has a pure-PyTorch ``*_reference`` that defines it and a public function that picks
the native implementation (``torch.ops.asl_edge.*``, built by ``asl-edge build-ext``) when the
library is loaded and supports the inputs. ``ASL_EDGE_OPS=reference|native|auto`` forces a
side; see :mod:`asl_edge.ops.library`.
"""

from .library import NativeOpsError, load_at_import, native_dir, native_state, ops_mode, use_native
from .nms1d import nms1d, nms1d_reference
from .tca_attention import tca_attention, tca_attention_reference

load_at_import()

__all__ = [
    "NativeOpsError",
    "native_dir",
    "native_state",
    "nms1d",
    "nms1d_reference",
    "ops_mode",
    "tca_attention",
    "tca_attention_reference",
    "use_native",
]
