"""CUDA kernels of the asl_edge ops against the pure-PyTorch references (FP32 ≤ 1e-4 absolute,
FP16 ≤ 2e-2 relative) and the CPU NMS (identical keep sets). Skipped without a CUDA device
and a library built with `asl-edge build-ext --cuda`."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import native_skip_reason

from asl_edge.ops import nms1d_reference, tca_attention_reference

REASON = "no CUDA device" if not torch.cuda.is_available() else native_skip_reason("cuda")
pytestmark = pytest.mark.skipif(bool(REASON), reason=REASON or "CUDA available")

SHAPES = [  # batch, heads, d, T, valid lengths
    (1, 1, 4, 1, [1]),
    (2, 2, 8, 37, [37, 0]),
    (3, 4, 16, 101, [101, 64, 3]),
    (1, 4, 128, 2304, [2000]),
    (2, 4, 128, 576, [576, 300]),
    (1, 2, 64, 1000, [999]),
]


def qkv(batch, channels, length, lengths, seed):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, channels, length, generator=g) for _ in range(3))
    mask = torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]
    return q, k, v, mask


@pytest.mark.parametrize("batch,heads,d,length,lengths", SHAPES)
@pytest.mark.parametrize("window,theta,scale", [(19, 0.2, "time"), (19, 0.0, "time"), (9, 1.0, "head"),
                                                (1, 0.5, "time")])
def test_tca_cuda_matches_reference(batch, heads, d, length, lengths, window, theta, scale):
    q, k, v, mask = qkv(batch, heads * d, length, lengths, seed=length + d)
    want = tca_attention_reference(q.double(), k.double(), v.double(), mask, heads, window, theta, scale)
    cuda = [t.cuda() for t in (q, k, v, mask)]
    got32 = torch.ops.asl_edge.tca_attention(*cuda, heads, window, theta, scale).cpu().double()
    assert (got32 - want).abs().max() <= 1e-4
    half = [t.half() for t in cuda[:3]] + [cuda[3]]
    got16 = torch.ops.asl_edge.tca_attention(*half, heads, window, theta, scale)
    assert got16.dtype == torch.float16
    rel = (got16.cpu().double() - want).norm() / want.norm().clamp(min=1e-12)
    assert rel <= 2e-2
    assert (got16.cpu().float() * (~mask)[:, None, :]).abs().max() == 0       # padded positions are 0


def test_tca_cuda_gradient_and_opcheck():
    q, k, v, mask = (t.cuda() for t in qkv(2, 16, 40, [40, 22], seed=1))
    torch.library.opcheck(torch.ops.asl_edge.tca_attention.default, (q, k, v, mask, 2, 5, 0.2, "time"))


def candidates(num_classes, per_class, seed):
    g = torch.Generator().manual_seed(seed)
    n = num_classes * per_class
    start = torch.rand(n, generator=g) * 2000
    segs = torch.stack([start, start + 0.5 + torch.rand(n, generator=g) * 60], dim=1)
    scores = torch.rand(n, generator=g)
    scores[::7] = 0.5                        # ties
    labels = torch.randint(0, num_classes, (n,), generator=g)
    return segs, scores, labels


@pytest.mark.parametrize("method,multiclass,voting", list(itertools.product(["soft", "hard"], [True, False],
                                                                            [0.0, 0.7])))
@pytest.mark.parametrize("num_classes,per_class,max_out", [(20, 500, 200), (3, 40, 10), (1, 1, 5), (4, 0, 5)])
def test_nms_cuda_keeps_the_same_set(method, multiclass, voting, num_classes, per_class, max_out):
    segs, scores, labels = candidates(num_classes, per_class, seed=num_classes)
    args = (method, 0.3, 0.5, 0.001, max_out, multiclass, voting, num_classes)
    want = nms1d_reference(segs, scores, labels, *args)
    got = [t.cpu() for t in torch.ops.asl_edge.nms1d(segs.cuda(), scores.cuda(), labels.cuda(), *args)]
    assert int(got[3][0]) == int(want[3][0])
    assert torch.equal(got[2], want[2])
    assert torch.allclose(got[1], want[1], atol=1e-5)
    assert torch.allclose(got[0], want[0], atol=1e-3, rtol=1e-5)
