"""``asl-edge bench``: the statistics on known inputs, ratios against the baseline, and the quick
run end to end (JSON with the documented keys, Markdown, PNG plots)."""

from __future__ import annotations

import json
import time

import pytest

from asl_edge.bench.measure import MIN_RUNS, measure, percentiles
from asl_edge.bench.report import SCHEMA, add_ratios, markdown
from asl_edge.cli import main

ROW_KEYS = {"stage", "case", "device", "precision", "batch", "window", "p50_ms", "p90_ms", "p99_ms", "mean_ms",
            "min_ms", "max_ms", "runs", "throughput_per_s"}
MACHINE_KEYS = {"cpu", "cores", "torch_threads", "cpu_flags", "gpu", "cuda", "python", "platform", "torch",
                "onnxruntime", "openvino", "asl_edge", "date"}


def test_percentiles_of_known_timings():
    stats = percentiles([i / 1000 for i in range(1, 101)])           # 1 ... 100 ms
    assert stats["p50_ms"] == pytest.approx(50.5) and stats["p90_ms"] == pytest.approx(90.1)
    assert stats["p99_ms"] == pytest.approx(99.01) and stats["mean_ms"] == pytest.approx(50.5)
    assert (stats["min_ms"], stats["max_ms"], stats["runs"]) == (pytest.approx(1.0), pytest.approx(100.0), 100)
    assert percentiles([0.002])["p99_ms"] == pytest.approx(2.0)
    with pytest.raises(ValueError):
        percentiles([])


def test_measure_counts_its_runs_and_not_the_warmup():
    calls = []
    result = measure(lambda: calls.append(1), runs=7, warmup=3)
    assert len(calls) == 10 and result["runs"] == 7 and result["peak_rss_mb"] > 0
    assert result["gpu_max_allocated_mb"] is None


def test_measure_takes_fewer_runs_of_a_slow_case_but_never_below_the_minimum():
    # one call takes >= 30 ms; 7 would take >= 210 ms against a 100 ms budget: as many as fit
    # (at most 3), but never fewer than MIN_RUNS = 3
    calls = []
    result = measure(lambda: (calls.append(1), time.sleep(0.03)), runs=7, warmup=1, budget_s=0.1)
    assert result["runs"] == MIN_RUNS == 3 and result["runs_asked"] == 7 and len(calls) == 1 + 3
    fast = measure(lambda: None, runs=7, warmup=0, budget_s=0.1)
    assert fast["runs"] == 7 == fast["runs_asked"]


def test_ratios_are_against_the_baseline_at_the_same_shape():
    rows = [{"stage": "network", "case": "base", "batch": 1, "window": 576, "p50_ms": 100.0},
            {"stage": "network", "case": "base", "batch": 8, "window": 576, "p50_ms": 400.0},
            {"stage": "network", "case": "fast", "batch": 1, "window": 576, "p50_ms": 25.0},
            {"stage": "network", "case": "fast", "batch": 8, "window": 576, "p50_ms": 200.0},
            {"stage": "network", "case": "broken", "batch": None, "window": None, "error": "no"},
            {"stage": "postprocess", "case": "pure PyTorch", "batch": 1, "window": 576, "p50_ms": 10.0},
            {"stage": "postprocess", "case": "native CPU op", "batch": 1, "window": 576, "p50_ms": 1.0}]
    add_ratios(rows, "base")
    assert [r.get("ratio_vs_baseline") for r in rows] == [1.0, 1.0, 0.25, 0.5, None, 1.0, 0.1]


@pytest.mark.slow
def test_the_quick_run_writes_json_markdown_and_plots(tmp_path):
    assert main(["bench", "--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["schema"] == SCHEMA and report["quick"] and MACHINE_KEYS <= set(report["machine"])
    stages = {r["stage"] for r in report["results"]}
    assert stages == {"network", "window", "postprocess", "features", "stream"}
    measured = [r for r in report["results"] if "error" not in r]
    assert all(ROW_KEYS <= set(r) and r["runs"] >= 3 for r in measured)
    network = [r for r in measured if r["stage"] == "network"]
    assert {r["case"] for r in network} >= {"eager, reference ops", "eager", "torchscript"}
    assert all(r["ratio_vs_baseline"] > 0 for r in network)
    for name in ("latency_per_backend.png", "latency_vs_window.png", "throughput_vs_batch.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| eager, reference ops | cpu | fp32 | 1 | 576 |" in (tmp_path / "bench.md").read_text()
    assert markdown(report).startswith("# asl-edge bench (quick)")
    assert main(["bench", "--stages", "nothing", "--out", str(tmp_path)]) == 2
