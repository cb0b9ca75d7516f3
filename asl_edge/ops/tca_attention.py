"""The fused temporal-channel attention op (ASL, DESIGN §2.2, §4).

``tca_attention`` runs ``torch.ops.asl_edge.tca_attention`` when the native library is loaded
and has a kernel for the inputs (see :mod:`asl_edge.ops.library`), else the pure-PyTorch
``tca_attention_reference`` (:mod:`asl_edge.ops.tca_reference`), which defines the op.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .library import use_native
from .tca_reference import tca_attention_reference


def tca_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, num_heads: int, window: int,
                  theta: float, channel_scale: str = "time") -> Tensor:
    """Temporal-channel attention; same arguments and result as ``tca_attention_reference``.

    The native op is used outside TorchScript when ``ASL_EDGE_OPS`` allows it; gradients
    flow either way (the native op's backward is the reference's).
    """
    if not torch.jit.is_scripting():
        if use_native("tca_attention", q, k, v, mask):
            return torch.ops.asl_edge.tca_attention(q, k, v, mask, num_heads, window, float(theta), channel_scale)
    return tca_attention_reference(q, k, v, mask, num_heads, window, theta, channel_scale)


__all__ = ["tca_attention", "tca_attention_reference"]
