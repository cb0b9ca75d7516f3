"""Fixtures shared by the op tests: each attention/NMS test runs against the pure-PyTorch
reference and, when the native library is built (`asl-edge build-ext`), the native op."""

from __future__ import annotations

import pytest
import torch

from asl_edge.ops import native_state, tca_attention_reference


def native_skip_reason(device: str = "cpu") -> str:
    """Empty when the native ops have kernels for ``device``, else why not."""
    state = native_state()
    if not state.loaded:
        return f"native ops not available: {state.reason}"
    if not state.devices.get(device, False):
        return f"the native library has no {device} kernels (asl-edge build-ext --cuda)"
    return ""


@pytest.fixture(params=["reference", "native"])
def tca_impl(request):
    """``tca_attention`` with the op signature: the reference, or the native CPU op."""
    if request.param == "reference":
        return tca_attention_reference
    reason = native_skip_reason("cpu")
    if reason:
        pytest.skip(reason)
    return torch.ops.asl_edge.tca_attention
