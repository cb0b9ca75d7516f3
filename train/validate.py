"""Detection mAP of a model on a split of its dataset: the network, post-processing and evaluator
exactly as ``asl-edge infer`` + ``asl-edge eval-detections`` would run them."""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple, Union

import torch

from ..config import Config
from ..localizer import FeatureError, Localizer, Network
from ..model import class_names
from .datasets import DatasetError, VideoRecord, read_features
from .evaluation import GroundTruth, Prediction, evaluate_detections
from .progress import progress_bar


def ground_truth(records: Sequence[VideoRecord], names: Sequence[str]) -> GroundTruth:
    """The evaluator's GT of ``records``, labelled with the class names the Localizer emits."""
    gt = GroundTruth(label_names=dict(enumerate(names)))
    for record in records:
        gt.videos.append(record.video_id)
        for (start, end), label_id in zip(record.segments.tolist(), record.labels.tolist()):
            label = names[label_id]
            if label not in gt.classes:
                gt.classes.append(label)
            gt.segments.append((record.video_id, label, float(start), float(end)))
    return gt


@torch.inference_mode()
def evaluate_model(network: Network, config: Config, records: Sequence[VideoRecord],
                   device: Union[str, torch.device] = "cpu",
                   progress: bool = False) -> Tuple[Dict, Dict[str, List[Dict]]]:
    """Run ``network`` on every video of ``records`` (:func:`load_records`) and score it.

    Returns the evaluator's result (``mAP_per_tiou``, ``average_mAP``, per-class AP, Recall@k at
    ``test_cfg.tiou_thresholds``) and the detections per video (seconds).
    """
    localizer = Localizer(network, config, device=device)
    names = class_names(config)
    detections: Dict[str, List[Dict]] = {}
    predictions: List[Prediction] = []
    for record in progress_bar(records, enabled=progress, desc="evaluate", unit="video"):
        feats = read_features(record.feature_path, record.video_id)
        try:
            dets = localizer.detect(feats, fps=record.fps, duration=record.duration)
        except FeatureError as err:
            raise DatasetError(f"video {record.video_id!r} ({record.feature_path}): {err}") from None
        detections[record.video_id] = dets
        predictions.extend(Prediction(record.video_id, d["label"], d["start"], d["end"], d["score"]) for d in dets)
    result = evaluate_detections(ground_truth(records, names), predictions, config.test_cfg.tiou_thresholds)
    return result, detections


def format_result(result: Dict) -> str:
    """One line: average mAP and mAP per tIoU, in percent."""
    per = " ".join(f"{t:g}:{100 * m:.1f}" for t, m in zip(result["tiou_thresholds"], result["mAP_per_tiou"]))
    return f"average mAP {100 * result['average_mAP']:.2f} ({per})"
