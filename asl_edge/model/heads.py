"""Classification and regression heads, shared across pyramid levels (DESIGN §2.1)."""

from __future__ import annotations

import math
from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import ConvNormReLU, MaskedConv1d


def _conv_stack(in_dim: int, dim: int, num_layers: int, kernel_size: int, with_ln: bool) -> nn.ModuleList:
    return nn.ModuleList(
        ConvNormReLU(in_dim if i == 0 else dim, dim, kernel_size, with_ln) for i in range(num_layers - 1)
    )


class ClassificationHead(nn.Module):
    """(num_layers - 1) conv+LN+ReLU layers, then a conv to per-class logits (prior-initialised bias)."""

    def __init__(self, in_dim: int, dim: int, num_classes: int, num_layers: int, kernel_size: int,
                 with_ln: bool, prior_prob: float, empty_classes: List[int]):
        super().__init__()
        self.layers = _conv_stack(in_dim, dim, num_layers, kernel_size, with_ln)
        self.classifier = MaskedConv1d(dim, num_classes, kernel_size)
        with torch.no_grad():
            if prior_prob > 0:
                self.classifier.bias.fill_(-math.log((1 - prior_prob) / prior_prob))
            # classes without training data keep a near-zero probability
            for cls in empty_classes:
                self.classifier.bias[cls] = -math.log((1 - 1e-6) / 1e-6)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, C, T_l), mask (B, 1, T_l) float -> logits (B, K, T_l)."""
        for layer in self.layers:
            x = layer(x, mask)
        return self.classifier(x, mask)


class RegressionHead(nn.Module):
    """(num_layers - 1) conv+LN+ReLU layers, then a conv to (start, end) offsets, times a learnable
    per-level scale, then ReLU. Offsets are in units of the level's stride."""

    def __init__(self, in_dim: int, dim: int, num_levels: int, num_layers: int, kernel_size: int,
                 with_ln: bool):
        super().__init__()
        self.layers = _conv_stack(in_dim, dim, num_layers, kernel_size, with_ln)
        self.regressor = MaskedConv1d(dim, 2, kernel_size)
        self.level_scales = nn.Parameter(torch.ones(num_levels))

    def forward(self, x: Tensor, mask: Tensor, level: int) -> Tensor:
        """x (B, C, T_l), mask (B, 1, T_l) float -> offsets (B, 2, T_l)."""
        for layer in self.layers:
            x = layer(x, mask)
        return F.relu(self.regressor(x, mask) * self.level_scales[level])
