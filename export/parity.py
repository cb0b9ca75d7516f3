"""Parity of an exported artifact with eager PyTorch and with what ``asl-edge infer`` gives, run in
the same process right after export."""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch import Tensor

from asl_edge.config import Config
from asl_edge.localizer import Localizer, network_grid_length
from asl_edge.model import input_channels, padded_length
from asl_edge.runtime import Backend

from .calibration import RealFeatures
from .spec import ExportSpec

# per precision: max |artifact - eager| / max(1, max |eager|) on logits and offsets; the score
# and boundary (in feature-grid steps) differences two matched detections may have; and the
# fraction of detections that must match, of the larger of the two lists. bf16 (8-bit mantissa) and
# int8 reorder many of the low-score tail detections that the top-N lists hold on random features:
# their match fraction is set from the small test model and the keyframe model (README)
TOLERANCES = {
    "fp32": {"output_rel": 1e-4, "score": 1e-4, "boundary_steps": 0.01, "matched": 0.99},
    "fp16": {"output_rel": 2e-2, "score": 2e-2, "boundary_steps": 0.1, "matched": 0.90},
    "bf16": {"output_rel": 3e-2, "score": 3e-2, "boundary_steps": 0.25, "matched": 0.75},
    "int8": {"output_rel": 2.5e-1, "score": 5e-2, "boundary_steps": 0.5, "matched": 0.60},
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


def _check(checks: List[Dict], name: str, value: float, limit: float, at_most: bool) -> bool:
    """Record one check (``value`` <= ``limit`` when ``at_most``, else >=) and return whether it passed."""
    passed = value <= limit if at_most else value >= limit
    checks.append({"check": name, "value": value, "limit": limit, "at_most": at_most, "passed": passed})
    return passed


def _compare_outputs(backend: Backend, model: torch.nn.Module, features: Tensor, mask: Tensor, tol: Dict,
                     checks: List[Dict]) -> Dict:
    """Max abs/relative difference of the artifact's network outputs from eager on one input."""
    with torch.inference_mode():
        want = model(features, mask)
        got = backend.run(features, mask)
    outputs = {}
    for name, w, o in zip(("cls_logits", "offsets"), want, got):
        diff = (o.detach().float().cpu() - w).abs()
        scale = max(1.0, float(w.abs().max()))
        outputs[name] = {"max_abs_diff": float(diff.max()), "max_rel_diff": float(diff.max()) / scale,
                         "ref_max_abs": float(w.abs().max())}
        outputs[name]["passed"] = _check(checks, f"{name} at T = {features.shape[2]}: max relative difference",
                                         outputs[name]["max_rel_diff"], tol["output_rel"], at_most=True)
    return outputs


def _first_length(spec: ExportSpec) -> int:
    """The T the outputs are compared at first: the traced one, or the window when the artifact's
    range ends below it (a dynamic window of one padding unit is traced at two)."""
    return spec.trace_length if spec.trace_length <= spec.max_length else spec.window


def _other_length(spec: ExportSpec) -> int:
    """A T the dynamic artifact takes other than :func:`_first_length` (0 when it takes one only)."""
    unit, first = spec.length_multiple, _first_length(spec)
    for length in (first + unit, first - unit, spec.window):
        if length != first and spec.min_length <= length <= spec.max_length:
            return length
    return 0


def _sample_videos(config: Config, spec: ExportSpec, other_length: int) -> Dict[str, int]:
    """Video lengths (features) whose detections are compared: one filling 90 % of the window; for
    a fixed window above max_seq_len a short one, which `asl-edge infer` pads to max_seq_len and
    the artifact to its window; for dynamic artifacts one that needs the other length."""
    lengths = {"window_90pct": max(1, int(spec.window * 0.9))}
    if not spec.dynamic_length and spec.window > config.dataset.max_seq_len:
        lengths["short"] = max(1, config.dataset.max_seq_len // 2)
    if other_length > _first_length(spec):
        lengths["longer"] = other_length - spec.length_multiple // 2
    rate = config.dataset.downsample_rate
    return {name: steps * rate for name, steps in lengths.items()}


class _Inputs:
    """(T, C) feature sequences of any length: cut from the user's real videos laid end to end (round
    and round), or seeded N(0, 1) noise when there are none."""

    def __init__(self, channels: int, seed: int, real: Optional[RealFeatures]):
        self.generator = torch.Generator().manual_seed(seed)
        self.channels = channels
        self.videos = real.videos if real is not None else []
        self.video, self.offset = 0, 0
        self.description = (f"real features: {real.origin}" if real is not None
                            else "seeded random N(0, 1) features (pass --parity-features for real ones)")

    def take(self, steps: int) -> Tensor:
        if not self.videos:
            return torch.randn(steps, self.channels, generator=self.generator)
        parts = []
        while steps > 0:
            part = self.videos[self.video][self.offset:self.offset + steps]
            parts.append(part)
            steps -= part.shape[0]
            self.offset += part.shape[0]
            if self.offset >= self.videos[self.video].shape[0]:
                self.video, self.offset = (self.video + 1) % len(self.videos), 0
        return torch.cat(parts)


def parity_report(backend: Backend, model: torch.nn.Module, config: Config, spec: ExportSpec,
                  seed: int = 0, features: Optional[RealFeatures] = None) -> Dict:
    """Compare ``backend`` with eager PyTorch on ``features`` (the user's real videos) or, without
    them, on seeded random samples; ``inputs`` in the report says which.

    Outputs (network artifacts): at the exported shape (the last 10 % of the first row padded),
    and for dynamic-length artifacts also at another length (:func:`_first_length`, :func:`_other_length`). Detections:
    ``backend.detect`` on sample videos (:func:`_sample_videos`) against what ``asl-edge infer`` gives,
    the checkpoint through the Localizer with its own padding. Where a fixed window pads a video
    differently from the checkpoint and the model has absolute position encoding, the results
    differ by design; the report says so (``by_design``) and the check fails. ``checks`` lists every
    check with its value and limit, ``failed`` the names of those that failed.
    """
    tol = TOLERANCES[spec.precision]
    channels = input_channels(config)
    inputs = _Inputs(channels, seed, features)
    model = model.eval().float().cpu()
    checks: List[Dict] = []
    other_length = _other_length(spec) if spec.dynamic_length else 0
    report: Dict = {"format": spec.format, "precision": spec.precision, "inputs": inputs.description,
                    "tolerances": tol}
    if not spec.postprocess:
        lengths = [_first_length(spec)] + ([other_length] if other_length else [])
        report["outputs_per_length"] = {}
        for length in lengths:
            batch = torch.stack([inputs.take(length).t() for _ in range(spec.batch)])    # (B, C, T)
            mask = torch.ones(spec.batch, length, dtype=torch.bool)
            mask[0, max(1, int(length * 0.9)):] = False
            batch = batch * mask[:, None, :]
            report["outputs_per_length"][str(length)] = _compare_outputs(backend, model, batch, mask, tol, checks)
        report["outputs"] = report["outputs_per_length"][str(lengths[0])]
    reference = Localizer(model, config)                          # what `asl-edge infer` runs
    fps = config.dataset.default_fps or 30.0
    step_seconds = config.dataset.feat_stride * config.dataset.downsample_rate / fps
    videos = {}
    for name, steps in _sample_videos(config, spec, other_length).items():
        video = inputs.take(steps)
        grid_steps = network_grid_length(steps, config)
        entry = {"features": steps, "checkpoint_T": padded_length(config, grid_steps),
                 "artifact_T": padded_length(config, grid_steps) if spec.dynamic_length else spec.window}
        entry.update(_match(reference.detect(video, fps=fps), backend.detect(video, fps=fps), tol["score"],
                            time_tol=tol["boundary_steps"] * step_seconds))
        entry["passed"] = _check(checks, f"detections of the {steps}-feature video: share matched",
                                 entry["matched_fraction"], tol["matched"], at_most=False)
        if not entry["passed"] and entry["checkpoint_T"] != entry["artifact_T"] and config.model.use_abs_pe:
            entry["by_design"] = (f"the checkpoint runs this {steps}-feature video at T = {entry['checkpoint_T']}, "
                                  f"this fixed-window artifact at T = {entry['artifact_T']}, and the model's "
                                  "absolute position encoding depends on T: export with --window "
                                  f"{config.dataset.max_seq_len} (and --dynamic for longer videos) to match "
                                  "asl-edge infer")
        videos[name] = entry
    report["videos"] = videos
    report["detections"] = {
        "eager_detections": sum(v["eager_detections"] for v in videos.values()),
        "artifact_detections": sum(v["artifact_detections"] for v in videos.values()),
        "matched": sum(v["matched"] for v in videos.values()),
        "matched_fraction": min(v["matched_fraction"] for v in videos.values()),
        "max_score_diff_matched": max(v["max_score_diff_matched"] for v in videos.values())}
    report["checks"] = checks
    report["failed"] = [c["check"] for c in checks if not c["passed"]]
    report["passed"] = not report["failed"]
    return report


def _verdict(passed: bool, limit: str) -> str:
    return "ok" if passed else f"FAILED (needs {limit})"


def format_parity(report: Dict) -> str:
    """Human-readable lines of a parity report: the verdict, the inputs, each check with its value
    and limit, and the failed checks by name."""
    tol = report["tolerances"]
    output_limit, matched_limit = f"<= {tol['output_rel']:g}", f">= {tol['matched']:.0%}"
    lines = [f"parity ({report['format']}, {report['precision']}): {'PASS' if report['passed'] else 'FAIL'}",
             f"  inputs: {report.get('inputs', 'seeded random N(0, 1) features')}",
             f"  tolerances: outputs {tol['output_rel']:g} relative; detections matched within {tol['score']:g} in "
             f"score and {tol['boundary_steps']:g} grid steps at each boundary, at least {tol['matched']:.0%} of them"]
    for length, outputs in report.get("outputs_per_length", {}).items():
        for name, out in outputs.items():
            passed = out.get("passed", out["max_rel_diff"] <= tol["output_rel"])
            lines.append(f"  {name} at T = {length}: max abs diff {out['max_abs_diff']:.3g}, relative "
                         f"{out['max_rel_diff']:.3g}: {_verdict(passed, output_limit)}")
    for v in report["videos"].values():
        passed = v.get("passed", v["matched_fraction"] >= tol["matched"])
        lines.append(f"  detections, {v['features']}-feature video (T = {v['artifact_T']}; asl-edge infer: "
                     f"T = {v['checkpoint_T']}): {v['matched']}/{v['eager_detections']} matched "
                     f"({v['matched_fraction']:.1%}, artifact has {v['artifact_detections']}), "
                     f"max score diff {v['max_score_diff_matched']:.3g}: {_verdict(passed, matched_limit)}")
        if "by_design" in v:
            lines.append(f"    by design: {v['by_design']}")
    if report.get("failed"):
        lines.append("  failed: " + "; ".join(report["failed"]))
    return "\n".join(lines)
