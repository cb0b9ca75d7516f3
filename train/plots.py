"""Figures for training runs: detection timelines per video and training curves.

matplotlib (``pip install 'asl-edge[train]'``) is imported only when a figure is drawn, and only
its Agg canvas is used (no pyplot, no GUI backend, no global state). Every PNG is written
atomically.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Dict, Hashable, List, Optional, Sequence, Tuple, Union

from asl_edge.outputs import atomic_output

from .evaluation import Prediction, load_ground_truth, load_predictions

__all__ = ["PlotError", "plot_detections", "plot_training_curve"]

PathLike = Union[str, Path]

GT_COLOR = "#2b2b2b"
SCORE_CMAP = "viridis"
MAX_SUBLANES = 6  # prediction sub-lanes per class row; more overlaps share the last one


class PlotError(ValueError):
    """A figure that cannot be drawn (missing matplotlib, bad input files or arguments)."""


def _matplotlib():
    """(Figure, FigureCanvasAgg, matplotlib module), imported on first use."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise PlotError(f"plotting needs matplotlib ({err}); pip install 'asl-edge[train]'") from None
    return Figure, FigureCanvasAgg, matplotlib


def _save(fig, canvas_cls, out: Path) -> Path:
    canvas_cls(fig)
    with atomic_output(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return out


# ------------------------------------------------------------------------------------ detections


def _durations(gt_path: PathLike) -> Dict[str, float]:
    """``duration`` of each video in the annotation file (absent or unusable ones are left out)."""
    try:
        with open(gt_path, "r", encoding="utf-8") as fd:
            data = json.load(fd)
    except (OSError, json.JSONDecodeError):
        return {}  # load_ground_truth has already reported a real problem
    out = {}
    for vid, entry in data.get("database", {}).items():
        try:
            value = float(entry["duration"])
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(value) and value > 0:
            out[str(vid)] = value
    return out


def _safe_name(video: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", video) or "video"


def _row_order(labels: Sequence[Hashable], label_names: Dict[int, Hashable]) -> List[Hashable]:
    """Classes by label id where the GT gives one, then the rest by name."""
    ids = {name: lid for lid, name in label_names.items()}
    known = sorted((lab for lab in labels if lab in ids), key=lambda lab: ids[lab])
    rest = sorted((lab for lab in labels if lab not in ids), key=str)
    return known + rest


def plot_detections(
    gt_path: PathLike,
    pred_path: PathLike,
    out: PathLike,
    videos: Optional[Sequence[str]] = None,
    split: str = "test",
    min_score: float = 0.1,
    top_k: int = 50,
    marks: Optional[Dict[str, List[Tuple[float, Hashable]]]] = None,
) -> List[Path]:
    """Draw one timeline per video: ground truth above predictions, one row per class.

    Videos are those of ``split`` in the annotation file; ``videos=None`` plots every one that has
    ground truth or predictions. Predictions are kept when their score is ``>= min_score``, then
    the ``top_k`` best of each video. ``marks``: per video, ``(seconds, label)`` moments drawn as
    triangles on the label's row (e.g. when a stream first announced an action). With one video,
    ``out`` ending in ``.png`` is the file;
    otherwise ``out`` is a folder that receives ``<video>.png``. Returns the written paths.
    Malformed annotation/prediction files raise
    :class:`~asl_edge.train.evaluation.EvaluationError`.
    """
    if top_k < 1:
        raise PlotError(f"top_k must be at least 1, got {top_k}")
    gt = load_ground_truth(gt_path, split)
    preds = load_predictions(pred_path, gt)
    durations = _durations(gt_path)

    in_split = set(gt.videos)
    gt_by_video: Dict[str, List[Tuple[Hashable, float, float]]] = {}
    for vid, label, start, end in gt.segments:
        gt_by_video.setdefault(vid, []).append((label, start, end))
    pred_by_video: Dict[str, List[Prediction]] = {}
    for p in preds:
        if p.video in in_split:
            pred_by_video.setdefault(p.video, []).append(p)

    if videos is None:
        chosen = [v for v in gt.videos if v in gt_by_video or v in pred_by_video]
        if not chosen:
            raise PlotError(f"no video of split {split!r} has ground truth or predictions to plot")
    else:
        chosen = [videos] if isinstance(videos, str) else [str(v) for v in videos]
        if not chosen:
            raise PlotError("no video ids given")
        unknown = [v for v in chosen if v not in in_split]
        if unknown:
            raise PlotError(
                f"unknown video id{'s' if len(unknown) > 1 else ''} for split {split!r} of {gt_path}: "
                + ", ".join(repr(v) for v in unknown)
            )
        chosen = list(dict.fromkeys(chosen))

    out = Path(out)
    if len(chosen) == 1 and out.suffix.lower() == ".png":
        targets = {chosen[0]: out}
    else:
        if out.suffix.lower() == ".png":
            raise PlotError(f"{len(chosen)} videos to plot: {out} must be a folder, not a .png file")
        if out.exists() and not out.is_dir():
            raise PlotError(f"{out} exists and is not a folder")
        targets = {v: out / f"{_safe_name(v)}.png" for v in chosen}
        if len(set(targets.values())) != len(targets):
            raise PlotError("two video ids map to the same file name; plot them one at a time")

    Figure, Canvas, mpl = _matplotlib()
    written = []
    for vid in chosen:
        kept = sorted((p for p in pred_by_video.get(vid, []) if p.score >= min_score),
                      key=lambda p: -p.score)[:top_k]
        fig = _timeline(Figure, mpl, vid, gt_by_video.get(vid, []), kept, durations.get(vid),
                        gt.label_names, min_score, top_k, (marks or {}).get(vid, []))
        written.append(_save(fig, Canvas, targets[vid]))
    return written


def _timeline(Figure, mpl, video: str, gt_segs, preds: List[Prediction], duration: Optional[float],
              label_names: Dict[int, Hashable], min_score: float, top_k: int,
              marks: Sequence[Tuple[float, Hashable]] = ()):
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rows = _row_order(list(dict.fromkeys([s[0] for s in gt_segs] + [p.label for p in preds]
                                         + [label for _, label in marks])), label_names)
    if duration is None:
        ends = [e for _, _, e in gt_segs] + [p.end for p in preds]
        duration = max(ends, default=1.0) or 1.0
    row_of = {label: i for i, label in enumerate(rows)}
    vmax = max([1.0] + [p.score for p in preds])
    norm = Normalize(vmin=0.0, vmax=vmax)
    cmap = mpl.colormaps[SCORE_CMAP]

    fig = Figure(figsize=(12, 1.6 + 0.55 * max(1, len(rows))), layout="constrained")
    ax = fig.add_subplot()
    for i in range(len(rows)):
        ax.axhspan(i - 0.5, i + 0.5, color="#f2f2f2" if i % 2 == 0 else "white", zorder=0)
    for label, start, end in gt_segs:
        y = row_of[label]
        ax.broken_barh([(start, max(end - start, 1e-9))], (y - 0.45, 0.4), facecolors=GT_COLOR, zorder=2)
    # predictions: the lower lane of their row, split into sub-lanes so that overlapping
    # predictions stay visible (best first, each in the first sub-lane where it fits)
    placed: Dict[Hashable, List[List[Tuple[float, float]]]] = {}
    boxes = []
    for p in preds:  # already sorted by descending score
        lanes = placed.setdefault(p.label, [])
        for j, lane in enumerate(lanes):
            if all(p.end <= s or p.start >= e for s, e in lane):
                break
        else:
            j = len(lanes)
            if j >= MAX_SUBLANES:
                j = MAX_SUBLANES - 1
            else:
                lanes.append([])
        lanes[j].append((p.start, p.end))
        boxes.append((p, j))
    for p, j in reversed(boxes):  # best drawn last, on top
        n = len(placed[p.label])
        height = 0.4 / n
        ax.broken_barh([(p.start, max(p.end - p.start, 1e-9))], (row_of[p.label] + 0.05 + j * height, height),
                       facecolors=cmap(norm(p.score)), edgecolors="white", linewidth=0.4, zorder=3)
    if marks:
        ax.plot([t for t, _ in marks], [row_of[label] - 0.03 for _, label in marks], "v", color="#d62728",
                markersize=6, zorder=4)
    ax.set_xlim(0.0, duration)
    ax.set_ylim(len(rows) - 0.5 if rows else 0.5, -0.5)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([str(r) for r in rows])
    ax.set_xlabel("time (s)")
    ax.set_title(f"{video}: {len(gt_segs)} ground-truth segments, {len(preds)} predictions "
                 f"(score >= {min_score:g}, best {top_k} of the video)", fontsize=10)
    if not rows:
        ax.text(0.5, 0.5, "no ground truth and no predictions", transform=ax.transAxes,
                ha="center", va="center", color="gray")
    handles = [Patch(facecolor=GT_COLOR, label="ground truth (upper lane)"),
               Patch(facecolor=cmap(norm(0.8 * vmax)), label="prediction, coloured by score (lower lane)")]
    if marks:
        handles.append(Line2D([], [], marker="v", linestyle="", color="#d62728", label="announced (new event)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8, frameon=False)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="prediction score", pad=0.01)
    return fig


# -------------------------------------------------------------------------------- training curve


def _number(rec: Dict[str, Any], key: str, lineno: int, path: PathLike, required: bool = True):
    if key not in rec:
        if required:
            raise PlotError(f"{path}, line {lineno}: {rec.get('kind')!r} record without {key!r}")
        return None
    value = rec[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PlotError(f"{path}, line {lineno}: {key!r} must be a number, got {value!r}")
    return float(value)


def _read_log(log_path: PathLike):
    iters: List[Dict[str, Any]] = []
    epochs: List[Dict[str, Any]] = []
    evals: List[Dict[str, Any]] = []
    try:
        fd = open(log_path, "r", encoding="utf-8")
    except OSError as err:
        raise PlotError(f"cannot read training log {log_path}: {err.strerror or err}") from None
    with fd:
        for lineno, line in enumerate(fd, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise PlotError(f"{log_path}, line {lineno}: not valid JSON ({err.msg})") from None
            if not isinstance(rec, dict):
                raise PlotError(f"{log_path}, line {lineno}: expected a JSON object, got {type(rec).__name__}")
            kind = rec.get("kind")
            if kind in ("iter", "epoch"):
                item = {"iteration": _number(rec, "iteration", lineno, log_path),
                        "loss": _number(rec, "loss", lineno, log_path),
                        "lr": _number(rec, "lr", lineno, log_path, required=False),
                        "losses": {}}
                losses = rec.get("losses", {})
                if not isinstance(losses, dict):
                    raise PlotError(f"{log_path}, line {lineno}: 'losses' must be an object, got {losses!r}")
                for name in losses:
                    item["losses"][str(name)] = _number(losses, name, lineno, log_path)
                (iters if kind == "iter" else epochs).append(item)
            elif kind == "eval":
                item = {"epoch": _number(rec, "epoch", lineno, log_path),
                        "average_mAP": _number(rec, "average_mAP", lineno, log_path)}
                per, tious = rec.get("mAP_per_tiou"), rec.get("tiou_thresholds")
                if per is not None or tious is not None:
                    if (not isinstance(per, list) or not isinstance(tious, list) or len(per) != len(tious)
                            or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                       for x in per + tious)):
                        raise PlotError(f"{log_path}, line {lineno}: 'mAP_per_tiou' and 'tiou_thresholds' "
                                        f"must be number lists of equal length")
                    item["per_tiou"] = {round(float(t), 6): float(m) for t, m in zip(tious, per)}
                evals.append(item)
    if not iters and not epochs and not evals:
        raise PlotError(f"training log {log_path} has no 'iter', 'epoch' or 'eval' records")
    return iters, epochs, evals


def plot_training_curve(log_path: PathLike, out_png: PathLike) -> Path:
    """Plot a JSON-lines training log: losses (log scale) and learning rate vs iteration, and
    average mAP (plus mAP per tIoU) vs epoch when the log has ``eval`` records."""
    iters, epochs, evals = _read_log(log_path)
    Figure, Canvas, _ = _matplotlib()
    has_lr = any(r["lr"] is not None for r in iters + epochs)
    has_loss = bool(iters or epochs)
    panels = [name for name, ok in (("loss", has_loss), ("lr", has_lr), ("map", bool(evals))) if ok]
    fig = Figure(figsize=(10, 3.2 * len(panels)), layout="constrained")
    axes = dict(zip(panels, fig.subplots(len(panels), 1, squeeze=False)[:, 0]))

    if "loss" in axes:
        ax = axes["loss"]
        if iters:
            x = [r["iteration"] for r in iters]
            ax.plot(x, [r["loss"] for r in iters], color="black", lw=1.4, label="total")
            names = list(dict.fromkeys(n for r in iters for n in r["losses"]))
            for name in names:
                pts = [(r["iteration"], r["losses"][name]) for r in iters if name in r["losses"]]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.0, label=name)
        if epochs:
            ax.plot([r["iteration"] for r in epochs], [r["loss"] for r in epochs], "o--", color="tab:red",
                    ms=4, lw=0.8, label="total (epoch mean)")
        ax.set_yscale("log", nonpositive="mask")
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss")
        ax.set_title("training loss")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, ncols=2)
    if "lr" in axes:
        ax = axes["lr"]
        pts = [(r["iteration"], r["lr"]) for r in (iters or epochs) if r["lr"] is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color="tab:blue")
        ax.set_xlabel("iteration")
        ax.set_ylabel("learning rate")
        ax.set_title("learning rate")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        ax.grid(True, alpha=0.3)
    if "map" in axes:
        ax = axes["map"]
        evals = sorted(evals, key=lambda r: r["epoch"])
        tious = sorted({t for r in evals for t in r.get("per_tiou", {})})
        for t in tious:
            pts = [(r["epoch"], r["per_tiou"][t]) for r in evals if t in r.get("per_tiou", {})]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=0.9, alpha=0.8, marker=".",
                    label=f"tIoU {t:g}")
        ax.plot([r["epoch"] for r in evals], [r["average_mAP"] for r in evals], "o-", color="black",
                lw=1.8, label="average mAP")
        ax.set_xlabel("epoch")
        ax.set_ylabel("mAP")
        ax.set_title("validation mAP")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, ncols=2)
    return _save(fig, Canvas, Path(out_png))
