"""``i3d-rgb``: the RGB stream of I3D (Inflated Inception-v1, Carreira & Zisserman 2017) in
PyTorch, numerically the network of DeepMind's Kinetics-400 release: TensorFlow "SAME" padding
(one extra pixel after, not before, where the total is odd), batch norm without a scale
(epsilon 1e-3), max pools padded with -inf. Recipe (THUMOS14 features): frames resized so the
short side is 256, centre crop 224, RGB scaled to [-1, 1], 16-frame clips every 4 frames;
the feature is Mixed_5c averaged over time and space (1,024-d); Kinetics-400 logits too.

:class:`I3DClipNetwork` is the same network as a clip model for export (uint8 clips in, features
out) with its first convolution rewritten on the space-to-depth of the frames (:class:`SpaceToDepthStem`)."""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..video import Geometry
from .base import ClipExtractor, ClipSpec, ExtractorError

NAME = "i3d-rgb"
FEATURE_DIM = 1024
NUM_CLASSES = 400
BN_EPS = 1e-3
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# (name, branch channels: 1x1, 3x3 reduce, 3x3, 3x3 reduce, 3x3, pool projection)
INCEPTION = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32), "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64), "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64), "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128), "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


def same_padding(size: int, kernel: int, stride: int) -> Tuple[int, int]:
    """TensorFlow "SAME": output ceil(size / stride); the odd pixel of padding goes after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: Tensor, kernel: Sequence[int], stride: Sequence[int], value: float = 0.0) -> Tensor:
    """Pad (B, C, T, H, W) for a "SAME" window of ``kernel`` and ``stride``."""
    pads: List[int] = []
    for dim in (4, 3, 2):                               # F.pad lists the last dimension first
        before, after = same_padding(x.shape[dim], kernel[dim - 2], stride[dim - 2])
        pads += [before, after]
    return F.pad(x, pads, value=value) if any(pads) else x


class Unit3D(nn.Module):
    """Conv3d ("SAME", no bias) + batch norm without scale + ReLU; or, for the logits, conv + bias."""

    def __init__(self, c_in: int, c_out: int, kernel=(1, 1, 1), stride=(1, 1, 1), norm_act: bool = True):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv = nn.Conv3d(c_in, c_out, self.kernel, self.stride, bias=not norm_act)
        self.norm_act = norm_act
        if norm_act:
            self.register_buffer("bn_mean", torch.zeros(c_out))
            self.register_buffer("bn_var", torch.ones(c_out))
            self.bn_bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(pad_same(x, self.kernel, self.stride))
        return self.norm_relu(x) if self.norm_act else x

    def norm_relu(self, x: Tensor) -> Tensor:
        """The batch norm (without scale) and ReLU after the convolution."""
        shape = (1, -1, 1, 1, 1)
        x = (x - self.bn_mean.view(shape)) * torch.rsqrt(self.bn_var.view(shape) + BN_EPS) + self.bn_bias.view(shape)
        return F.relu(x)


def max_pool_same(x: Tensor, kernel: Tuple[int, int, int], stride: Tuple[int, int, int]) -> Tensor:
    """Max pool with "SAME" padding (padded cells never win). The padding goes into the pool itself
    where it can — symmetric, or after only (``ceil_mode``) — so that exported graphs have no Pad
    node in front of their pools (OpenVINO then pools int8 tensors in int8)."""
    pads = [same_padding(x.shape[dim], kernel[dim - 2], stride[dim - 2]) for dim in (2, 3, 4)]
    if all(before == after for before, after in pads) and all(2 * b <= k for (b, _), k in zip(pads, kernel)):
        return F.max_pool3d(x, kernel, stride, padding=[before for before, _ in pads])
    if all(before == 0 and after < s for (before, after), s in zip(pads, stride)):    # ceil_mode adds that window
        return F.max_pool3d(x, kernel, stride, ceil_mode=True)
    return F.max_pool3d(pad_same(x, kernel, stride, value=float("-inf")), kernel, stride)


class Inception(nn.Module):
    """Four branches: 1x1; 1x1 -> 3x3; 1x1 -> 3x3; 3x3 max pool -> 1x1; concatenated."""

    def __init__(self, c_in: int, widths: Tuple[int, ...]):
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3 = widths
        self.branch_0 = Unit3D(c_in, b0)
        self.branch_1a, self.branch_1b = Unit3D(c_in, b1a), Unit3D(b1a, b1b, (3, 3, 3))
        self.branch_2a, self.branch_2b = Unit3D(c_in, b2a), Unit3D(b2a, b2b, (3, 3, 3))
        self.branch_3 = Unit3D(c_in, b3)
        self.out_channels = b0 + b1b + b2b + b3

    def forward(self, x: Tensor) -> Tensor:
        pooled = max_pool_same(x, (3, 3, 3), (1, 1, 1))
        return torch.cat([self.branch_0(x), self.branch_1b(self.branch_1a(x)), self.branch_2b(self.branch_2a(x)),
                          self.branch_3(pooled)], dim=1)


class InceptionI3d(nn.Module):
    """``forward(x[B, 3, T, 224, 224] in [-1, 1]) -> (features[B, 1024], logits[B, 400])``."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.conv_1a = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.conv_2b = Unit3D(64, 64)
        self.conv_2c = Unit3D(64, 192, (3, 3, 3))
        blocks, c = {}, 192
        for name, widths in INCEPTION.items():
            blocks[name] = Inception(c, widths)
            c = blocks[name].out_channels
        self.mixed = nn.ModuleDict(blocks)
        self.logits = Unit3D(c, num_classes, norm_act=False)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        x = self.trunk(self.conv_1a(x))                               # Mixed_5c: (B, 1024, T/8, 7, 7)
        features = x.mean(dim=(2, 3, 4))                              # Mixed_5c averaged: (B, 1024)
        pooled = F.avg_pool3d(x.float(), (2, 7, 7), stride=1).to(x.dtype)  # as the release: 2x7x7 windows
        logits = self.logits(pooled).mean(dim=(2, 3, 4))              # (B, 400), averaged over time
        return features, logits

    def trunk(self, x: Tensor) -> Tensor:
        """conv_1a's output (B, 64, T/2, 112, 112) -> Mixed_5c (B, 1024, T/8, 7, 7)."""
        for _, step in self.steps():
            x = step(x)
        return x

    def steps(self) -> List[Tuple[str, Callable[[Tensor], Tensor]]]:
        """The trunk after conv_1a, step by step: ``(name, function)`` in order (a benchmark runs
        its first steps once over a long run of frames and the rest per clip)."""
        def pool(kernel, stride):
            return lambda x: max_pool_same(x, kernel, stride)

        steps = [("pool_2a", pool((1, 3, 3), (1, 2, 2))), ("conv_2b", self.conv_2b),   # (B, 64, T/2, 56, 56)
                 ("conv_2c", self.conv_2c), ("pool_3a", pool((1, 3, 3), (1, 2, 2)))]  # (B, 192, T/2, 28, 28)
        for name, block in self.mixed.items():
            if name == "Mixed_4b":
                steps.append(("pool_4a", pool((3, 3, 3), (2, 2, 2))))                # (B, 480, T/4, 14, 14)
            elif name == "Mixed_5b":
                steps.append(("pool_5a", pool((2, 2, 2), (2, 2, 2))))                # (B, 832, T/8, 7, 7)
            steps.append((name, block))
        return steps


class SpaceToDepthStem(nn.Module):
    """conv_1a (7x7x7, stride 2, "SAME", on 3 channels) of uint8 frames as a 4x4x4 stride-1
    convolution on the 2x2x2 space-to-depth of ``pixels - 127.5`` (24 channels; the kernel zero
    at index 7, the scaling to [-1, 1] folded into it), then its batch norm and ReLU. The same
    function up to float rounding, in a shape that int8 and bf16 kernels run at full speed: 3 input
    channels leave most of a vector unit idle (OpenVINO int8: 32 ms of a 91 ms clip). T, H and W
    must be even."""

    def __init__(self, unit: Unit3D):
        super().__init__()
        weight = unit.conv.weight.detach()                               # (64, 3, 7, 7, 7)
        c_out, c_in = weight.shape[:2]
        padded = weight.new_zeros(c_out, c_in, 8, 8, 8)
        padded[:, :, :7, :7, :7] = weight / 127.5
        # (out, c, kt, dt, kh, dh, kw, dw) -> (out, dt, dh, dw, c, kt, kh, kw): tap k = 2 * kk + d
        folded = padded.view(c_out, c_in, 4, 2, 4, 2, 4, 2).permute(0, 3, 5, 7, 1, 2, 4, 6)
        self.conv = nn.Conv3d(8 * c_in, c_out, 4, bias=False)
        self.conv.weight.data.copy_(folded.reshape(c_out, 8 * c_in, 4, 4, 4))
        self.unit = unit

    def forward(self, clips: Tensor) -> Tensor:
        """uint8 clips (B, T, H, W, 3) -> conv_1a's output (B, 64, T/2, H/2, W/2)."""
        b, t, h, w, c = clips.shape
        x = clips.to(self.conv.weight.dtype) - 127.5
        x = x.view(b, t // 2, 2, h // 2, 2, w // 2, 2, c).permute(0, 2, 4, 6, 7, 1, 3, 5)
        x = x.reshape(b, 8 * c, t // 2, h // 2, w // 2)
        # "SAME" pads 2 before and 3 after in every axis: 1 and 2 cells of the space-to-depth grid
        return self.unit.norm_relu(self.conv(F.pad(x, (1, 2, 1, 2, 1, 2))))


class I3DClipNetwork(nn.Module):
    """The clip model that extractor exports contain: uint8 clips (B, T, H, W, 3) -> Mixed_5c
    features (B, 1024) float32, the network in its own dtype (a copy of ``network``'s weights)."""

    def __init__(self, network: InceptionI3d):
        super().__init__()
        self.stem = SpaceToDepthStem(network.conv_1a)
        self.network = network

    def forward(self, clips: Tensor) -> Tensor:
        return self.network.trunk(self.stem(clips)).mean(dim=(2, 3, 4)).float()


# --- weights: the release's variable names -> this module's -----------------------------------

def _unit_names(prefix: Tuple[str, ...], ours: str) -> Dict[str, Tuple[str, ...]]:
    return {f"{ours}.conv.weight": ("params", *prefix, "Conv_0", "kernel"),
            f"{ours}.bn_bias": ("params", *prefix, "BatchNorm_0", "bias"),
            f"{ours}.bn_mean": ("batch_stats", *prefix, "BatchNorm_0", "mean"),
            f"{ours}.bn_var": ("batch_stats", *prefix, "BatchNorm_0", "var")}


def release_names() -> Dict[str, Tuple[str, ...]]:
    """This module's state-dict key -> key path in the release's Flax variables (its inception
    branches are single keys such as ``"Branch_1/Conv3d_0b_3x3"``)."""
    names = {}
    for prefix, ours in (("Conv3d_1a_7x7", "conv_1a"), ("Conv3d_2b_1x1", "conv_2b"), ("Conv3d_2c_3x3", "conv_2c")):
        names.update(_unit_names((prefix,), ours))
    branches = (("Branch_0/Conv3d_0a_1x1", "branch_0"), ("Branch_1/Conv3d_0a_1x1", "branch_1a"),
                ("Branch_1/Conv3d_0b_3x3", "branch_1b"), ("Branch_2/Conv3d_0a_1x1", "branch_2a"),
                ("Branch_2/Conv3d_0b_3x3", "branch_2b"), ("Branch_3/Conv3d_0b_1x1", "branch_3"))
    for block in INCEPTION:
        for prefix, ours in branches:
            names.update(_unit_names((block, prefix), f"mixed.{block}.{ours}"))
    names["logits.conv.weight"] = ("params", "Logits/Conv3d_0c_1x1", "Conv_0", "kernel")
    names["logits.conv.bias"] = ("params", "Logits/Conv3d_0c_1x1", "Conv_0", "bias")
    return names


def state_dict_from_release(variables: Dict) -> Dict[str, Tensor]:
    """The release's variables ({"params", "batch_stats"} trees of numpy arrays) as this module's
    state dict (kernels (kT, kH, kW, in, out) -> (out, in, kT, kH, kW)). ExtractorError names
    what is missing or mis-shaped."""
    reference = InceptionI3d().state_dict()
    out: Dict[str, Tensor] = {}
    for key, path in release_names().items():
        node = variables
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        where = "/".join(path)
        if not isinstance(node, np.ndarray):
            raise ExtractorError(f"the I3D weights lack {where}")
        tensor = torch.from_numpy(np.array(node, dtype=np.float32))
        if path[-1] == "kernel":
            tensor = tensor.permute(4, 3, 0, 1, 2)
        elif tensor.numel() == reference[key].numel():       # statistics come as (1, 1, 1, 1, C)
            tensor = tensor.reshape(reference[key].shape)
        if tuple(tensor.shape) != tuple(reference[key].shape):
            raise ExtractorError(f"the I3D weights' {where} has shape {tuple(node.shape)}, expected one that "
                                 f"gives {tuple(reference[key].shape)}")
        out[key] = tensor.contiguous()
    return out


class I3DExtractor(ClipExtractor):
    """The ``i3d-rgb`` extractor: 16-frame clips every 4 frames at 30 fps, 224x224 centre crop of
    the short side resized to 256, features [B, 1024]; :meth:`logits` gives the Kinetics-400
    logits. FP16 on CUDA with ``precision="fp16"``; bf16 with ``precision="bf16"`` (on a CPU,
    PyTorch's bf16 kernels: measured in the bench; OpenVINO exports are the fast CPU path)."""

    name = NAME

    def __init__(self, state_dict: Dict[str, Tensor], weights_sha256: str, device: str = "cpu",
                 precision: str = "fp32"):
        if precision not in DTYPES:
            raise ExtractorError(f"precision must be {', '.join(DTYPES)}, got {precision!r}")
        if precision == "fp16" and torch.device(device).type != "cuda":
            raise ExtractorError("fp16 I3D runs on CUDA: use --device cuda, or bf16/fp32 on a CPU")
        self.clip = ClipSpec(num_frames=16, frame_stride=4, fps=30.0, geometry=Geometry(224, 224, 224 / 256))
        self.dim = FEATURE_DIM
        self.device, self.precision, self.weights_sha256 = str(device), precision, weights_sha256
        self.dtype = DTYPES[precision]
        self.network = InceptionI3d()
        self.network.load_state_dict(state_dict)
        self.network.eval().to(device, self.dtype)

    def _forward(self, clips: np.ndarray) -> Tuple[Tensor, Tensor]:
        x = torch.from_numpy(np.ascontiguousarray(clips)).to(self.device)     # (B, T, H, W, 3) uint8
        x = x.permute(0, 4, 1, 2, 3).to(self.dtype) / 127.5 - 1.0           # (B, 3, T, H, W) in [-1, 1]
        with torch.inference_mode():
            return self.network(x)

    def _extract(self, clips: np.ndarray) -> np.ndarray:
        return self._forward(clips)[0].float().cpu().numpy()

    def logits(self, clips: np.ndarray) -> np.ndarray:
        """Kinetics-400 logits [B, 400] of a batch of clips (any number of frames >= 9)."""
        clips = np.asarray(clips)
        if clips.dtype != np.uint8 or clips.ndim != 5 or clips.shape[2:] != (224, 224, 3):
            raise ExtractorError(f"i3d-rgb takes uint8 clips [B, T, 224, 224, 3], got {clips.dtype} "
                                 f"{list(clips.shape)}")
        return self._forward(clips)[1].float().cpu().numpy()
