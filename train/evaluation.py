"""Temporal action detection mAP, computed as the ActivityNet challenge's official evaluator does.

Reference: activitynet/ActivityNet, ``Evaluation/eval_detection.py`` (``ANETdetection`` and
``compute_average_precision_detection``) with ``Evaluation/utils.py`` (``segment_iou``,
``interpolated_prec_rec``). The protocol, per class:

* the predictions of that class from all videos are ranked by score, descending;
* walking down the ranking, a prediction is a true positive on the not-yet-matched ground-truth
  segment of its video with the highest tIoU, provided that tIoU >= the threshold; otherwise
  (no GT of that class in its video, or every GT above the threshold already taken) it is a false
  positive. The official loop visits the GT of the video by descending tIoU, skips taken ones and
  stops at the first one below the threshold; this module runs the same loop;
* AP is the all-point interpolated area under precision/recall (VOC 2011 style);
* mAP at a threshold averages the classes that have ground truth in the split (a class with GT but
  no predictions scores 0); the average mAP averages the thresholds.

Ties (deterministic by construction). The official code orders predictions with
``scores.argsort()[::-1]`` and the GT of a video with ``tiou.argsort()[::-1]``: numpy's default
(quick)sort, reversed. For tied values the result is therefore *reverse* of the tie order that
argsort produced, and that order is not specified by numpy (small arrays go through an insertion
sort, which is stable; large ones and SIMD builds are not). We use ``argsort(kind="stable")[::-1]``
for both: descending by value, **ties in reverse input order** (for predictions the input order is
the file's order: videos as listed, then each video's list). This equals the official result
whenever its argsort is stable on the tied entries, and is reproducible everywhere.

Input the official script reads, read the same way: only the videos of the requested split (other
splits are not looked at); a segment's first two numbers (more are ignored); segments that end
before they start (an inverted prediction overlaps nothing and is a false positive; an inverted GT
segment can never be matched but counts in the recall). Both are reported once per file with
counts (:class:`EvaluationWarning`). What it cannot read either is refused with the video and
field named: missing keys, non-numbers, NaN or infinite values.

Deliberate differences from the official script, none of which changes a number it produces on
input it accepts: predictions whose label is not a GT class of the split are left out and
reported (the official code raises KeyError); when no prediction has both a GT class and a video
of the split (or there is none at all), ``evaluate_detections(..., require_match=True)`` raises
instead of scoring 0; a class with GT but no predictions gets AP 0 (the official code fails on
the empty frame); a degenerate pair whose union is 0 (tIoU 0/0) overlaps nothing (the official NaN
compares as a match); no blocked-video list is downloaded. As in the official code, predictions
for videos that are not in the split are false positives of their class (and reported).

Recall@k (not part of the official detection script; our definition): for each video, its
predictions of all classes are ranked by score (same tie rule) and cut to the top k; a GT segment is
recalled at threshold t if at least one of those k predictions has the GT's label and tIoU >= t
with it (no one-to-one matching). Recall@k is the number of recalled GT segments over all GT
segments of the split, for k in (1, 5, 10, 100).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Hashable, Iterable, List, Optional, Sequence, Set, Tuple

import numpy as np

__all__ = [
    "GroundTruth",
    "Prediction",
    "EvaluationError",
    "EvaluationWarning",
    "load_ground_truth",
    "load_predictions",
    "parse_tious",
    "segment_iou",
    "interpolated_ap",
    "average_precision",
    "evaluate_detections",
    "unmatched_predictions",
    "describe_unmatched",
    "recall_at_k",
    "THUMOS_TIOUS",
    "ACTIVITYNET_TIOUS",
]

THUMOS_TIOUS = [0.3, 0.4, 0.5, 0.6, 0.7]
ACTIVITYNET_TIOUS = [round(0.5 + 0.05 * i, 10) for i in range(10)]
RECALL_KS = (1, 5, 10, 100)

_SUBSET_ALIASES = {
    "test": "testing",
    "testing": "testing",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "train": "training",
    "training": "training",
}


class EvaluationError(ValueError):
    """A malformed annotation or prediction file (the message names the video and field)."""


class EvaluationWarning(UserWarning):
    """Input the evaluator scores as the official one does but a user should hear about."""


@dataclass
class GroundTruth:
    """GT segments of one split, in file order (videos as listed, then annotations)."""

    videos: List[str] = field(default_factory=list)  # every video of the split, even without GT
    segments: List[Tuple[str, Hashable, float, float]] = field(default_factory=list)
    classes: List[Hashable] = field(default_factory=list)  # order of first appearance
    label_names: Dict[int, Hashable] = field(default_factory=dict)  # label_id -> label
    ambiguous_ids: Set[int] = field(default_factory=set)  # label_ids given to more than one label


@dataclass
class Prediction:
    video: str
    label: Hashable
    start: float
    end: float
    score: float


# --------------------------------------------------------------------------------------- loading


def _read_json(path: "os.PathLike[str] | str", what: str) -> Any:
    try:
        with open(path, "r", encoding="utf-8") as fobj:
            return json.load(fobj)
    except FileNotFoundError:
        raise EvaluationError(f"{what} file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise EvaluationError(f"{what} file {path} is not valid JSON: {exc}") from None


def _segment(value: Any, where: str, odd: Counter) -> Tuple[float, float]:
    """``[start, end]`` from the first two numbers of ``value``, as the official evaluator reads a
    segment; segments that end before they start and ones with more numbers are counted in ``odd``."""
    if not isinstance(value, (list, tuple)) or len(value) < 2:
        raise EvaluationError(f"{where}: 'segment' must be [start, end], got {value!r}")
    try:
        start, end = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        raise EvaluationError(f"{where}: 'segment' must start with two numbers, got {value!r}") from None
    if not (math.isfinite(start) and math.isfinite(end)):
        raise EvaluationError(f"{where}: 'segment' is not finite: {value!r}")
    odd["inverted"] += end < start
    odd["extra"] += len(value) > 2
    return start, end


def _warn_odd_segments(odd: Counter, what: str) -> None:
    """One EvaluationWarning for the unusual segments ``_segment`` counted in one file."""
    parts = []
    if odd["inverted"]:
        parts.append(f"{odd['inverted']} end before they start (scored as given: they overlap nothing)")
    if odd["extra"]:
        parts.append(f"{odd['extra']} have more than two numbers (the first two are used)")
    if parts:
        warnings.warn(f"{what}: of its segments, " + "; ".join(parts), EvaluationWarning, stacklevel=3)


def _subset_key(name: Any) -> str:
    key = str(name).strip().lower()
    return _SUBSET_ALIASES.get(key, key)


def load_ground_truth(path: "os.PathLike[str] | str", split: str) -> GroundTruth:
    """Read an ActionFormer/ActivityNet annotation JSON and keep the videos of ``split``.

    ``split`` matches each video's ``subset`` case-insensitively, with test/testing,
    val/validation and train/training treated as the same name. Only that split is read.
    """
    data = _read_json(path, "ground-truth")
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise EvaluationError(f"ground-truth file {path}: expected an object with a 'database' object")
    want = _subset_key(split)
    gt = GroundTruth()
    seen_classes = set()
    odd: Counter = Counter()
    for vid, entry in data["database"].items():
        where = f"ground truth {path}, video {vid!r}"
        if not isinstance(entry, dict):
            raise EvaluationError(f"{where}: entry must be an object")
        if "subset" not in entry:
            raise EvaluationError(f"{where}: missing field 'subset'")
        if _subset_key(entry["subset"]) != want:
            continue
        anns = entry.get("annotations", [])
        if not isinstance(anns, list):
            raise EvaluationError(f"{where}: 'annotations' must be a list")
        gt.videos.append(str(vid))
        for i, ann in enumerate(anns):
            if not isinstance(ann, dict):
                raise EvaluationError(f"{where}, annotation {i}: must be an object")
            for key in ("label", "segment"):
                if key not in ann:
                    raise EvaluationError(f"{where}, annotation {i}: missing field {key!r}")
            start, end = _segment(ann["segment"], f"{where}, annotation {i}", odd)
            label = ann["label"]
            _record_label_id(gt, ann.get("label_id"), label)
            if label not in seen_classes:
                seen_classes.add(label)
                gt.classes.append(label)
            gt.segments.append((str(vid), label, start, end))
    if not gt.videos:
        raise EvaluationError(f"ground-truth file {path}: no video has subset {split!r}")
    _warn_odd_segments(odd, f"ground truth {path}, split {split!r}")
    return gt


def _record_label_id(gt: GroundTruth, label_id: Any, label: Hashable) -> None:
    """Remember which label a GT ``label_id`` names (ids that are not integers are not used, as the
    official evaluator never reads them; an id naming two labels is ambiguous)."""
    if isinstance(label_id, bool) or not isinstance(label_id, (int, float)) or not float(label_id).is_integer():
        return
    lid = int(label_id)
    if gt.label_names.setdefault(lid, label) != label:
        gt.ambiguous_ids.add(lid)


def _score(value: Any, where: str) -> float:
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise EvaluationError(f"{where}: score must be a number, got {value!r}") from None
    if not math.isfinite(score):
        raise EvaluationError(f"{where}: score is not finite: {value!r}")
    return score


def load_predictions(
    path: "os.PathLike[str] | str", ground_truth: Optional[GroundTruth] = None
) -> List[Prediction]:
    """Read detections, in file order.

    Accepts ActivityNet result JSON ``{"results": {vid: [{"label", "score", "segment"}]}}`` and
    ActionFormer-style JSON ``{"database": {vid: [{"segment", "label_id", "scores"}]}}``. A
    detection with ``label_id`` and no ``label`` is named through the ground truth's
    label/label_id pairs; with a ground truth that has none (or names that id twice) that is an
    error. Without ``ground_truth`` the integer id is the class key.
    """
    data = _read_json(path, "prediction")
    if isinstance(data, dict) and isinstance(data.get("results"), dict):
        videos, style = data["results"], "results"
    elif isinstance(data, dict) and isinstance(data.get("database"), dict):
        videos, style = data["database"], "database"
    else:
        raise EvaluationError(
            f"prediction file {path}: expected {{'results': {{video: [...]}}}} (ActivityNet) or "
            f"{{'database': {{video: [...]}}}} (ActionFormer)"
        )
    preds: List[Prediction] = []
    odd: Counter = Counter()
    for vid, items in videos.items():
        where = f"predictions {path}, video {vid!r}"
        if not isinstance(items, list):
            raise EvaluationError(f"{where}: expected a list of detections")
        for i, item in enumerate(items):
            w = f"{where}, detection {i}"
            if not isinstance(item, dict):
                raise EvaluationError(f"{w}: must be an object")
            if "segment" not in item:
                raise EvaluationError(f"{w}: missing field 'segment'")
            start, end = _segment(item["segment"], w, odd)
            if "label" in item:
                label = item["label"]
            elif "label_id" in item:
                label = _named_label_id(item["label_id"], ground_truth, w)
            else:
                raise EvaluationError(f"{w}: missing field 'label'" + (" or 'label_id'" if style == "database" else ""))
            key = "score" if "score" in item else "scores" if "scores" in item else None
            if key is None:
                raise EvaluationError(f"{w}: missing field 'score'" + (" or 'scores'" if style == "database" else ""))
            preds.append(Prediction(str(vid), label, start, end, _score(item[key], f"{w}, field {key!r}")))
    _warn_odd_segments(odd, f"predictions {path}")
    return preds


def _named_label_id(value: Any, gt: Optional[GroundTruth], where: str) -> Hashable:
    """The label a prediction's ``label_id`` stands for (the id itself without a ground truth)."""
    try:
        lid = int(value)
    except (TypeError, ValueError):
        raise EvaluationError(f"{where}: 'label_id' must be an integer, got {value!r}") from None
    if gt is None:
        return lid
    if not gt.label_names:
        raise EvaluationError(f"{where}: the prediction gives only 'label_id' {lid}, and the ground truth has no "
                              "'label_id' to name it: give each prediction its 'label', or a ground truth with ids")
    if lid in gt.ambiguous_ids:
        raise EvaluationError(f"{where}: 'label_id' {lid} names more than one label in the ground truth")
    return gt.label_names.get(lid, lid)


def parse_tious(spec: "str | float | Sequence[float]") -> List[float]:
    """``"0.3:0.7:0.1"`` -> [0.3, 0.4, 0.5, 0.6, 0.7] (start:stop:step, stop included);
    ``"0.3,0.5,0.7"`` -> that list; values rounded to 10 decimals, each in (0, 1]."""
    if isinstance(spec, (int, float)):
        values = [float(spec)]
    elif isinstance(spec, str):
        text = spec.strip()
        try:
            if ":" in text:
                parts = [float(p) for p in text.split(":")]
                if len(parts) != 3:
                    raise ValueError
                start, stop, step = parts
                if step <= 0 or stop < start:
                    raise EvaluationError(f"tIoU range {spec!r}: need start <= stop and step > 0")
                n = int(math.floor((stop - start) / step + 1e-9)) + 1
                values = [start + i * step for i in range(n)]
            else:
                values = [float(p) for p in text.split(",") if p.strip()]
        except ValueError:
            raise EvaluationError(f"tIoU thresholds {spec!r}: expected 'start:stop:step' or a comma list") from None
    else:
        values = [float(v) for v in spec]
    values = [round(v, 10) for v in values]
    if not values:
        raise EvaluationError(f"tIoU thresholds {spec!r}: empty")
    for v in values:
        if not (0.0 < v <= 1.0):
            raise EvaluationError(f"tIoU threshold {v} is outside (0, 1]")
    return values


# ---------------------------------------------------------------------------------- computation


def segment_iou(target: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """tIoU of one [start, end] with N x [start, end] (the official ``utils.segment_iou``, except
    that a pair with no overlap is 0 where the official code divides 0 by 0)."""
    tt1 = np.maximum(target[0], candidates[:, 0])
    tt2 = np.minimum(target[1], candidates[:, 1])
    inter = (tt2 - tt1).clip(0).astype(float)
    union = (candidates[:, 1] - candidates[:, 0]) + (target[1] - target[0]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / union, 0.0)     # no overlap is 0, also where the union is 0


def interpolated_ap(prec: np.ndarray, rec: np.ndarray) -> float:
    """All-point interpolated AP (the official ``utils.interpolated_prec_rec``, VOC 2011)."""
    mprec = np.hstack([[0], prec, [0]])
    mrec = np.hstack([[0], rec, [1]])
    for i in range(len(mprec) - 1)[::-1]:
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.where(mrec[1::] != mrec[0:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def _descending(values: np.ndarray) -> np.ndarray:
    """Indices by descending value, ties in reverse input order (stable argsort, reversed)."""
    return np.argsort(values, kind="stable")[::-1]


def average_precision(
    gt_segments: Sequence[Tuple[str, float, float]],
    predictions: Sequence[Tuple[str, float, float, float]],
    tiou_thresholds: Sequence[float],
) -> np.ndarray:
    """AP of one class at each threshold (the official ``compute_average_precision_detection``).

    ``gt_segments``: (video, start, end) in file order; ``predictions``: (video, start, end, score)
    in file order. Returns an array with one AP per threshold.
    """
    thresholds = np.asarray(list(tiou_thresholds), dtype=float)
    n_thr = len(thresholds)
    npos = float(len(gt_segments))
    if len(predictions) == 0 or npos == 0:
        return np.zeros(n_thr)
    by_video: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
    tmp: Dict[str, List[int]] = {}
    for i, (vid, _, _) in enumerate(gt_segments):
        tmp.setdefault(vid, []).append(i)
    for vid, idxs in tmp.items():
        segs = np.array([[gt_segments[i][1], gt_segments[i][2]] for i in idxs], dtype=float)
        by_video[vid] = (np.asarray(idxs), segs)

    scores = np.array([p[3] for p in predictions], dtype=float)
    order = _descending(scores)
    lock_gt = np.full((n_thr, len(gt_segments)), -1)
    tp = np.zeros((n_thr, len(order)))
    fp = np.zeros((n_thr, len(order)))
    for rank, pi in enumerate(order):
        vid, start, end, _ = predictions[pi]
        if vid not in by_video:
            fp[:, rank] = 1
            continue
        gidx, segs = by_video[vid]
        tiou = segment_iou(np.array([start, end], dtype=float), segs)
        tiou_order = _descending(tiou)
        for t, thr in enumerate(thresholds):
            for j in tiou_order:
                if tiou[j] < thr:
                    fp[t, rank] = 1
                    break
                if lock_gt[t, gidx[j]] >= 0:
                    continue
                tp[t, rank] = 1
                lock_gt[t, gidx[j]] = rank
                break
            if fp[t, rank] == 0 and tp[t, rank] == 0:
                fp[t, rank] = 1

    tp_cum = np.cumsum(tp, axis=1).astype(float)
    fp_cum = np.cumsum(fp, axis=1).astype(float)
    recall = tp_cum / npos
    precision = tp_cum / (tp_cum + fp_cum)
    return np.array([interpolated_ap(precision[t, :], recall[t, :]) for t in range(n_thr)])


def recall_at_k(
    gt: GroundTruth,
    predictions: Sequence[Prediction],
    tiou_thresholds: Sequence[float],
    ks: Iterable[int] = RECALL_KS,
) -> Dict[str, List[float]]:
    """Recall@k per threshold (definition in the module docstring); keys are ``str(k)``."""
    thresholds = list(tiou_thresholds)
    ks = list(ks)
    n_gt = len(gt.segments)
    out = {str(k): [0.0] * len(thresholds) for k in ks}
    if n_gt == 0:
        return out
    preds_by_video: Dict[str, List[Prediction]] = {}
    for p in predictions:
        preds_by_video.setdefault(p.video, []).append(p)
    ranked: Dict[str, List[Prediction]] = {}
    for vid, plist in preds_by_video.items():
        order = _descending(np.array([p.score for p in plist], dtype=float))
        ranked[vid] = [plist[i] for i in order]
    # best_rank[g, t]: first rank (0-based) in the video's list that recalls GT g at threshold t.
    best_rank = np.full((n_gt, len(thresholds)), np.inf)
    for g, (vid, label, start, end) in enumerate(gt.segments):
        for r, p in enumerate(ranked.get(vid, [])):
            if p.label != label:
                continue
            iou = segment_iou(np.array([p.start, p.end]), np.array([[start, end]], dtype=float))[0]
            for t, thr in enumerate(thresholds):
                if iou >= thr and r < best_rank[g, t]:
                    best_rank[g, t] = r
    for k in ks:
        out[str(k)] = [float(np.sum(best_rank[:, t] < k)) / n_gt for t in range(len(thresholds))]
    return out


def unmatched_predictions(gt: GroundTruth, predictions: Sequence[Prediction], examples: int = 5) -> Dict[str, Any]:
    """Predictions the ground truth of the split cannot match: those whose label is not one of its
    classes (left out of the AP), and those of videos outside the split (false positives). Counts,
    the first few distinct labels/videos, and how many predictions could match."""
    classes, videos = set(gt.classes), set(gt.videos)
    labels: Dict[Hashable, None] = {}
    outside: Dict[str, None] = {}
    n_labels = n_videos = matchable = 0
    for p in predictions:
        known_label, known_video = p.label in classes, p.video in videos
        if not known_label:
            n_labels += 1
            labels.setdefault(p.label)
        if not known_video:
            n_videos += 1
            outside.setdefault(p.video)
        matchable += known_label and known_video
    return {"predictions": len(predictions), "matchable": matchable,
            "label_not_in_ground_truth": {"count": n_labels, "examples": [str(x) for x in list(labels)[:examples]]},
            "video_not_in_split": {"count": n_videos, "examples": list(outside)[:examples]}}


def evaluate_detections(
    gt: GroundTruth,
    predictions: Sequence[Prediction],
    tiou_thresholds: "Sequence[float] | str" = THUMOS_TIOUS,
    recall_ks: Iterable[int] = RECALL_KS,
    require_match: bool = False,
) -> Dict[str, Any]:
    """mAP per threshold, average mAP, per-class AP, Recall@k of ``predictions`` on ``gt``, and
    ``unmatched`` (:func:`unmatched_predictions`). With ``require_match``, no predictions at all, or
    predictions none of which has a GT class and a video of the split, are an EvaluationError, not
    an mAP of 0."""
    thresholds = parse_tious(tiou_thresholds) if isinstance(tiou_thresholds, str) else [
        float(t) for t in tiou_thresholds
    ]
    if not thresholds:
        raise EvaluationError("no tIoU thresholds")
    if not gt.classes:
        raise EvaluationError("the ground truth of this split has no annotated segment")
    unmatched = unmatched_predictions(gt, predictions)
    if require_match and not predictions:
        raise EvaluationError("there are no predictions to score (an mAP of 0 would say nothing): the prediction "
                              "file holds no detection")
    if require_match and not unmatched["matchable"]:
        raise EvaluationError(
            f"none of the {len(predictions)} predictions can match the ground truth: "
            f"{describe_unmatched(unmatched)}; ground-truth classes are e.g. "
            f"{', '.join(repr(str(c)) for c in gt.classes[:5])} and videos e.g. "
            f"{', '.join(repr(v) for v in gt.videos[:3])} (labels and video ids must be spelled alike)")
    gt_by_class: Dict[Hashable, List[Tuple[str, float, float]]] = {c: [] for c in gt.classes}
    for vid, label, start, end in gt.segments:
        gt_by_class[label].append((vid, start, end))
    pred_by_class: Dict[Hashable, List[Tuple[str, float, float, float]]] = {c: [] for c in gt.classes}
    for p in predictions:
        if p.label in pred_by_class:  # labels without GT in the split are left out (reported in `unmatched`)
            pred_by_class[p.label].append((p.video, p.start, p.end, p.score))
    ap = np.zeros((len(thresholds), len(gt.classes)))
    for c, label in enumerate(gt.classes):
        ap[:, c] = average_precision(gt_by_class[label], pred_by_class[label], thresholds)
    mAP = ap.mean(axis=1)
    return {
        "tiou_thresholds": thresholds,
        "mAP_per_tiou": [float(x) for x in mAP],
        "average_mAP": float(mAP.mean()),
        "ap_per_class": {str(label): [float(x) for x in ap[:, c]] for c, label in enumerate(gt.classes)},
        "recall_at_k": recall_at_k(gt, predictions, thresholds, recall_ks),
        "unmatched": unmatched,
    }


def describe_unmatched(unmatched: Dict[str, Any]) -> str:
    """One line on what :func:`unmatched_predictions` found ('' when every prediction can match)."""
    parts = []
    labels, videos = unmatched["label_not_in_ground_truth"], unmatched["video_not_in_split"]
    if labels["count"]:
        parts.append(f"{labels['count']} of {unmatched['predictions']} predictions have a label that is not a "
                     f"ground-truth class of the split (left out), e.g. {', '.join(map(repr, labels['examples']))}")
    if videos["count"]:
        parts.append(f"{videos['count']} of {unmatched['predictions']} predictions are for videos not in the split "
                     f"(false positives), e.g. {', '.join(map(repr, videos['examples']))}")
    return "; ".join(parts)
