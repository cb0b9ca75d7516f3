"""``asl-edge eval-stream``: how good and how early a stream's events were, against ground truth.

From a run's events (the JSON lines ``asl-edge stream --out`` and ``asl-edge demo`` write: the
lifecycle messages ``new``/``update``/``end``/``cancel``; a file of final events only counts every
event as ``end``) and the annotations of the videos the streams showed:

* ``average_mAP`` (and per tIoU): the final events scored as ``asl-edge eval-detections`` scores
  offline detections;
* ``final_latency_s`` {``p50``, ``p95``, ``count``}: per ground-truth action, the first final event
  scoring ``alert_score`` or more that matches it (same label, tIoU ``match_tiou`` or more), decided
  this many seconds of stream time after the action's end;
* ``new_latency_s``: per action, the first ``new`` event whose event ended matching it, this many
  seconds after the action's start; ``new_latency_s_2s``: the same over actions of 2 s or more;
* ``new_precision``: the share of ``new`` events whose event ended as a final event matching an
  action (a cancelled one, or one that ended elsewhere, did not);
* ``cancels``: how many provisional events were cancelled.

Streams map to annotated videos by name: the stream's name, the id ``extract-features`` gives
its URI (``demo_seed7_30s`` for ``test://demo?seed=7&seconds=30``), or the only video when there
is one stream and one video.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from .engine import StreamError

MATCH_TIOU = 0.5


def read_events(path) -> Tuple[List[Dict], Dict]:
    """The event messages of an events file and its last run's ``start`` record ({} without one).
    Only the last run of a file that several runs appended to is read. StreamError naming the line
    for what is not JSON."""
    messages: List[Dict] = []
    start: Dict = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise StreamError(f"cannot read the events {path}: {err.strerror or err}") from err
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as err:
            raise StreamError(f"{path}:{number}: not a JSON line ({err})") from err
        if not isinstance(item, dict):
            raise StreamError(f"{path}:{number}: not a JSON object")
        if item.get("status") == "start":
            messages, start = [], item
        elif "status" not in item:
            missing = [k for k in ("stream", "label", "label_id", "start", "end", "score", "decided_at")
                       if k not in item]
            if missing:
                raise StreamError(f"{path}:{number}: an event without {', '.join(missing)}")
            messages.append({"type": "end", **item})
    return messages, start


def _tiou(a: Tuple[float, float], b: Tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def _percentiles(values: Sequence[float]) -> Dict:
    if not values:
        return {"p50": None, "p95": None, "count": 0}
    ordered = sorted(values)
    return {"p50": statistics.median(ordered), "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
            "count": len(ordered)}


def stream_metrics(messages: List[Dict], gt, video_of: Dict[str, str], tious: Sequence[float],
                   alert_score: float) -> Dict:
    """The metrics of the module docstring. ``gt``: a :class:`~asl_edge.train.evaluation.GroundTruth`;
    ``video_of``: stream name -> video id."""
    from ..train.evaluation import Prediction, evaluate_detections

    finals = [m for m in messages if m["type"] == "end"]
    predictions = [Prediction(video_of[m["stream"]], m["label"], float(m["start"]), float(m["end"]),
                              float(m["score"])) for m in finals]
    result = evaluate_detections(gt, predictions, tious)
    ended = {(m["stream"], m["id"]): m for m in finals if "id" in m}
    actions: Dict[str, List[Tuple[str, float, float]]] = {}
    for video, label, start, end in gt.segments:
        actions.setdefault(video, []).append((label, start, end))

    def matches(event: Dict, action: Tuple[str, float, float]) -> bool:
        return event["label"] == action[0] and _tiou((event["start"], event["end"]), action[1:]) >= MATCH_TIOU

    final_latency, new_latency, new_latency_long = [], [], []
    for stream, video in video_of.items():
        for action in actions.get(video, []):
            _, start, end = action
            decided = [m["decided_at"] for m in finals
                       if m["stream"] == stream and m["score"] >= alert_score and matches(m, action)]
            if decided:
                final_latency.append(min(decided) - end)
            announced = [m["decided_at"] for m in messages if m["type"] == "new" and m["stream"] == stream
                         and (stream, m.get("id")) in ended and matches(ended[(stream, m["id"])], action)]
            if announced:
                new_latency.append(min(announced) - start)
                if end - start >= 2.0:
                    new_latency_long.append(min(announced) - start)
    news = [m for m in messages if m["type"] == "new"]
    precise = [m for m in news if (m["stream"], m.get("id")) in ended
               and any(matches(ended[(m["stream"], m["id"])], a) for a in actions.get(video_of[m["stream"]], []))]
    return {"average_mAP": result["average_mAP"], "mAP_per_tiou": result["mAP_per_tiou"],
            "tiou_thresholds": result["tiou_thresholds"], "ap_per_class": result["ap_per_class"],
            "alert_score": alert_score, "final_events": len(finals),
            "final_latency_s": _percentiles(final_latency), "new_latency_s": _percentiles(new_latency),
            "new_latency_s_2s": _percentiles(new_latency_long),
            "new_precision": len(precise) / len(news) if news else None, "new_events": len(news),
            "cancels": sum(m["type"] == "cancel" for m in messages),
            "actions": sum(len(actions.get(v, [])) for v in set(video_of.values()))}


def map_streams(streams: Sequence[str], videos: Sequence[str]) -> Dict[str, str]:
    """Stream name -> video id (see the module docstring); StreamError naming what cannot be mapped."""
    from ..features.extract import source_id

    if len(streams) == 1 and len(videos) == 1:
        return {streams[0]: videos[0]}
    mapping = {}
    for stream in streams:
        if stream in videos:
            mapping[stream] = stream
            continue
        try:
            candidate = source_id(stream)
        except Exception:  # noqa: BLE001 - a stream name that is no URI
            candidate = None
        if candidate not in videos:
            raise StreamError(f"stream {stream!r} is none of the annotated videos ({', '.join(list(videos)[:5])}"
                              f"{' ...' if len(videos) > 5 else ''}): name the stream or the video alike")
        mapping[stream] = candidate
    return mapping


def format_metrics(metrics: Dict) -> str:
    """The metrics as a few lines of text."""
    def seconds(p: Dict) -> str:
        return "-" if p["p50"] is None else f"p50 {p['p50']:.2f} s, p95 {p['p95']:.2f} s ({p['count']} actions)"

    precision = "-" if metrics["new_precision"] is None else f"{100 * metrics['new_precision']:.0f} %"
    tious = ", ".join(f"{t:g}" for t in metrics["tiou_thresholds"])
    return (f"average mAP {metrics['average_mAP']:.3f} (tIoU {tious}: "
            f"{', '.join(f'{m:.3f}' for m in metrics['mAP_per_tiou'])}) of {metrics['final_events']} final events "
            f"for {metrics['actions']} actions\n"
            f"final events (score >= {metrics['alert_score']:g}) after the action's end: "
            f"{seconds(metrics['final_latency_s'])}\n"
            f"new events after the action's start: {seconds(metrics['new_latency_s'])}; actions of 2 s or more: "
            f"{seconds(metrics['new_latency_s_2s'])}\n"
            f"new events: {metrics['new_events']}, {precision} of them ended matching an action; "
            f"{metrics['cancels']} cancelled")


def add_parser(sub) -> None:
    p = sub.add_parser("eval-stream", help="mAP and latency of a stream's events (final and provisional) against "
                                           "ground truth")
    p.add_argument("--gt", required=True, help="annotation JSON (ActionFormer/ActivityNet 'database' layout)")
    p.add_argument("--events", required=True, help="the JSON-lines events of asl-edge stream --out (or demo)")
    p.add_argument("--split", default="test", help="subset of the annotations to evaluate (default test; "
                                                     "extract-features files videos under training)")
    p.add_argument("--tiou", default="0.3:0.7:0.1", help="tIoU thresholds of the mAP (default 0.3:0.7:0.1)")
    p.add_argument("--alert-score", type=float, default=None,
                   help="final events scoring this or more count for the latency (default: the run's, from its "
                        "start line, else 0.4)")
    p.add_argument("--out", default=None,
                   help="folder for eval_stream.json, detections.json (the final events) and <video>.png timelines "
                        "(ground truth, final events, and a triangle where each new event was announced)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..outputs import write_json
    from ..train.evaluation import EvaluationError, load_ground_truth, parse_tious

    messages, start = read_events(args.events)
    if not messages:
        raise StreamError(f"{args.events} holds no event")
    alert = args.alert_score if args.alert_score is not None else start.get("alert_score", 0.4)
    try:
        gt = load_ground_truth(args.gt, args.split)
        video_of = map_streams(sorted({m["stream"] for m in messages}), gt.videos)
        metrics = stream_metrics(messages, gt, video_of, parse_tious(args.tiou), alert)
    except EvaluationError as err:
        raise StreamError(str(err)) from err
    print(format_metrics(metrics))
    if args.out:
        out = Path(args.out)
        write_json(metrics, out / "eval_stream.json")
        pictures = write_timelines(messages, video_of, args.gt, args.split, out)
        print(f"wrote {out / 'eval_stream.json'}, {out / 'detections.json'}"
              + (f" and {len(pictures)} timeline{'s' if len(pictures) != 1 else ''}" if pictures else ""),
              file=sys.stderr)
    return 0


def write_timelines(messages: List[Dict], video_of: Dict[str, str], gt_path, split: str, out: Path) -> List[Path]:
    """``out/detections.json`` (the final events per video) and a timeline PNG per video; no PNG
    (said) without matplotlib."""
    from ..outputs import activitynet_results, write_json
    from ..train.plots import PlotError, plot_detections

    finals: Dict[str, List[Dict]] = {video: [] for video in video_of.values()}
    marks: Dict[str, List] = {video: [] for video in video_of.values()}
    for m in messages:
        if m["type"] == "end":
            finals[video_of[m["stream"]]].append(m)
        elif m["type"] == "new":
            marks[video_of[m["stream"]]].append((m["decided_at"], m["label"]))
    write_json(activitynet_results(finals), out / "detections.json")
    try:
        return plot_detections(gt_path, out / "detections.json", out, videos=sorted(finals), split=split,
                               marks=marks)
    except (PlotError, ImportError) as err:
        print(f"no timeline pictures: {err}", file=sys.stderr)
        return []
