"""The network: output contract, padding invariance, TorchScript and torch.export."""

import pytest
import torch

from asl_edge.config import ConfigError, load_config
from asl_edge.model import build_model, level_lengths, padded_length, padding_unit
from helpers import randomize_, small_config, valid_mask


def split_levels(t, lengths):
    return list(torch.split(t, lengths, dim=1))


def test_thumos_shapes_and_point_counts():
    config = load_config("thumos_i3d")
    model = build_model(config).eval()
    assert model.strides == [1, 2, 4, 8, 16, 32]
    sizes = level_lengths(2304, 6, 2)
    assert sizes == [2304, 1152, 576, 288, 144, 72] and sum(sizes) == 4536
    assert padding_unit(config) == 576
    assert padded_length(config, 100) == 2304 and padded_length(config, 2305) == 2880
    x = torch.randn(1, 2048, 2304)
    with torch.no_grad():
        logits, offsets = model(x, valid_mask([2000], 2304))
    assert logits.shape == (1, 4536, 20) and offsets.shape == (1, 4536, 2)
    assert (offsets >= 0).all()
    # untrained classifier bias = -log((1 - 0.01) / 0.01): sigmoid ~ 0.01
    assert torch.allclose(model.cls_head.classifier.bias, torch.full((20,), -4.59512), atol=1e-4)


def test_parameter_count_thumos():
    model = build_model(load_config("thumos_i3d"))
    assert sum(p.numel() for p in model.parameters()) == 29_251_612


@pytest.mark.parametrize("channel_scale", ["time", "head"])
@pytest.mark.parametrize("theta", [0.0, 0.2, 1.0])
def test_padding_invariance(theta, channel_scale):
    """Outputs at valid points are unchanged when more padding is appended."""
    config = small_config(theta=theta, channel_scale=channel_scale, levels=(0, 1, 2, 3))
    model = randomize_(build_model(config)).eval()
    lengths = [40, 23]
    short = torch.randn(2, 24, 64)
    long = torch.cat([short, 5 * torch.randn(2, 24, 128)], dim=2)   # garbage in the padding
    with torch.no_grad():
        out_short = model(short, valid_mask(lengths, 64))
        out_long = model(long, valid_mask(lengths, 192))
    for a, b in zip(out_short, out_long):
        for lv, (la, lb) in enumerate(zip(split_levels(a, level_lengths(64, 4, 2)),
                                          split_levels(b, level_lengths(192, 4, 2)))):
            for i, n in enumerate(lengths):
                valid = (n + 2 ** lv - 1) // 2 ** lv
                assert torch.allclose(la[i, :valid], lb[i, :valid], atol=1e-5), (lv, i)


def test_channel_branch_changes_the_output():
    with_ca = randomize_(build_model(small_config(theta=0.5))).eval()
    without = build_model(small_config(theta=0.0)).eval()
    without.load_state_dict(with_ca.state_dict())
    x = torch.randn(1, 24, 64)
    mask = valid_mask([50], 64)
    with torch.no_grad():
        assert not torch.allclose(with_ca(x, mask)[0], without(x, mask)[0], atol=1e-4)


def test_torchscript_matches_eager():
    model = randomize_(build_model(small_config())).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(2, 24, 128)
    mask = valid_mask([128, 70], 128)
    with torch.no_grad():
        for a, b in zip(model(x, mask), scripted(x, mask)):
            assert torch.allclose(a, b, atol=1e-6)


def test_torch_export_matches_eager_with_dynamic_length():
    config = small_config()
    model = randomize_(build_model(config)).eval()
    unit = padding_unit(config)
    units = torch.export.Dim("units", min=1, max=64)
    x = torch.randn(1, 24, 2 * unit)
    mask = valid_mask([40], 2 * unit)
    program = torch.export.export(model, (x, mask), dynamic_shapes=({2: unit * units}, {1: unit * units}))
    for length, valid in ((unit, 20), (5 * unit, 130)):
        x = torch.randn(1, 24, length)
        mask = valid_mask([valid], length)
        with torch.no_grad():
            for a, b in zip(model(x, mask), program.module()(x, mask)):
                assert torch.allclose(a, b, atol=1e-6)


def test_activitynet_style_model_global_attention_abs_pe_and_streams():
    config = small_config(input_dim=[16, 8])
    config.model.embd_dim = [16, 16]
    config.model.n_mha_win_size = [5, 5, 5, -1]
    config.model.use_abs_pe = True
    model = randomize_(build_model(config)).eval()
    x = torch.randn(1, 24, 96)     # longer than max_seq_len: position encoding is interpolated
    with torch.no_grad():
        logits, offsets = model(x, valid_mask([90], 96))
        scripted = torch.jit.script(model)(x, valid_mask([90], 96))
    assert logits.shape == (1, sum(level_lengths(96, 4, 2)), 3)
    assert torch.allclose(logits, scripted[0], atol=1e-6) and torch.allclose(offsets, scripted[1], atol=1e-6)


def test_unsupported_settings_are_named():
    config = small_config()
    config.model.use_rel_pe = True
    config.model.fpn_type = "fpn"
    with pytest.raises(ConfigError, match="use_rel_pe.*|.*fpn_type"):
        build_model(config)
    config = small_config()
    config.model.regression_range = config.model.regression_range[:2]
    with pytest.raises(ConfigError, match="regression_range"):
        build_model(config)
    config = small_config()
    config.model.n_mha_win_size = [5, 5]
    with pytest.raises(ConfigError, match="n_mha_win_size"):
        build_model(config)
    config = small_config()
    config.model.n_mha_win_size = 4
    with pytest.raises(ConfigError, match="n_mha_win_size must be odd"):
        build_model(config)
