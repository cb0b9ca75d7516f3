"""Decoding, NMS and grid -> seconds on hand-worked cases and against a sequential reference."""

import math
import random

import pytest
import torch

from asl_edge.postprocess import (
    batched_nms,
    decode_segments,
    default_duration,
    grid_to_seconds,
    hard_nms_1d,
    seconds_to_grid,
    soft_nms_1d,
    video_grid,
)

A, B, C = [0.0, 10.0], [0.0, 5.0], [20.0, 30.0]


def t(x, dtype=torch.float32):
    return torch.tensor(x, dtype=dtype)


def test_soft_nms_gaussian_decay_hand_worked():
    kept, scores, idx = soft_nms_1d(t([A, B, C]), t([0.9, 0.8, 0.7]), 0.1, 0.5, 0.001)
    # IoU(A, B) = 5 / (10 + 5 - 5) = 0.5 -> B decays by exp(-0.25 / 0.5)
    assert idx.tolist() == [0, 2, 1]
    assert scores.tolist() == pytest.approx([0.9, 0.7, 0.8 * math.exp(-0.5)], rel=1e-6)
    assert kept.tolist() == [A, C, B]


def test_soft_nms_drops_scores_below_min_score():
    kept, scores, idx = soft_nms_1d(t([A, B, C]), t([0.9, 0.8, 0.7]), 0.1, 0.5, 0.5)
    assert idx.tolist() == [0, 2]


def test_soft_nms_ties_take_the_earlier_candidate():
    kept, scores, idx = soft_nms_1d(t([C, A, A]), t([0.5, 0.6, 0.6]), 0.1, 0.5, 0.001)
    assert idx.tolist() == [1, 0, 2]
    assert scores.tolist() == pytest.approx([0.6, 0.5, 0.6 * math.exp(-2.0)], rel=1e-5)


def test_hard_nms_hand_worked():
    assert hard_nms_1d(t([A, B, C]), t([0.9, 0.8, 0.7]), 0.4, 0.0).tolist() == [0, 2]
    assert hard_nms_1d(t([A, B, C]), t([0.9, 0.8, 0.7]), 0.6, 0.0).tolist() == [0, 1, 2]
    # strictly above min_score survive the pre-filter
    assert hard_nms_1d(t([A, B, C]), t([0.9, 0.8, 0.7]), 0.6, 0.8).tolist() == [0]
    # ties: the earlier of two identical candidates wins
    assert hard_nms_1d(t([C, A, A]), t([0.2, 0.6, 0.6]), 0.5, 0.0).tolist() == [1, 0]
    assert hard_nms_1d(t([A, B, C]), t([0.9, 0.8, 0.7]), 0.6, 0.0, max_out=2).tolist() == [0, 1]


def sequential_soft_nms(segs, scores, sigma, min_score):
    """Plain-Python soft-NMS as a scan: pick the first maximum of the remaining candidates,
    swap it to the front, decay the rest one by one and replace a candidate that falls below
    min_score with the current last one."""
    items = [[s[0], s[1], sc, i] for i, (s, sc) in enumerate(zip(segs, scores))]
    n = len(items)
    i = 0
    while i < n:
        best = max(range(i, n), key=lambda j: (items[j][2], -j))
        items[i], items[best] = items[best], items[i]
        x1, x2 = items[i][0], items[i][1]
        pos = i + 1
        while pos < n:
            inter = max(0.0, min(x2, items[pos][1]) - max(x1, items[pos][0]))
            la, lb = (x2 - x1) + 1e-6, (items[pos][1] - items[pos][0]) + 1e-6
            iou = inter / (la + lb - inter)
            items[pos][2] *= math.exp(-(iou * iou) / sigma)
            if items[pos][2] < min_score:
                items[pos] = items[n - 1]
                n -= 1
                continue
            pos += 1
        i += 1
    return items[:n]


@pytest.mark.parametrize("seed", range(6))
def test_soft_nms_equals_sequential_scan(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 60)
    starts = [rng.uniform(0, 50) for _ in range(n)]
    segs = [[s, s + rng.uniform(0.5, 15)] for s in starts]
    scores = [round(rng.random(), 1) + 0.01 for _ in range(n)]   # many exact ties
    kept, kept_scores, idx = soft_nms_1d(t(segs, torch.float64), t(scores, torch.float64), 0.1, 0.5, 0.05)
    expected = sequential_soft_nms(segs, scores, 0.5, 0.05)
    assert idx.tolist() == [e[3] for e in expected]
    assert kept_scores.tolist() == pytest.approx([e[2] for e in expected], rel=1e-9)
    # stopping after max_out selections gives the prefix of the full run
    _, _, first = soft_nms_1d(t(segs, torch.float64), t(scores, torch.float64), 0.1, 0.5, 0.05, max_out=3)
    assert first.tolist() == idx.tolist()[:3]


def test_batched_multiclass_is_per_class_and_sorted():
    segs = t([A, B, A, C])
    scores = t([0.9, 0.8, 0.85, 0.7])
    labels = torch.tensor([0, 0, 1, 1])
    out_segs, out_scores, out_labels = batched_nms(segs, scores, labels, 0.4, 0.001, 100, use_soft_nms=False,
                                                   multiclass=True)
    # class 0 suppresses B; class 1's A is untouched by class 0's A
    assert out_labels.tolist() == [0, 1, 1]
    assert out_scores.tolist() == pytest.approx([0.9, 0.85, 0.7])
    assert out_segs.tolist() == [A, A, C]
    # max_seg_num truncates after the final sort
    _, top2, _ = batched_nms(segs, scores, labels, 0.4, 0.001, 2, use_soft_nms=False, multiclass=True)
    assert top2.tolist() == pytest.approx([0.9, 0.85])


def test_class_agnostic_voting_hand_worked():
    segs = t([[0.0, 10.0], [1.0, 11.0], [20.0, 30.0]])
    scores = t([0.9, 0.6, 0.5])
    labels = torch.tensor([2, 1, 0])
    out_segs, out_scores, out_labels = batched_nms(segs, scores, labels, 0.1, 0.001, 10, use_soft_nms=True,
                                                   multiclass=False, sigma=0.5, voting_thresh=0.7)
    # IoU([0,10],[1,11]) = 9/11 >= 0.7: the first kept segment becomes the (score*IoU)-weighted mean
    w_b = 0.6 * 9 / 11
    expected_first = [(0.9 * 0 + w_b * 1) / (0.9 + w_b), (0.9 * 10 + w_b * 11) / (0.9 + w_b)]
    assert out_labels.tolist() == [2, 0, 1]
    assert out_segs[0].tolist() == pytest.approx(expected_first, rel=1e-6)
    assert out_segs[1].tolist() == pytest.approx([20.0, 30.0])
    assert out_scores[2].item() == pytest.approx(0.6 * math.exp(-((9 / 11 + 0) ** 2) / 0.5), rel=1e-4)


def test_empty_and_single_inputs():
    segs, scores, labels = batched_nms(torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, dtype=torch.long),
                                       0.1, 0.001, 10)
    assert segs.shape == (0, 2) and scores.shape == (0,) and labels.shape == (0,)
    segs, scores, labels = batched_nms(t([A]), t([0.3]), torch.tensor([4]), 0.1, 0.001, 10)
    assert segs.tolist() == [A] and labels.tolist() == [4]


def test_nms_is_scriptable():
    scripted = torch.jit.script(batched_nms)
    args = (t([A, B, C]), t([0.9, 0.8, 0.7]), torch.tensor([0, 0, 1]), 0.1, 0.001, 10, True, True, 0.5, 0.7)
    for a, b in zip(scripted(*args), batched_nms(*args)):
        assert torch.equal(a, b)


def test_decode_hand_worked():
    # two levels: stride 1 with 4 points, stride 2 with 2 points; 2 classes
    logits = torch.full((6, 2), -20.0)
    logits[1, 0] = 0.0            # p = 0.5 at t = 1, class 0
    logits[3, 1] = 2.0            # t = 3 is padding (mask) -> dropped
    logits[4, 1] = 1.0            # level 1, point 0: t = 0, class 1
    logits[5, 0] = 3.0            # level 1, point 1: t = 2, class 0
    offsets = torch.tensor([[0.0, 0.0], [0.5, 1.0], [0.0, 0.0], [1.0, 1.0], [1.0, 2.0], [0.01, 0.01]])
    mask = torch.tensor([True, True, True, False])
    segs, scores, labels = decode_segments(logits, offsets, mask, [1, 2], [4, 2], 0.1, 10, 0.05)
    # level 0: (1 - 0.5, 1 + 1); level 1 ordered by score: t=2 (2 - 0.02, 2 + 0.02) is too short, t=0 kept
    assert labels.tolist() == [0, 1]
    torch.testing.assert_close(segs, t([[0.5, 2.0], [-2.0, 4.0]]))
    assert scores.tolist() == pytest.approx([0.5, torch.sigmoid(torch.tensor(1.0)).item()])
    # top-k per level keeps the best pairs of each level
    segs, scores, labels = decode_segments(logits, offsets, mask, [1, 2], [4, 2], 0.1, 1, 0.0)
    assert scores.tolist() == pytest.approx([0.5, torch.sigmoid(torch.tensor(3.0)).item()])


def test_grid_to_seconds():
    segs = torch.tensor([[10.0, 20.0], [-5.0, 1000.0]])
    out = grid_to_seconds(segs, feat_stride=4, num_frames=16, fps=30.0, duration=60.0)
    # (10 * 4 + 8) / 30 = 1.6, (20 * 4 + 8) / 30 = 2.9333; clamped to [0, 60]
    torch.testing.assert_close(out, t([[1.6, 88 / 30], [0.0, 60.0]]))
    back = seconds_to_grid(out[:1], 4, 16, 30.0)
    torch.testing.assert_close(back, t([[10.0, 20.0]]))
    assert default_duration(100, 4, 16, 30.0) == pytest.approx((99 * 4 + 16) / 30)


def test_video_grid_resampling():
    assert video_grid(100, 4, 16, 30.0, downsample_rate=2).feat_stride == 8
    up = video_grid(100, 16, 16, 15.0, upsample_to=192)
    # 100 features of stride 16 span 99 * 16 + 16 frames, tiled by 192 positions
    assert up.feat_stride == pytest.approx(1600 / 192) and up.num_frames == up.feat_stride
