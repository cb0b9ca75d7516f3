"""Parity of an exported artifact with eager PyTorch, run in the same process right after export."""

from __future__ import annotations

from typing import Dict, List

import torch

from asl_edge.config import Config
from asl_edge.localizer import Localizer
from asl_edge.model import input_channels
from asl_edge.runtime import Backend

from .spec import ExportSpec

# per precision: max |artifact - eager| / max(1, max |eager|) on logits and offsets; the score
# and boundary (in feature-grid steps) differences two matched detections may have; and the
# fraction of detections that must match, of the larger of the two lists
TOLERANCES = {
    "fp32": {"output_rel": 1e-4, "score": 1e-4, "boundary_steps": 0.01, "matched": 0.99},
    "fp16": {"output_rel": 2e-2, "score": 2e-2, "boundary_steps": 0.1, "matched": 0.90},
}


def _match(eager: List[Dict], other: List[Dict], score_tol: float, time_tol: float) -> Dict:
    """Greedy one-to-one matching of detections with the same label, boundaries within
    ``time_tol`` seconds and scores within ``score_tol``."""
    free = list(range(len(other)))
    matched, worst = 0, 0.0
    for det in eager:
        for j in free:
            cand = other[j]
            if cand["label_id"] == det["label_id"] and abs(cand["start"] - det["start"]) <= time_tol \
                    and abs(cand["end"] - det["end"]) <= time_tol and abs(cand["score"] - det["score"]) <= score_tol:
                matched += 1
                worst = max(worst, abs(cand["score"] - det["score"]))
                free.remove(j)
                break
    larger = max(len(eager), len(other))
    return {"eager_detections": len(eager), "artifact_detections": len(other), "matched": matched,
            "matched_fraction": matched / larger if larger else 1.0, "max_score_diff_matched": worst}


def parity_report(backend: Backend, model: torch.nn.Module, config: Config, spec: ExportSpec,
                  seed: int = 0) -> Dict:
    """Compare ``backend`` with the eager ``model`` on a seeded random sample of the exported
    shape (the last 10 % of the first row padded): outputs (network artifacts) and detections."""
    tol = TOLERANCES[spec.precision]
    g = torch.Generator().manual_seed(seed)
    channels = input_channels(config)
    features = torch.randn(spec.batch, channels, spec.window, generator=g)
    mask = torch.ones(spec.batch, spec.window, dtype=torch.bool)
    valid = max(1, int(spec.window * 0.9))
    mask[0, valid:] = False
    features = features * mask[:, None, :]
    report: Dict = {"format": spec.format, "precision": spec.precision, "tolerances": tol, "sample": {
        "batch": spec.batch, "length": spec.window, "valid_length_row0": valid, "seed": seed}}
    model = model.eval().float().cpu()
    checks = []
    if not spec.postprocess:
        with torch.inference_mode():
            want = model(features, mask)
            got = backend.run(features, mask)
        outputs = {}
        for name, w, o in zip(("cls_logits", "offsets"), want, got):
            o = o.detach().float().cpu()
            diff = (o - w).abs()
            scale = max(1.0, float(w.abs().max()))
            outputs[name] = {"max_abs_diff": float(diff.max()), "max_rel_diff": float(diff.max()) / scale,
                             "ref_max_abs": float(w.abs().max())}
            checks.append(outputs[name]["max_rel_diff"] <= tol["output_rel"])
        report["outputs"] = outputs
    video = features[0, :, :valid].t().contiguous()
    window = None if spec.dynamic_length else spec.window
    fps = config.dataset.default_fps or 30.0
    eager = Localizer(model, config, window=window).detect(video, fps=fps)
    other = backend.detect(video, fps=fps)
    step_seconds = config.dataset.feat_stride * config.dataset.downsample_rate / fps
    detections = _match(eager, other, tol["score"], time_tol=tol["boundary_steps"] * step_seconds)
    report["detections"] = detections
    checks.append(detections["matched_fraction"] >= tol["matched"])
    report["passed"] = all(checks)
    return report


def format_parity(report: Dict) -> str:
    """A few human-readable lines of a parity report."""
    lines = [f"parity ({report['format']}, {report['precision']}): {'PASS' if report['passed'] else 'FAIL'}"]
    for name, out in report.get("outputs", {}).items():
        lines.append(f"  {name}: max abs diff {out['max_abs_diff']:.3g} (relative {out['max_rel_diff']:.3g}, "
                     f"tolerance {report['tolerances']['output_rel']:.0e})")
    d = report["detections"]
    lines.append(f"  detections: {d['matched']}/{d['eager_detections']} matched "
                 f"({d['matched_fraction']:.1%}, artifact has {d['artifact_detections']}), "
                 f"max score diff {d['max_score_diff_matched']:.3g}")
    return "\n".join(lines)
