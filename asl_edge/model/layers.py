"""Building blocks shared by the encoder and the heads. Tensors are (B, C, T)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MaskedConv1d(nn.Conv1d):
    """1-D convolution whose output is multiplied by the (output-resolution) validity mask.

    Odd kernels with "same" padding only; ``mask`` is (B, 1, T_out) in the input's dtype.
    Biases start at zero.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, bias: bool = True):
        if kernel_size % 2 != 1:
            raise ValueError(f"MaskedConv1d needs an odd kernel size, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=kernel_size // 2, groups=groups, bias=bias)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight, self.bias) * mask


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a (B, C, T) tensor (biased variance, eps 1e-5)."""

    def __init__(self, num_channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, num_channels, 1))
        self.bias = nn.Parameter(torch.zeros(1, num_channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        centred = x - x.mean(dim=1, keepdim=True)
        variance = (centred * centred).mean(dim=1, keepdim=True)
        return centred / torch.sqrt(variance + self.eps) * self.weight + self.bias


class ConvNormReLU(nn.Module):
    """Masked conv -> channel LayerNorm (or nothing) -> ReLU, as in the embedding and heads."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, with_ln: bool):
        super().__init__()
        self.conv = MaskedConv1d(in_channels, out_channels, kernel_size, bias=not with_ln)
        self.norm = ChannelLayerNorm(out_channels) if with_ln else nn.Identity()

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return F.relu(self.norm(self.conv(x, mask)))


def strided_max_pool(x: Tensor, stride: int) -> Tensor:
    """Max pool with kernel stride+1, the given (even) stride and padding stride/2:
    (B, C, T) -> (B, C, ceil(T / stride)). Written with slices so that ``torch.export`` keeps T
    symbolic (``max_pool1d`` specialises it)."""
    length = (x.shape[-1] + stride - 1) // stride
    padded = F.pad(x, (stride // 2, stride // 2), value=float("-inf"))
    out = padded[..., 0::stride][..., :length]
    for offset in range(1, stride + 1):
        out = torch.maximum(out, padded[..., offset::stride][..., :length])
    return out


def drop_path(x: Tensor, drop_prob: float, training: bool) -> Tensor:
    """Stochastic depth: zero whole samples with probability ``drop_prob`` and rescale the rest."""
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    keep = torch.floor(keep_prob + torch.rand([x.shape[0], 1, 1], dtype=x.dtype, device=x.device))
    return x / keep_prob * keep


class ResidualScale(nn.Module):
    """Per-channel scale gamma (init 1e-4) followed by stochastic depth, on a residual branch."""

    def __init__(self, num_channels: int, drop_prob: float, init_value: float = 1e-4):
        super().__init__()
        self.drop_prob = drop_prob
        self.scale = nn.Parameter(torch.full((1, num_channels, 1), init_value))

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(self.scale * x, self.drop_prob, self.training)


def sinusoid_position_table(length: int, channels: int) -> Tensor:
    """Fixed sinusoidal position encoding, (1, C, T): sin on even channels, cos on odd ones."""
    position = torch.arange(length, dtype=torch.float64)[:, None]
    exponent = (2 * (torch.arange(channels) // 2)).to(torch.float64) / channels
    angles = position / torch.pow(10000.0, exponent)[None, :]
    table = torch.where(torch.arange(channels)[None, :] % 2 == 0, torch.sin(angles), torch.cos(angles))
    return table.to(torch.float32).t().unsqueeze(0) / math.sqrt(channels)
