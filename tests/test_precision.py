"""CPU low precision: ``asl-edge export --format openvino --precision bf16|int8 [--calibration ...]``
artifacts load through asl_edge.runtime and keep detections within their stated tolerances of eager
fp32; calibration sources (a folder of .npy files, a dataset config, the checkpoint's own data) and
clear errors for bad calibration and unsupported precision/format combinations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import randomize_, small_config

from asl_edge.cli import main
from asl_edge.export.calibration import calibration_inputs
from asl_edge.export.parity import TOLERANCES, _match
from asl_edge.export.spec import ExportError, ExportSpec
from asl_edge.localizer import Localizer
from asl_edge.model import build_model, save_checkpoint
from asl_edge.runtime import load, read_metadata
from asl_edge.train.synthetic import make_synthetic

WINDOW = 64


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    config = small_config()
    torch.manual_seed(0)                         # the same network whichever tests ran before
    model = randomize_(build_model(config)).eval()
    folder = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(model, config, folder / "model.pt")
    calibration = folder / "calibration"
    calibration.mkdir()
    rng = np.random.default_rng(0)
    for i, length in enumerate((40, 64, 100)):
        np.save(calibration / f"video_{i}.npy", rng.standard_normal((length, 24)).astype(np.float32))
    return folder / "model.pt", model, config, calibration


def export(ckpt, out, *args):
    return main(["export", "--ckpt", str(ckpt), "--out", str(out), "--format", "openvino", "--window", str(WINDOW),
                 *args])


@pytest.fixture(scope="module", params=["bf16", "int8"])
def low_precision(request, checkpoint, tmp_path_factory):
    ckpt, model, config, calibration = checkpoint
    out = tmp_path_factory.mktemp(request.param)
    extra = ["--calibration", str(calibration)] if request.param == "int8" else []
    assert export(ckpt, out, "--precision", request.param, *extra) == 0      # 0: parity within tolerance
    return request.param, out


def test_low_precision_export_loads_and_keeps_detections_within_tolerance(checkpoint, low_precision):
    _, model, config, _ = checkpoint
    precision, out = low_precision
    tol = TOLERANCES[precision]
    meta, _ = read_metadata(out)
    assert meta["format"] == "openvino" and meta["precision"] == precision
    assert (out / meta["weights_file"]).is_file() and "openvino" in meta["versions"]
    if precision == "int8":
        assert meta["calibration"].startswith("4 windows of T = 64 from 3 .npy files")
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] and parity["precision"] == precision and parity["tolerances"] == tol
    assert parity["detections"]["eager_detections"] > 0

    backend = load(out)
    g = torch.Generator().manual_seed(7)                      # inputs the parity check did not see
    video = torch.randn(50, 24, generator=g)
    features = torch.zeros(1, 24, WINDOW)
    features[0, :, :50] = video.t()
    mask = torch.arange(WINDOW)[None] < 50
    with torch.inference_mode():
        want = model(features, mask)
    for got, ref in zip(backend.run(features, mask), want):
        assert got.dtype == torch.float32
        assert float((got - ref).abs().max()) / max(1.0, float(ref.abs().max())) <= tol["output_rel"]
    step = config.dataset.feat_stride / 30.0
    matched = _match(Localizer(model, config).detect(video, fps=30.0), backend.detect(video, fps=30.0),
                     tol["score"], tol["boundary_steps"] * step)
    assert matched["eager_detections"] > 0 and matched["matched_fraction"] >= tol["matched"]


def test_calibration_windows_from_a_folder_and_from_a_dataset_config(checkpoint, tmp_path):
    _, _, _, folder = checkpoint
    spec = ExportSpec(format="openvino", precision="int8", window=WINDOW, calibration=str(folder))
    samples, origin = calibration_inputs(spec, small_config())
    # 40 + 64 + 100 steps: one window each, then the second of the 100-step video, padded and masked
    assert [int(mask.sum()) for _, mask in samples] == [40, 64, 64, 36]
    assert all(f.shape == (1, 24, WINDOW) and not f[0, :, int(m.sum()):].any() for f, m in samples)
    assert origin == f"4 windows of T = 64 from 3 .npy files in {folder}"

    data = make_synthetic(tmp_path / "synth", "easy", seed=0)                 # 32-channel features
    spec = ExportSpec(format="openvino", precision="int8", window=WINDOW, calibration=str(data["config"]),
                      calibration_windows=5)
    samples, origin = calibration_inputs(spec, small_config(input_dim=32))
    assert len(samples) == 5 and "training split (training)" in origin


def _wrong_channels(folder):
    np.save(folder / "v.npy", np.zeros((30, 5), np.float32))
    return folder


def _not_an_array(folder):
    (folder / "v.npy").write_text("not an array")
    return folder


@pytest.mark.parametrize("make,message", [
    (lambda folder: folder / "missing", "neither a folder of .npy feature files nor a dataset config"),
    (lambda folder: folder, "holds no .npy feature files"),
    (_wrong_channels, "5 channels, the model expects 24"),
    (_not_an_array, "it is not a NumPy .npy array"),
    (None, "the checkpoint's own training data cannot be read here"),
])
def test_bad_calibration_is_a_clear_error(checkpoint, tmp_path, capsys, make, message):
    ckpt = checkpoint[0]
    source = tmp_path / "calibration"
    source.mkdir()
    args = ["--calibration", str(make(source))] if make else []
    assert export(ckpt, tmp_path / "out", "--precision", "int8", *args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "model.xml").exists()


@pytest.mark.parametrize("args,message", [
    (["--format", "onnx", "--precision", "bf16"], "the onnx format takes precision fp32 or fp16, not bf16"),
    (["--format", "torchscript", "--precision", "int8"], "int8 exports are for the CPU through --format openvino"),
    (["--format", "openvino", "--precision", "fp16"], "the openvino format takes precision fp32 or bf16 or int8"),
    (["--format", "openvino", "--precision", "bf16", "--calibration", "x"], "--calibration is for --precision int8"),
    (["--format", "openvino", "--precision", "int8", "--device", "cuda"], "are for the CPU: drop --device cuda"),
    (["--format", "openvino", "--postprocess"], "drop --postprocess"),
    (["--format", "openvino", "--dynamic-batch"], "drop --dynamic-batch"),
])
def test_unsupported_precision_and_format_combinations_are_clear_errors(checkpoint, tmp_path, capsys, args,
                                                                         message):
    ckpt = checkpoint[0]
    assert main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path), "--window", str(WINDOW), *args]) == 2
    assert message in capsys.readouterr().err


def test_export_error_type_for_the_python_api(checkpoint, tmp_path):
    from asl_edge.export.exporter import export_checkpoint

    with pytest.raises(ExportError, match="takes precision"):
        export_checkpoint(checkpoint[0], ExportSpec(format="aoti", precision="bf16", window=WINDOW), tmp_path)
