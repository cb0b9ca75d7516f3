"""Export stage (PyTorch formats): TorchScript, torch.export and AOTInductor artifacts reload in a
fresh process through asl_edge.runtime and match eager PyTorch; metadata round trip; dynamic T;
clear errors for bad requests and corrupt artifacts."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys

import pytest
import torch
from helpers import randomize_, small_config

from asl_edge.cli import main
from asl_edge.config import config_to_dict
from asl_edge.model import build_model, padding_unit, save_checkpoint
from asl_edge.runtime import ArtifactError, load, read_metadata

WINDOW = 64


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    config = small_config()
    model = randomize_(build_model(config)).eval()
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(model, config, path)
    return path, model, config


def export(ckpt, out, *args):
    return main(["export", "--ckpt", str(ckpt), "--out", str(out), *args])


def sample(config, length, seed=0, valid=None):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(1, 24, length, generator=g)
    mask = torch.arange(length)[None] < (valid or length)
    return features * mask[:, None], mask


FRESH_PROCESS = r"""
import json, sys, torch
from asl_edge.runtime import load
backend = load(sys.argv[1])
features, mask = torch.load(sys.argv[2], weights_only=True)
outputs = backend.run(features, mask)
detections = backend.detect(features[0, :, :int(mask[0].sum())].t(), fps=30.0)
torch.save([o.contiguous() for o in outputs], sys.argv[3])
assert not [m for m in sys.modules if m.startswith("asl_edge.export")], "the runtime imported export code"
print(json.dumps(detections))
"""


def run_fresh(artifact_dir, features, mask, tmp_path):
    """Load and run the artifact in a new Python process that imports no export code."""
    inputs, outputs = tmp_path / "inputs.pt", tmp_path / "outputs.pt"
    torch.save([features, mask], inputs)
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(artifact_dir), str(inputs), str(outputs)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(outputs, weights_only=True), json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("fmt,args", [
    ("torchscript", []),
    ("exported", []),
    ("exported", ["--dynamic", "--max-length", "256", "--dynamic-batch"]),
    ("onnx", ["--dynamic", "--max-length", "256"]),
    ("onnx", ["--precision", "fp16"]),
    ("onnx-trt", []),
    pytest.param("aoti", [], marks=pytest.mark.slow),
])
def test_export_reloads_in_a_fresh_process_and_matches_eager(checkpoint, tmp_path, fmt, args):
    ckpt, model, config = checkpoint
    out = tmp_path / fmt
    assert export(ckpt, out, "--format", fmt, "--window", str(WINDOW), *args) == 0
    parity = json.loads((out / "parity.json").read_text())
    fp16 = "fp16" in args
    assert parity["passed"] and parity["detections"]["matched_fraction"] >= (0.9 if fp16 else 1.0)
    length = 4 * padding_unit(config) if "--dynamic" in args else WINDOW     # not the traced length
    features, mask = sample(config, length, valid=length - 7)
    outputs, detections = run_fresh(out, features, mask, tmp_path)
    with torch.no_grad():
        want = model(features, mask)
    for got, ref in zip(outputs, want):
        assert torch.allclose(got, ref, atol=2e-2 if fp16 else 1e-4), (got - ref).abs().max()
    eager = load(ckpt).detect(features[0, :, :length - 7].t(), fps=30.0)
    if not fp16:
        assert [d["label_id"] for d in detections] == [d["label_id"] for d in eager]
        assert max(abs(a["score"] - b["score"]) for a, b in zip(detections, eager)) < 1e-5


def test_torchscript_with_postprocess_returns_padded_detections(checkpoint, tmp_path):
    ckpt, model, config = checkpoint
    assert export(ckpt, tmp_path, "--format", "torchscript", "--window", str(WINDOW), "--postprocess",
                  "--batch", "2") == 0
    backend = load(tmp_path)
    features, mask = sample(config, WINDOW, valid=50)
    segments, scores, labels, count = backend.run(features.repeat(2, 1, 1), mask.repeat(2, 1))
    max_out = config.test_cfg.max_seg_num
    assert segments.shape == (2, max_out, 2) and labels.dtype == torch.int64 and count.dtype == torch.int32
    kept = int(count[0])
    assert torch.equal(labels[0, kept:], torch.full((max_out - kept,), -1))
    detections = backend.detect(features[0, :, :50].t(), fps=30.0)
    eager = load(ckpt).detect(features[0, :, :50].t(), fps=30.0)
    assert [d["label_id"] for d in detections] == [d["label_id"] for d in eager]


def batch_of(config, rows, length=WINDOW):
    """``rows`` different samples of ``length`` with different valid lengths, as one batch."""
    samples = [sample(config, length, seed=row, valid=length - 5 * row) for row in range(rows)]
    return torch.cat([f for f, _ in samples]), torch.cat([m for _, m in samples])


def test_a_fixed_batch_artifact_runs_any_batch_in_calls_of_its_own(checkpoint, tmp_path):
    ckpt, model, config = checkpoint
    assert export(ckpt, tmp_path, "--format", "torchscript", "--window", str(WINDOW), "--batch", "2",
                  "--no-parity") == 0
    backend = load(tmp_path)
    calls = []
    run = backend._run
    backend._run = lambda f, m: calls.append(f.shape[0]) or run(f, m)
    features, mask = batch_of(config, 5)
    outputs = backend.run(features, mask)
    assert calls == [2, 2, 2]                                   # the fifth row padded into the last call
    with torch.no_grad():
        want = [model(features[row:row + 1], mask[row:row + 1]) for row in range(5)]
    for index, got in enumerate(outputs):
        assert got.shape[0] == 5
        ref = torch.cat([w[index] for w in want])
        assert torch.allclose(got, ref, atol=1e-4), (got - ref).abs().max()


def test_a_large_cpu_batch_goes_in_calls_that_fit_the_frame_budget(checkpoint):
    ckpt, model, config = checkpoint
    backend = load(ckpt)
    assert backend.rows_per_call(WINDOW) == backend.CPU_FRAMES_PER_CALL // WINDOW
    backend.CPU_FRAMES_PER_CALL = 2 * WINDOW + 1
    calls = []
    run = backend._run
    backend._run = lambda f, m: calls.append(f.shape[0]) or run(f, m)
    features, mask = batch_of(config, 5)
    outputs = backend.run(features, mask)
    assert calls == [2, 2, 1]
    with torch.no_grad():
        want = model(features, mask)                            # the plain model, one call
    for got, ref in zip(outputs, want):
        assert torch.allclose(got, ref, atol=1e-5), (got - ref).abs().max()
    backend.CPU_FRAMES_PER_CALL = 1                             # a window longer than the budget: one row a call
    assert backend.rows_per_call(WINDOW) == 1


def test_metadata_round_trip(checkpoint, tmp_path):
    ckpt, model, config = checkpoint
    assert export(ckpt, tmp_path, "--format", "torchscript", "--window", str(WINDOW), "--no-parity") == 0
    meta, artifact = read_metadata(tmp_path)
    assert artifact == tmp_path / "model.ts"
    assert meta["config"] == config_to_dict(config)
    assert meta["class_names"] == ["jump", "run", "throw"]
    assert (meta["feat_stride"], meta["num_frames"], meta["window"], meta["batch"]) == (4, 16, WINDOW, 1)
    assert [i["name"] for i in meta["inputs"]] == ["features", "mask"]
    assert meta["inputs"][0]["shape"] == [1, 24, WINDOW]
    assert [o["name"] for o in meta["outputs"]] == ["cls_logits", "offsets"]
    assert meta["versions"]["torch"] == torch.__version__
    from asl_edge.export.metadata import weights_sha256

    assert meta["weights_sha256"] == weights_sha256(model)
    assert meta["weights_sha256"] != weights_sha256(randomize_(copy.deepcopy(model), seed=99))
    assert not (tmp_path / "parity.json").exists()


def test_static_artifact_rejects_other_lengths_clearly(checkpoint, tmp_path):
    ckpt, model, config = checkpoint
    assert export(ckpt, tmp_path, "--format", "exported", "--window", str(WINDOW), "--no-parity") == 0
    backend = load(tmp_path)
    with pytest.raises(ValueError, match="exported for T = 64"):
        backend.run(*sample(config, 128))
    with pytest.raises(ValueError, match="channels"):
        backend.run(torch.zeros(1, 5, WINDOW), torch.ones(1, WINDOW, dtype=torch.bool))
    with pytest.raises(ValueError, match="window of 64"):
        backend.detect(torch.zeros(100, 24), fps=30.0)


@pytest.mark.parametrize("args,message", [
    (["--format", "torchscript", "--window", "65"], "not an input length"),
    (["--format", "torchscript", "--precision", "fp16"], "needs --device cuda"),
    (["--format", "torchscript", "--postprocess", "--dynamic"], "fixed window"),
])
def test_bad_export_requests_are_clear_errors(checkpoint, tmp_path, capsys, args, message):
    ckpt, _, _ = checkpoint
    assert export(ckpt, tmp_path, *args) == 2
    assert message in capsys.readouterr().err


def test_missing_or_corrupt_artifacts_are_clear_errors(checkpoint, tmp_path):
    ckpt, _, _ = checkpoint
    with pytest.raises(ArtifactError, match="not an asl-edge export"):
        load(tmp_path)
    assert export(ckpt, tmp_path, "--format", "torchscript", "--window", str(WINDOW), "--no-parity") == 0
    (tmp_path / "model.ts").write_bytes(b"truncated")
    with pytest.raises(ArtifactError, match="not a loadable TorchScript"):
        load(tmp_path)
    (tmp_path / "model.ts").unlink()
    with pytest.raises(ArtifactError, match="does not exist"):
        load(tmp_path)
    (tmp_path / "metadata.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not readable JSON"):
        load(tmp_path)
    bad_ckpt = tmp_path / "bad.pt"
    bad_ckpt.write_bytes(b"nope")
    assert export(bad_ckpt, tmp_path / "x", "--format", "torchscript") == 2


def test_mismatched_or_malformed_metadata_is_a_clear_error(checkpoint, tmp_path):
    ckpt, _, config = checkpoint
    plain, post = tmp_path / "plain", tmp_path / "post"
    assert export(ckpt, plain, "--format", "torchscript", "--window", str(WINDOW), "--no-parity") == 0
    assert export(ckpt, post, "--format", "torchscript", "--window", str(WINDOW), "--postprocess",
                  "--no-parity") == 0
    (post / "model.ts").write_bytes((plain / "model.ts").read_bytes())
    with pytest.raises(ArtifactError, match="do not belong together"):
        load(post).run(*sample(config, WINDOW))
    meta = json.loads((plain / "metadata.json").read_text())
    (plain / "metadata.json").write_text(json.dumps({**meta, "window": "sixty-four"}))
    with pytest.raises(ArtifactError, match="malformed"):
        load(plain)


def test_postprocess_refuses_a_config_without_nms(tmp_path, capsys):
    config = small_config()
    config.test_cfg.nms_method = "none"
    save_checkpoint(build_model(config).eval(), config, tmp_path / "m.pt")
    assert export(tmp_path / "m.pt", tmp_path / "out", "--format", "torchscript", "--postprocess",
                  "--window", str(WINDOW)) == 2
    assert "nms_method: none" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torchscript", "exported", "aoti", "onnx"])
def test_thumos_size_export_reloads_and_matches(tmp_path, fmt):
    """The THUMOS network (29 M parameters) at T = 2304, reloaded in a fresh process."""
    from asl_edge.config import load_config

    config = load_config("thumos_i3d")
    model = build_model(config).eval()
    ckpt = tmp_path / "thumos.pt"
    save_checkpoint(model, config, ckpt)
    assert export(ckpt, tmp_path / fmt, "--format", fmt) == 0
    parity = json.loads((tmp_path / fmt / "parity.json").read_text())
    assert parity["passed"], parity
    g = torch.Generator().manual_seed(3)
    features = torch.randn(1, 2048, 2304, generator=g)
    mask = torch.arange(2304)[None] < 2000
    outputs, detections = run_fresh(tmp_path / fmt, features * mask[:, None], mask, tmp_path)
    with torch.no_grad():
        want = model(features * mask[:, None], mask)
    for got, ref in zip(outputs, want):
        assert torch.allclose(got, ref, atol=1e-4)
    eager = load(ckpt).detect((features * mask[:, None])[0, :, :2000].t(), fps=30.0)
    assert [d["label_id"] for d in detections] == [d["label_id"] for d in eager]


def test_engine_export_without_tensorrt_fails_cleanly_and_keeps_the_graph(checkpoint, tmp_path, capsys):
    pytest.importorskip("onnx")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed: the engine is built instead")
    except ImportError:
        pass
    ckpt, _, _ = checkpoint
    assert export(ckpt, tmp_path, "--format", "engine", "--window", str(WINDOW)) == 2
    err = capsys.readouterr().err
    assert "TensorRT is not installed" in err and "trtexec --onnx=" in err and "--staticPlugins=" in err
    meta, artifact = read_metadata(tmp_path)
    assert meta["format"] == "onnx-trt" and artifact.name == "model_trt.onnx"


# ------------------------------------------ lengths, position encoding and what parity compares with


@pytest.fixture(scope="module")
def abs_pe_checkpoint(tmp_path_factory):
    """small_config with absolute position encoding: max_seq_len 64, padding unit 32."""
    config = small_config()
    config.model.use_abs_pe = True
    model = randomize_(build_model(config)).eval()
    path = tmp_path_factory.mktemp("abs_pe") / "model.pt"
    save_checkpoint(model, config, path)
    return path, model, config


@pytest.mark.parametrize("fmt", ["exported", "onnx", "torchscript"])
def test_dynamic_export_with_absolute_position_encoding_runs_every_length_it_advertises(abs_pe_checkpoint,
                                                                                        tmp_path, fmt):
    ckpt, model, config = abs_pe_checkpoint
    assert export(ckpt, tmp_path, "--format", fmt, "--dynamic", "--max-length", "256") == 0
    meta, _ = read_metadata(tmp_path)
    assert (meta["length_multiple"], meta["min_length"], meta["max_length"]) == (32, 64, 256)
    parity = json.loads((tmp_path / "parity.json").read_text())
    assert parity["passed"] and sorted(parity["outputs_per_length"]) == ["64", "96"]   # traced and another
    backend = load(tmp_path)
    for length in range(64, 257, 32):
        features, mask = sample(config, length, seed=length, valid=length - 9)
        with torch.no_grad():
            want = model(features, mask)
        for got, ref in zip(backend.run(features, mask), want):
            assert torch.allclose(got, ref, atol=1e-4), (length, (got - ref).abs().max())
    with pytest.raises(ValueError, match="from 64 up to 256"):      # below max_seq_len the network differs
        backend.run(*sample(config, 32))


def test_parity_compares_with_what_infer_gives_and_names_a_window_that_changes_results(abs_pe_checkpoint,
                                                                                        checkpoint, tmp_path, capsys):
    ckpt, model, config = abs_pe_checkpoint
    assert export(ckpt, tmp_path / "abs", "--format", "torchscript", "--window", "96") == 1
    parity = json.loads((tmp_path / "abs" / "parity.json").read_text())
    short = parity["videos"]["short"]
    assert not parity["passed"] and (short["checkpoint_T"], short["artifact_T"]) == (64, 96)
    assert "absolute position encoding" in short["by_design"] and "--window 64" in short["by_design"]
    assert "by design" in capsys.readouterr().err
    video = sample(config, 50, seed=5)[0][0].t()          # the artifact does differ from `asl-edge infer`
    assert load(tmp_path / "abs").detect(video, fps=30.0) != load(ckpt).detect(video, fps=30.0)
    # without position encoding a larger window changes nothing, and parity says so
    assert export(checkpoint[0], tmp_path / "plain", "--format", "torchscript", "--window", "96") == 0
    plain = json.loads((tmp_path / "plain" / "parity.json").read_text())["videos"]["short"]
    assert (plain["checkpoint_T"], plain["artifact_T"], plain["matched_fraction"]) == (64, 96, 1.0)


def test_dynamic_export_at_one_padding_unit(tmp_path):
    config = small_config(max_seq_len=32)                 # the window equals the padding unit
    model = randomize_(build_model(config)).eval()
    save_checkpoint(model, config, tmp_path / "m.pt")
    assert export(tmp_path / "m.pt", tmp_path / "out", "--format", "exported", "--dynamic") == 0
    backend = load(tmp_path / "out")
    for length in (32, 64, 128):
        features, mask = sample(config, length, seed=length, valid=length - 3)
        with torch.no_grad():
            want = model(features, mask)
        for got, ref in zip(backend.run(features, mask), want):
            assert torch.allclose(got, ref, atol=1e-4)


@pytest.mark.parametrize("dataset, steps, runs_at", [
    ({"force_upsampling": True}, 1000, 64),                # every video is resized to max_seq_len
    ({"downsample_rate": 3}, 700, 256),                    # ceil(700 / 3) = 234 steps -> T = 256
])
def test_dynamic_artifacts_take_the_lengths_the_network_grid_gives(tmp_path, dataset, steps, runs_at):
    config = small_config(**dataset)
    save_checkpoint(randomize_(build_model(config)).eval(), config, tmp_path / "m.pt")
    assert export(tmp_path / "m.pt", tmp_path / "ts", "--format", "torchscript", "--dynamic",
                  "--max-length", "256", "--no-parity") == 0
    backend = load(tmp_path / "ts")
    seen = []
    run = backend.run
    backend.run = lambda features, mask: seen.append(features.shape[2]) or run(features, mask)
    features = torch.randn(steps, 24, generator=torch.Generator().manual_seed(0))
    detections = backend.detect(features, fps=30.0)
    assert seen == [runs_at]
    want = load(tmp_path / "m.pt").detect(features, fps=30.0)
    assert [d["label_id"] for d in detections] == [d["label_id"] for d in want]


def test_a_video_beyond_the_dynamic_maximum_is_refused_with_its_network_length(tmp_path):
    config = small_config(downsample_rate=3)
    save_checkpoint(build_model(config).eval(), config, tmp_path / "m.pt")
    assert export(tmp_path / "m.pt", tmp_path / "ts", "--format", "torchscript", "--dynamic",
                  "--max-length", "256", "--no-parity") == 0
    # 769 features -> every 3rd: 257 steps (not 256), which need T = 288 > 256
    with pytest.raises(ValueError, match="769 features make 257 network steps, which need T = 288"):
        load(tmp_path / "ts").detect(torch.zeros(769, 24), fps=30.0)


def test_exporting_into_the_checkpoint_folder_keeps_the_checkpoint_loadable(checkpoint, tmp_path):
    ckpt, model, config = checkpoint
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(ckpt, run / "model.pt")
    assert export(run / "model.pt", run, "--format", "torchscript", "--window", str(WINDOW), "--no-parity") == 2
    assert export(run / "model.pt", run, "--format", "torchscript", "--window", str(WINDOW), "--no-parity",
                  "--overwrite") == 0
    assert load(run / "model.pt").format == "checkpoint"
    assert load(run).format == "torchscript"
    from asl_edge.localizer import Localizer

    assert Localizer.from_checkpoint(run / "model.pt").config.dataset.max_seq_len == 64


def test_cuda_graphs_are_refused_clearly_where_they_cannot_work(checkpoint, tmp_path):
    ckpt, _, _ = checkpoint
    assert export(ckpt, tmp_path / "post", "--format", "torchscript", "--window", str(WINDOW), "--postprocess",
                  "--no-parity") == 0
    with pytest.raises(ValueError, match="decode \\+ NMS in its graph.*export without --postprocess"):
        load(tmp_path / "post", device="cpu", cuda_graphs=True)
    assert export(ckpt, tmp_path / "ep", "--format", "exported", "--window", str(WINDOW), "--no-parity") == 0
    with pytest.raises(ValueError, match="cuda_graphs is for the eager \\(checkpoint\\) and TorchScript backends, "
                                         "not the exported format"):
        load(tmp_path / "ep", cuda_graphs=True)
    with pytest.raises(ValueError, match="cuda_graphs needs a CUDA device, not cpu"):
        load(ckpt, cuda_graphs=True)
