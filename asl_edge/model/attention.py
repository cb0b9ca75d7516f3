"""The attention module of the encoder blocks: ActionFormer's multi-head convolutional
attention around the fused temporal-channel core (:func:`asl_edge.ops.tca_attention`)."""

from __future__ import annotations

from torch import Tensor, nn

from ..ops import tca_attention
from .layers import ChannelLayerNorm, MaskedConv1d


class TemporalChannelAttention(nn.Module):
    """Multi-head attention with depthwise-conv q/k/v projections (ActionFormer's MHCA) and the
    fused temporal-channel core. A stride > 1 downsamples q, k and v (and the output)."""

    def __init__(self, dim: int, num_heads: int, window: int, stride: int = 1, theta: float = 0.0,
                 channel_scale: str = "time", dropout: float = 0.0):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"embedding dim {dim} is not divisible by {num_heads} heads")
        if stride > 1 and stride % 2 != 0:
            raise ValueError(f"attention stride must be 1 or even, got {stride}")
        if channel_scale not in ("time", "head"):
            raise ValueError(f"channel_scale must be 'time' or 'head', got {channel_scale!r}")
        self.num_heads = num_heads
        self.window = window
        self.theta = float(theta)
        self.channel_scale = channel_scale
        kernel = stride + 1 if stride > 1 else 3
        self.q_conv = MaskedConv1d(dim, dim, kernel, stride=stride, groups=dim, bias=False)
        self.k_conv = MaskedConv1d(dim, dim, kernel, stride=stride, groups=dim, bias=False)
        self.v_conv = MaskedConv1d(dim, dim, kernel, stride=stride, groups=dim, bias=False)
        self.q_norm = ChannelLayerNorm(dim)
        self.k_norm = ChannelLayerNorm(dim)
        self.v_norm = ChannelLayerNorm(dim)
        self.q_proj = nn.Conv1d(dim, dim, 1)
        self.k_proj = nn.Conv1d(dim, dim, 1)
        self.v_proj = nn.Conv1d(dim, dim, 1)
        self.out_proj = nn.Conv1d(dim, dim, 1)
        self.out_drop = nn.Dropout(dropout)
        for conv in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor, out_mask: Tensor) -> Tensor:
        """x (B, C, T) -> (B, C, T / stride); ``out_mask`` (B, T / stride) bool."""
        m = out_mask.to(x.dtype).unsqueeze(1)
        q = self.q_proj(self.q_norm(self.q_conv(x, m)))
        k = self.k_proj(self.k_norm(self.k_conv(x, m)))
        v = self.v_proj(self.v_norm(self.v_conv(x, m)))
        f = tca_attention(q, k, v, out_mask, self.num_heads, self.window, self.theta, self.channel_scale)
        return self.out_drop(self.out_proj(f)) * m
