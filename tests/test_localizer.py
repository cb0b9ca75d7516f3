"""Localizer: wiring from features to detections in seconds, padding rules, input errors."""

import numpy as np
import pytest
import torch
from torch import nn

from asl_edge.localizer import FeatureError, Localizer
from asl_edge.model import build_model, level_lengths
from helpers import randomize_, small_config


class OracleNetwork(nn.Module):
    """Stands in for ASLNetwork: one confident (point, class) with known offsets; records inputs."""

    strides = [1, 2, 4, 8]
    scale_factor = 2
    start_level = 0

    def __init__(self, point, label, offsets, num_classes=3):
        super().__init__()
        self.point, self.label, self.offsets, self.num_classes = point, label, offsets, num_classes
        self.calls = []

    def forward(self, x, mask):
        self.calls.append((x.clone(), mask.clone()))
        n = sum(level_lengths(x.shape[-1], 4, 2))
        logits = torch.full((1, n, self.num_classes), -30.0)
        offsets = torch.zeros(1, n, 2)
        logits[0, self.point, self.label] = 4.0
        offsets[0, self.point] = torch.tensor(self.offsets)
        return logits, offsets


def test_oracle_detection_in_seconds():
    config = small_config()
    net = OracleNetwork(point=10, label=1, offsets=(2.0, 3.0))
    feats = np.random.default_rng(0).standard_normal((40, 24)).astype(np.float32)
    dets = Localizer(net, config).detect(feats, fps=30.0, duration=100.0)
    assert len(dets) == 1
    det = dets[0]
    # grid segment (10 - 2, 10 + 3) -> ((8 * 4 + 8) / 30, (13 * 4 + 8) / 30) seconds
    assert det["label"] == "run" and det["label_id"] == 1
    assert det["start"] == pytest.approx(40 / 30) and det["end"] == pytest.approx(60 / 30)
    assert det["score"] == pytest.approx(torch.sigmoid(torch.tensor(4.0)).item())
    x, mask = net.calls[0]
    assert x.shape == (1, 24, 64) and int(mask.sum()) == 40            # padded to max_seq_len
    assert torch.equal(x[0, :, :40], torch.from_numpy(feats).t()) and not x[0, :, 40:].any()


def test_long_inputs_pad_to_the_padding_unit():
    net = OracleNetwork(point=0, label=0, offsets=(0.0, 1.0))
    Localizer(net, small_config()).detect(np.zeros((70, 24), np.float32), fps=10.0)
    assert net.calls[0][0].shape[-1] == 96                               # next multiple of 32


def test_detections_are_clamped_and_sorted():
    model = randomize_(build_model(small_config()), seed=4)
    dets = Localizer(model, small_config()).detect(torch.randn(50, 24), fps=25.0, duration=5.0)
    assert 0 < len(dets) <= 20
    scores = [d["score"] for d in dets]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= d["start"] <= d["end"] <= 5.0 for d in dets)
    assert {d["label"] for d in dets} <= {"jump", "run", "throw"}


def test_upsampled_datasets_resize_and_rescale_time():
    config = small_config(force_upsampling=True, feat_stride=16, num_frames=16, default_fps=15.0)
    net = OracleNetwork(point=32, label=0, offsets=(1.0, 1.0))
    dets = Localizer(net, config).detect(np.ones((100, 24), np.float32))
    assert net.calls[0][0].shape[-1] == 64 and bool(net.calls[0][1].all())
    stride = (99 * 16 + 16) / 64                                        # frames per resized position
    assert dets[0]["start"] == pytest.approx((31 * stride + 0.5 * stride) / 15.0)


@pytest.mark.parametrize("feats,message", [
    (np.zeros((10, 23), np.float32), "23 channels, the model expects 24"),
    (np.zeros((24, 10), np.float32), "looks transposed"),
    (np.zeros((10,), np.float32), "must be 2-D"),
    (np.zeros((0, 24), np.float32), "empty"),
    (np.full((5, 24), np.nan, np.float32), "NaN or inf in 5 of 5"),
    (np.full((5, 24), "x"), "must be numeric"),
])
def test_bad_features(feats, message):
    with pytest.raises(FeatureError, match=message):
        Localizer(build_model(small_config()), small_config()).detect(feats, fps=30.0)


def test_fps_is_required_without_default():
    with pytest.raises(ValueError, match="fps"):
        Localizer(build_model(small_config()), small_config()).detect(np.zeros((5, 24), np.float32))


def test_default_fps_wins_over_the_videos_own_fps():
    """ActionFormer's rule: a config's dataset.default_fps is the rate the features were
    extracted at, so a video's own fps is not used when it is set."""
    net = OracleNetwork(point=10, label=1, offsets=(2.0, 3.0))
    config = small_config(default_fps=15.0)
    feats = np.zeros((40, 24), np.float32)
    dets = Localizer(net, config).detect(feats, fps=29.97, duration=100.0)
    assert dets[0]["start"] == pytest.approx(40 / 15) and dets[0]["end"] == pytest.approx(60 / 15)


@pytest.mark.parametrize("fps, duration, message", [
    (float("nan"), None, "fps must be a positive finite number, got nan"),
    (float("inf"), None, "fps must be a positive finite number, got inf"),
    (0.0, None, "fps must be a positive finite number, got 0.0"),
    (30.0, -5.0, "duration must be a positive finite number, got -5.0"),
    (30.0, float("nan"), "duration must be a positive finite number, got nan"),
    (30.0, 0.0, "duration must be a positive finite number"),
])
def test_fps_and_duration_are_validated(fps, duration, message):
    localizer = Localizer(OracleNetwork(point=1, label=0, offsets=(1.0, 1.0)), small_config())
    with pytest.raises(ValueError, match=message):
        localizer.detect(np.zeros((5, 24), np.float32), fps=fps, duration=duration)
    with pytest.raises(ValueError, match="dataset.default_fps must be a positive finite number"):
        Localizer(OracleNetwork(1, 0, (1.0, 1.0)), small_config(default_fps=float("nan"))).detect(
            np.zeros((5, 24), np.float32))
