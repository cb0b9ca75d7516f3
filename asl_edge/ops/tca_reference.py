"""The pure-PyTorch temporal-channel attention (ASL, DESIGN §2.2): the definition of the fused op
``asl_edge::tca_attention``, the ground truth of its kernels and the fallback without them. It is
written without ``as_strided`` and without data-dependent Python control flow so that TorchScript
and ``torch.export`` can trace it; it depends on nothing else in :mod:`asl_edge.ops`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def tca_attention_reference(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, num_heads: int, window: int,
                            theta: float, channel_scale: str = "time") -> Tensor:
    """Pure-PyTorch temporal-channel attention of projected queries, keys and values.

    Args:
        q, k, v: (B, D, T) with D = num_heads * d.
        mask: (B, T) bool, True at valid positions.
        window: local temporal window (odd); ``window <= 1`` attends to the whole sequence.
        theta: weight of the channel branch, ``f = (1 - theta) f_ta + theta f_ca``.
        channel_scale: ``"time"`` divides channel logits by sqrt(valid length), ``"head"`` by sqrt(d).

    Returns:
        (B, D, T), zero at padded positions.
    """
    if channel_scale != "time" and channel_scale != "head":
        raise ValueError("tca_attention: channel_scale must be 'time' or 'head', got " + channel_scale)
    if window > 1 and window % 2 == 0:
        raise ValueError("tca_attention: window must be odd (or <= 1 for global attention), got " + str(window))
    if theta < 0.0 or theta > 1.0:
        raise ValueError("tca_attention: theta must lie in [0, 1], got " + str(theta))
    if q.shape[1] % num_heads != 0:
        raise ValueError("tca_attention: channels must be a multiple of num_heads, got "
                         + str(q.shape[1]) + " and " + str(num_heads))
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
