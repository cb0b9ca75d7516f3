"""Embedding network and pre-LN transformer blocks of the encoder (DESIGN §2.1)."""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import TemporalChannelAttention
from .layers import (ChannelLayerNorm, ConvNormReLU, MaskedConv1d, ResidualScale, sinusoid_position_table,
                     strided_max_pool)


class Embedding(nn.Module):
    """Optional per-stream 1x1 projections, then k-wide masked conv + LN + ReLU layers, then the
    optional absolute position encoding. (B, C_in, T) -> (B, E, T)."""

    def __init__(self, input_dims: List[int], embed_dims: List[int], num_layers: int, kernel_size: int,
                 with_ln: bool, max_len: int, use_abs_pe: bool):
        super().__init__()
        self.input_dims = input_dims
        self.stream_proj = nn.ModuleList()
        if len(input_dims) > 1:
            self.stream_proj.extend(MaskedConv1d(c_in, c_out, 1) for c_in, c_out in zip(input_dims, embed_dims))
            in_dim = sum(embed_dims)
        else:
            in_dim = input_dims[0]
        dim = sum(embed_dims)
        self.layers = nn.ModuleList(
            ConvNormReLU(in_dim if i == 0 else dim, dim, kernel_size, with_ln) for i in range(num_layers)
        )
        self.use_abs_pe = use_abs_pe
        self.max_len = max_len
        self.register_buffer(
            "pos_embed", sinusoid_position_table(max_len if use_abs_pe else 0, dim), persistent=False
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        m = mask.to(x.dtype).unsqueeze(1)
        if len(self.stream_proj) > 0:
            streams = x.split(self.input_dims, dim=1)
            x = torch.cat([proj(streams[i], m) for i, proj in enumerate(self.stream_proj)], dim=1)
        for layer in self.layers:
            x = layer(x, m)
        if self.use_abs_pe:
            length = x.shape[-1]
            pe = self.pos_embed
            if self.training:
                torch._assert(length <= self.max_len, "sequence longer than max_seq_len in training")
            elif length >= self.max_len:     # identity at max_len; one branch for every padded input length
                pe = F.interpolate(pe, size=length, mode="linear", align_corners=False)
            x = x + pe[:, :, :length] * m
        return x


class MLP(nn.Module):
    """1x1 conv (C -> 4C), GELU, 1x1 conv (4C -> C), with dropout."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Conv1d(dim, hidden, 1)
        self.fc2 = nn.Conv1d(hidden, dim, 1)
        self.drop = nn.Dropout(dropout)
        nn.init.zeros_(self.fc1.bias)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class EncoderBlock(nn.Module):
    """Pre-LN transformer block; stride 2 halves the length (max-pool skip, strided q/k/v convs).

    ``x = skip(x)·mask + γ1⊙Attn(LN(x))``, then ``x = x + γ2⊙MLP(LN(x))·mask``. The γ scales
    (with stochastic depth) exist when ``drop_path > 0``, as in ActionFormer.
    """

    def __init__(self, dim: int, num_heads: int, window: int, stride: int, theta: float,
                 channel_scale: str, dropout: float, drop_path: float):
        super().__init__()
        self.stride = stride
        self.attn_norm = ChannelLayerNorm(dim)
        self.attn = TemporalChannelAttention(dim, num_heads, window, stride, theta, channel_scale, dropout)
        self.mlp_norm = ChannelLayerNorm(dim)
        self.mlp = MLP(dim, 4 * dim, dropout)
        if drop_path > 0:
            self.attn_residual = ResidualScale(dim, drop_path)
            self.mlp_residual = ResidualScale(dim, drop_path)
        else:
            self.attn_residual = nn.Identity()
            self.mlp_residual = nn.Identity()

    def forward(self, x: Tensor, mask: Tensor):
        """x (B, C, T), mask (B, T) bool -> (B, C, T / stride), (B, T / stride)."""
        out_mask = mask[:, ::self.stride]
        m = out_mask.to(x.dtype).unsqueeze(1)
        skip = strided_max_pool(x, self.stride) if self.stride > 1 else x
        x = skip * m + self.attn_residual(self.attn(self.attn_norm(x), out_mask))
        x = x + self.mlp_residual(self.mlp(self.mlp_norm(x)) * m)
        return x, out_mask
