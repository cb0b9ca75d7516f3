"""Checkpoint round trip, error reporting, and ActionFormer import."""

import pytest
import torch

from actionformer_reference import actionformer_forward, actionformer_state_dict
from asl_edge.model import (
    CheckpointError,
    build_model,
    from_actionformer_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from helpers import randomize_, small_config, valid_mask


def test_round_trip_keeps_config_class_names_and_outputs(tmp_path):
    config = small_config(theta=0.3, channel_scale="head")
    model = randomize_(build_model(config)).eval()
    path = tmp_path / "m.pt"
    save_checkpoint(model, config, path, meta={"note": "test"})
    ckpt = load_checkpoint(path)
    assert ckpt.config == config
    assert ckpt.class_names == ["jump", "run", "throw"]
    assert ckpt.meta == {"note": "test"}
    x = torch.randn(1, 24, 64)
    mask = valid_mask([50], 64)
    with torch.no_grad():
        for a, b in zip(model(x, mask), ckpt.model(x, mask)):
            assert torch.equal(a, b)


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    config = small_config()
    path = tmp_path / "m.pt"
    save_checkpoint(build_model(config), config, path)
    before = path.read_bytes()

    def failing_save(obj, f, *args, **kwargs):
        with open(f, "wb") as fd:
            fd.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(build_model(config), config, path)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="is not an asl-edge checkpoint or is damaged"):
        load_checkpoint(bad)
    # a truncated real checkpoint
    config = small_config()
    good = tmp_path / "good.pt"
    save_checkpoint(build_model(config), config, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="or is damaged"):
        load_checkpoint(truncated)


class Payload:
    """Loading this would run arbitrary code under a plain pickle load."""

    def __reduce__(self):
        return (print, ("unpickled!",))


def test_weights_only_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "asl-edge-checkpoint", "obj": Payload()}, path)
    with pytest.raises(CheckpointError, match="or is damaged") as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and "weights_only=False" not in message   # no advice to unpickle it
    assert "weights_only" in str(info.value.__cause__)                    # torch's detail stays chained


def test_foreign_dict_and_actionformer_hint(tmp_path):
    path = tmp_path / "af.pth.tar"
    torch.save({"epoch": 1, "state_dict_ema": {}}, path)
    with pytest.raises(CheckpointError, match="import-checkpoint"):
        load_checkpoint(path)


def test_weight_mismatch_lists_every_difference(tmp_path):
    config = small_config()
    model = build_model(config)
    path = tmp_path / "m.pt"
    save_checkpoint(model, config, path)
    payload = torch.load(path, weights_only=True)
    state = payload["state_dict"]
    del state["neck.0.weight"]
    state["extra.weight"] = torch.zeros(3)
    state["cls_head.classifier.bias"] = torch.zeros(7)
    torch.save(payload, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    text = str(err.value)
    assert "missing (1): neck.0.weight" in text
    assert "unexpected (1): extra.weight" in text
    assert "cls_head.classifier.bias: checkpoint (7,) vs model (3,)" in text


ARCH = [2, 1, 3]


def write_actionformer_checkpoint(path, sd, ema=True):
    prefixed = {"module." + k: v for k, v in sd.items()}
    payload = {"epoch": 7, "state_dict": prefixed}
    if ema:
        payload["state_dict_ema"] = prefixed
    torch.save(payload, path)


def test_actionformer_import_matches_independent_reference(tmp_path):
    config = small_config(theta=0.4)                    # the import must switch the channel branch off
    sd = actionformer_state_dict(24, 32, 3, ARCH, seed=3)
    path = tmp_path / "af.pth.tar"
    write_actionformer_checkpoint(path, sd)
    ckpt = from_actionformer_checkpoint(path, config)
    model = ckpt.model
    assert model.stem[0].attn.theta == 0.0 and ckpt.config.model.tca.theta == 0.0
    assert ckpt.meta["weights"] == "state_dict_ema"
    x = torch.randn(2, 24, 64)
    mask = valid_mask([64, 37], 64)
    with torch.no_grad():
        logits, offsets = model(x, mask)
        ref_logits, ref_offsets = actionformer_forward(sd, x, mask, ARCH, heads=2, window=5)
    assert torch.allclose(logits, ref_logits, atol=1e-5), (logits - ref_logits).abs().max()
    assert torch.allclose(offsets, ref_offsets, atol=1e-5), (offsets - ref_offsets).abs().max()


def test_actionformer_import_errors_name_the_keys(tmp_path):
    config = small_config()
    sd = actionformer_state_dict(24, 32, 3, ARCH)
    del sd["backbone.stem.0.attn.key.bias"]
    sd["backbone.stem.0.attn.rel_pe"] = torch.zeros(1, 1, 2, 5)
    path = tmp_path / "af.pth.tar"
    write_actionformer_checkpoint(path, sd)
    with pytest.raises(CheckpointError, match="backbone.stem.0.attn.rel_pe"):
        from_actionformer_checkpoint(path, config)
    del sd["backbone.stem.0.attn.rel_pe"]
    sd["cls_head.cls_head.conv.bias"] = torch.zeros(5)
    write_actionformer_checkpoint(path, sd)
    with pytest.raises(CheckpointError) as err:
        from_actionformer_checkpoint(path, config)
    assert "stem.0.attn.k_proj.bias" in str(err.value) and "cls_head.classifier.bias" in str(err.value)
    torch.save({"epoch": 1}, path)
    with pytest.raises(CheckpointError, match="not an ActionFormer checkpoint"):
        from_actionformer_checkpoint(path, config)


def test_actionformer_import_without_ema_falls_back_with_warning(tmp_path):
    sd = actionformer_state_dict(24, 32, 3, ARCH)
    path = tmp_path / "af.pth.tar"
    write_actionformer_checkpoint(path, sd, ema=False)
    with pytest.warns(UserWarning, match="no EMA weights"):
        from_actionformer_checkpoint(path, small_config())
