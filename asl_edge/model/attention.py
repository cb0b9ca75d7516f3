"""Fused temporal-channel attention (ASL, DESIGN §2.2) and the attention module around it.

``tca_attention`` is the pure-PyTorch definition of the op that native kernels implement;
it is written without ``as_strided`` and without data-dependent Python control flow so that
TorchScript and ``torch.export`` can trace it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import ChannelLayerNorm, MaskedConv1d


def tca_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, num_heads: int, window: int,
                  theta: float, channel_scale: str = "time") -> Tensor:
    """Temporal-channel attention of projected queries, keys and values.

    Args:
        q, k, v: (B, D, T) with D = num_heads * d.
        mask: (B, T) bool, True at valid positions.
        window: local temporal window (odd); ``window <= 1`` attends to the whole sequence.
        theta: weight of the channel branch, ``f = (1 - theta) f_ta + theta f_ca``.
        channel_scale: ``"time"`` divides channel logits by sqrt(valid length), ``"head"`` by sqrt(d).

    Returns:
        (B, D, T), zero at padded positions.
    """
    batch, channels, length = q.shape
    head_dim = channels // num_heads
    q = q.reshape(batch, num_heads, head_dim, length)
    k = k.reshape(batch, num_heads, head_dim, length)
    v = v.reshape(batch, num_heads, head_dim, length)
    valid = mask.to(q.dtype)[:, None, None, :]
    if theta == 0.0:
        out = temporal_attention(q, k, v, mask, window)
    elif theta == 1.0:
        out = channel_attention(q, k, v, mask, channel_scale)
    else:
        out = (1.0 - theta) * temporal_attention(q, k, v, mask, window) \
            + theta * channel_attention(q, k, v, mask, channel_scale)
    return (out * valid).reshape(batch, channels, length)


def temporal_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, window: int) -> Tensor:
    """softmax(q kᵀ / sqrt(d)) v per head over valid keys; (B, H, d, T) in, (B, H, d, T) out.

    With ``window > 1`` query i sees keys i - window//2 .. i + window//2. Rows of padded
    queries are zero.
    """
    if window <= 1:
        return _global_temporal_attention(q, k, v, mask)
    return _local_temporal_attention(q, k, v, mask, window)


def _local_temporal_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, window: int) -> Tensor:
    radius = window // 2
    length = q.shape[-1]
    q = q * (q.shape[2] ** -0.5)
    # keys, values and validity padded by the radius on both sides: offset o reads [o, o + T)
    k_pad = F.pad(k, (radius, radius))
    v_pad = F.pad(v, (radius, radius))
    valid_pad = F.pad(mask.to(q.dtype), (radius, radius)) > 0.5
    scores = []
    key_valid = []
    for offset in range(2 * radius + 1):
        scores.append((q * k_pad[..., offset:offset + length]).sum(dim=2))
        key_valid.append(valid_pad[:, offset:offset + length])
    logits = torch.stack(scores, dim=-1)                       # (B, H, T, W)
    # padded queries attend everywhere (no all -inf rows); their rows are zeroed below
    allowed = torch.stack(key_valid, dim=-1) | ~mask[:, :, None]   # (B, T, W)
    logits = logits.masked_fill(~allowed[:, None], float("-inf"))
    probs = torch.softmax(logits, dim=-1) * mask.to(q.dtype)[:, None, :, None]
    out = probs[..., 0].unsqueeze(2) * v_pad[..., 0:length]
    for offset in range(1, 2 * radius + 1):
        out = out + probs[..., offset].unsqueeze(2) * v_pad[..., offset:offset + length]
    return out


def _global_temporal_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    q = q * (q.shape[2] ** -0.5)
    logits = torch.matmul(q.transpose(2, 3), k)                  # (B, H, T, T)
    allowed = mask[:, None, :] | ~mask[:, :, None]                # (B, T, T)
    logits = logits.masked_fill(~allowed[:, None], float("-inf"))
    probs = torch.softmax(logits, dim=-1) * mask.to(q.dtype)[:, None, :, None]
    return torch.matmul(v, probs.transpose(2, 3))


def channel_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, channel_scale: str) -> Tensor:
    """Channels as tokens: A = softmax(q̃ k̃ᵀ / s) over valid positions, out = A ṽ; (B, H, d, T)."""
    valid = mask.to(q.dtype)[:, None, None, :]
    logits = torch.matmul(q * valid, (k * valid).transpose(2, 3))   # (B, H, d, d)
    if channel_scale == "time":
        num_valid = mask.sum(dim=1).clamp(min=1).to(q.dtype)
        logits = logits * torch.rsqrt(num_valid)[:, None, None, None]
    else:
        logits = logits * (q.shape[2] ** -0.5)
    return torch.matmul(torch.softmax(logits, dim=-1), v)


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
