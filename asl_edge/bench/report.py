"""The benchmark's outputs: ``bench.json`` (stable keys, below), ``bench.md`` and PNG plots.

``bench.json``::

    {"schema": "asl-edge-bench/1", "quick": bool, "machine": {cpu, cores, torch_threads,
     cpu_flags, gpu, cuda, python, platform, torch, onnxruntime, openvino, asl_edge, date},
     "baseline": {"case", "precision", "postprocess"}, "wall_s",
     "results": [{stage, case, device, precision, batch, window, p50_ms, p90_ms, p99_ms, mean_ms,
                  min_ms, max_ms, runs, peak_rss_mb, gpu_max_allocated_mb, throughput_per_s,
                  ratio_vs_baseline} | {stage, case, ..., error}]}

``ratio_vs_baseline`` is the row's p50 over the baseline's p50 at the same stage, batch and
window (network and whole-window rows: eager fp32 with the pure-PyTorch ops; post-processing
rows: pure PyTorch; features rows: ``i3d-rgb`` PyTorch eager fp32, measured in the same run):
below 1 is faster. Features rows also have ``ms_per_clip``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List

SCHEMA = "asl-edge-bench/1"


def add_ratios(rows: List[Dict], baseline_case: str, features_baseline: str = "") -> List[Dict]:
    """Set ``ratio_vs_baseline`` on network rows (vs ``baseline_case`` at the same batch and
    window), post-processing rows (vs the pure-PyTorch one) and features rows (vs
    ``features_baseline`` fp32 at the same batch)."""
    reference = {(r["stage"], r["batch"], r["window"]): r["p50_ms"] for r in rows
                 if "p50_ms" in r and (r["case"] in (baseline_case, "pure PyTorch")
                                       or (r["case"], r.get("precision")) == (features_baseline, "fp32"))}
    for r in rows:
        base = reference.get((r["stage"], r["batch"], r["window"]))
        if "p50_ms" in r and base and r["stage"] in ("network", "window", "postprocess", "features"):
            r["ratio_vs_baseline"] = r["p50_ms"] / base
    return rows


def _cell(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(report: Dict) -> str:
    """One table per stage (features: ms per clip where the others have the window); the machine first."""
    m = report["machine"]
    lines = [f"# asl-edge bench{' (quick)' if report['quick'] else ''}", "",
             f"{m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), flags "
             f"{' '.join(m['cpu_flags']) or '–'}; GPU {m['gpu'] or 'none'}; torch {m['torch']}, onnxruntime "
             f"{m['onnxruntime'] or '–'}, openvino {m['openvino'] or '–'}; {m['date']}", ""]
    units = {"network": "windows/s", "window": "windows/s", "postprocess": "windows/s", "features": "clips/s",
             "stream": "stream-s/wall-s"}
    for stage in units:
        rows = [r for r in report["results"] if r["stage"] == stage]
        if not rows:
            continue
        shape = "ms/clip" if stage == "features" else "window"
        lines += [f"## {stage}", "", f"| case | device | precision | batch | {shape} | p50 ms | p90 ms | p99 ms | "
                  f"{units[stage]} | × baseline | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if "error" in r:
                lines.append(f"| {r['case']} | {r['device']} | {r['precision']} | {_cell(r['batch'])} | "
                             f"{_cell(r['window'])} | not run: {' '.join(r['error'].split())[:160]} |||||||")
                continue
            lines.append(f"| {r['case']} | {r['device']} | {r['precision']} | {_cell(r['batch'])} | "
                         f"{_cell(r.get('ms_per_clip') if stage == 'features' else r['window'], 1)} | "
                         f"{_cell(r['p50_ms'], 2)} | {_cell(r['p90_ms'], 2)} | "
                         f"{_cell(r['p99_ms'], 2)} | {_cell(r['throughput_per_s'], 2)} | "
                         f"{_cell(r.get('ratio_vs_baseline'), 3)} | {_cell(r.get('peak_rss_mb'), 0)} |")
        lines.append("")
    return "\n".join(lines)


def _label(row: Dict) -> str:
    return f"{row['case']} {row['precision']}"


def plots(report: Dict, out: Path) -> List[Path]:
    """latency_per_backend.png (B1 at the largest window), latency_vs_window.png (B1) and
    throughput_vs_batch.png (largest window), from the network rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["results"] if r["stage"] == "network" and "p50_ms" in r]
    if not rows:
        return []
    windows = sorted({r["window"] for r in rows})
    largest, written = windows[-1], []

    def save(fig, filename: str) -> None:
        fig.tight_layout()
        fig.savefig(out / filename, dpi=110)
        plt.close(fig)
        written.append(out / filename)

    b1 = [r for r in rows if r["batch"] == 1 and r["window"] == largest]
    if b1:
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(b1) + 1.5))
        ax.barh([_label(r) for r in b1], [r["p50_ms"] for r in b1], color="#4477aa")
        ax.set_xlabel(f"p50 latency (ms), batch 1, T = {largest}")
        ax.invert_yaxis()
        save(fig, "latency_per_backend.png")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label in dict.fromkeys(_label(r) for r in rows):
        points = sorted((r["window"], r["p50_ms"]) for r in rows if _label(r) == label and r["batch"] == 1)
        if points:
            ax.plot(*zip(*points), marker="o", label=label)
    ax.set(xlabel="window T (features)", ylabel="p50 latency (ms), batch 1", xticks=windows)
    ax.legend(fontsize=7)
    save(fig, "latency_vs_window.png")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label in dict.fromkeys(_label(r) for r in rows):
        points = sorted((r["batch"], r["throughput_per_s"]) for r in rows
                        if _label(r) == label and r["window"] == largest)
        if points:
            ax.plot(*zip(*points), marker="o", label=label)
    ax.set(xlabel="batch", ylabel=f"windows per second, T = {largest}", xticks=sorted({r['batch'] for r in rows}))
    ax.legend(fontsize=7)
    save(fig, "throughput_vs_batch.png")
    return written


def write(report: Dict, out: Path) -> List[Path]:
    """bench.json, bench.md and the plots into ``out``; returns the paths."""
    from ..outputs import write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(report, out / "bench.json")
    (out / "bench.md").write_text(markdown(report) + "\n")
    try:
        pictures = plots(report, out)
    except ImportError as err:                       # matplotlib is in the train extra
        print(f"bench: no plots ({err}): pip install matplotlib", file=sys.stderr)
        pictures = []
    return [out / "bench.json", out / "bench.md", *pictures]
