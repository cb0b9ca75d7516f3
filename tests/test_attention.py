"""tca_attention (reference and native) against a naive O(T²) reference written straight from
DESIGN §2.2."""

import math

import pytest
import torch

from asl_edge.ops.tca_reference import tca_attention_reference, temporal_attention


def naive_tca(q, k, v, mask, num_heads, window, theta, channel_scale):
    """Explicit loops over batch and head; band mask for the temporal branch; einsum for the
    channel branch with sums restricted to valid positions."""
    B, D, T = q.shape
    d = D // num_heads
    out = torch.zeros(B, D, T, dtype=torch.float64)
    q, k, v = q.double(), k.double(), v.double()
    idx = torch.arange(T)
    band = (idx[:, None] - idx[None, :]).abs() <= window // 2 if window > 1 else torch.ones(T, T, dtype=torch.bool)
    for b in range(B):
        valid = mask[b]
        n_valid = int(valid.sum())
        for h in range(num_heads):
            sl = slice(h * d, (h + 1) * d)
            qh, kh, vh = q[b, sl], k[b, sl], v[b, sl]          # (d, T)
            # temporal: rows = queries, cols = keys
            logits = (qh.t() @ kh) / math.sqrt(d)
            allowed = band & valid[None, :]
            logits = logits.masked_fill(~allowed, float("-inf"))
            f_ta = torch.zeros(d, T, dtype=torch.float64)
            for t in range(T):
                if valid[t]:
                    f_ta[:, t] = vh @ torch.softmax(logits[t], dim=0)
            # channel: tokens are channels, sums over valid positions only
            qv, kv = qh[:, valid], kh[:, valid]
            scale = math.sqrt(max(n_valid, 1)) if channel_scale == "time" else math.sqrt(d)
            attn = torch.softmax(torch.einsum("ct,et->ce", qv, kv) / scale, dim=1)
            f_ca = torch.einsum("ce,et->ct", attn, vh) * valid[None, :]
            out[b, sl] = (1 - theta) * f_ta + theta * f_ca
    return out


CASES = [
    # B, T, heads, d, window, theta, scale, valid lengths
    (2, 37, 2, 8, 5, 0.2, "time", [37, 20]),
    (1, 5, 1, 4, 19, 0.2, "time", [3]),         # window wider than the sequence
    (3, 64, 4, 8, 19, 0.0, "time", [64, 1, 40]),  # a one-frame sequence
    (2, 50, 2, 16, 9, 1.0, "head", [33, 50]),
    (2, 24, 2, 8, -1, 0.5, "time", [24, 10]),     # global attention
    (1, 1, 2, 4, 3, 0.2, "head", [1]),            # T = 1
    (2, 31, 3, 5, 7, 0.2, "head", [31, 0]),       # a fully padded sample
]


@pytest.mark.parametrize("B,T,heads,d,window,theta,scale,lengths", CASES)
def test_matches_naive_reference(tca_impl, B, T, heads, d, window, theta, scale, lengths):
    g = torch.Generator().manual_seed(B * 1000 + T)
    q, k, v = (torch.randn(B, heads * d, T, generator=g) for _ in range(3))
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    got = tca_impl(q, k, v, mask, heads, window, theta, scale)
    want = naive_tca(q, k, v, mask, heads, window, theta, scale)
    assert torch.isfinite(got).all()
    assert torch.allclose(got.double(), want, atol=1e-5, rtol=1e-5), (got.double() - want).abs().max()


def test_theta_zero_is_the_temporal_path(tca_impl):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 32, 40, generator=g) for _ in range(3))
    mask = torch.arange(40)[None, :] < torch.tensor([[40], [25]])
    got = tca_impl(q, k, v, mask, 4, 9, 0.0, "time")
    temporal = temporal_attention(q.reshape(2, 4, 8, 40), k.reshape(2, 4, 8, 40), v.reshape(2, 4, 8, 40), mask, 9)
    if tca_impl is tca_attention_reference:
        assert torch.equal(got, temporal.reshape(2, 32, 40))
    else:
        assert torch.allclose(got, temporal.reshape(2, 32, 40), atol=1e-6)


def test_padded_positions_do_not_leak(tca_impl):
    """Changing q/k/v at padded positions changes nothing at valid ones (both branches)."""
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 16, 30, generator=g) for _ in range(3))
    mask = torch.arange(30)[None, :] < 18
    base = tca_impl(q, k, v, mask, 2, 7, 0.3, "time")
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    for t in (q2, k2, v2):
        t[..., 18:] = 1e3 * torch.randn(1, 16, 12, generator=g)
    moved = tca_impl(q2, k2, v2, mask, 2, 7, 0.3, "time")
    assert torch.allclose(base[..., :18], moved[..., :18], atol=1e-6)
    assert torch.equal(moved[..., 18:], torch.zeros_like(moved[..., 18:]))


def test_gradients_are_finite_with_padding(tca_impl):
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 16, 20, generator=g, requires_grad=True) for _ in range(3))
    mask = torch.arange(20)[None, :] < torch.tensor([[20], [0]])
    tca_impl(q, k, v, mask, 2, 5, 0.2, "time").square().sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
