"""CUDA graphs in the runtime backends: replaying a captured graph gives what the plain call gives,
call after call with changing inputs, on the backend's device whatever the current device is.
Skipped without a CUDA device; ``benchmarks/gpu_check.sh`` runs it on a lent GPU."""

from __future__ import annotations

import pytest
import torch
from helpers import randomize_, small_config

from asl_edge.cli import main
from asl_edge.model import build_model, save_checkpoint
from asl_edge.runtime import load

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (CUDA graphs need one)")

WINDOW = 64


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """A checkpoint and its TorchScript export (network outputs), both loadable as backends."""
    folder = tmp_path_factory.mktemp("cuda_graphs")
    config = small_config()
    save_checkpoint(randomize_(build_model(config)).eval(), config, folder / "model.pt")
    assert main(["export", "--ckpt", str(folder / "model.pt"), "--format", "torchscript", "--window",
                 str(WINDOW), "--out", str(folder / "ts"), "--no-parity"]) == 0
    return {"checkpoint": folder / "model.pt", "torchscript": folder / "ts"}


def inputs(length: int, valid: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(length)[None] < valid
    return torch.randn(1, 24, length, generator=g) * mask[:, None], mask


def device_under_test(which: str) -> str:
    if which == "current":
        return "cuda:0"
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices: a backend on cuda:1 while cuda:0 is the current device")
    return "cuda:1"


@pytest.mark.parametrize("fmt", ["checkpoint", "torchscript"])
@pytest.mark.parametrize("which", ["current", "other"])
def test_cuda_graph_replays_equal_plain_calls(artifacts, fmt, which):
    device = device_under_test(which)
    with torch.cuda.device(0):
        plain = load(artifacts[fmt], device=device)
        graphed = load(artifacts[fmt], device=device, cuda_graphs=True)
        kept = []
        for seed, valid in enumerate((64, 50, 13, 64, 1)):       # changing values and valid lengths
            features, mask = inputs(WINDOW, valid, seed)
            want, got = plain.run(features, mask), graphed.run(features, mask)
            for w, g in zip(want, got):
                assert g.device == torch.device(device)
                torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)
            kept.append((want, got))
        for want, got in kept:                  # later replays do not overwrite earlier results
            for w, g in zip(want, got):
                torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)
        features, mask = inputs(2 * WINDOW, 100, seed=9)      # a new shape is captured anew
        if fmt == "checkpoint":
            for w, g in zip(plain.run(features, mask), graphed.run(features, mask)):
                torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)
        got = graphed.detect(features[0, :, :50].t(), fps=30.0)
        want = plain.detect(features[0, :, :50].t(), fps=30.0)
        assert [d["label_id"] for d in got] == [d["label_id"] for d in want]
        assert max(abs(a["score"] - b["score"]) for a, b in zip(got, want)) < 1e-5
