"""Detection mAP of a model on a split of its dataset: the network, post-processing and evaluator
exactly as ``asl-edge infer`` + ``asl-edge eval-detections`` would run them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

from ..config import Config
from ..localizer import FeatureError, Localizer, Network
from ..model import class_names
from .datasets import DatasetError, VideoRecord, load_records, read_features
from .evaluation import EvaluationError, GroundTruth, Prediction, evaluate_detections, parse_tious
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


# what asl-edge eval writes into its --out folder
EVAL_FILES = ("eval.json", "detections.json", "*.partial*")
# dataset keys that describe the features a network was trained on and how their grid maps to seconds
FEATURE_KEYS = ("input_dim", "num_classes", "class_names", "feat_stride", "num_frames", "default_fps",
                "downsample_rate", "max_seq_len", "force_upsampling", "extractor")


def evaluation_config(trained: Config, given: Config, given_name: str) -> Config:
    """The config to evaluate a trained network with: the data location (json_file, feat_folder,
    file_prefix, file_ext) and test_cfg from ``given``, everything else from ``trained``.
    EvaluationError when ``given`` describes the features differently (FEATURE_KEYS; None in
    ``given`` for class_names, default_fps and extractor means "not stated")."""
    differences = []
    for key in FEATURE_KEYS:
        mine, theirs = getattr(trained.dataset, key), getattr(given.dataset, key)
        if theirs is None and key in ("class_names", "default_fps", "extractor"):
            continue
        if mine != theirs:
            differences.append(f"dataset.{key} {theirs!r} (the checkpoint's: {mine!r})")
    if differences:
        raise EvaluationError(f"--config {given_name} describes the features differently from the checkpoint: "
                              f"{'; '.join(differences)}. The network was trained on features with the checkpoint's "
                              "values: give a config whose dataset section matches them, or leave --config out")
    config = copy.deepcopy(trained)
    for key in ("json_file", "feat_folder", "file_prefix", "file_ext"):
        setattr(config.dataset, key, getattr(given.dataset, key))
    config.test_cfg = copy.deepcopy(given.test_cfg)
    return config


def prepare_evaluation(ckpt: Union[str, Path], split: str, device: Union[str, torch.device] = "cpu",
                       config_source: Optional[str] = None, tiou: Optional[str] = None,
                       skip_invalid: bool = False) -> Tuple[Network, Config, List[VideoRecord], List[str]]:
    """``(network, config, records, skipped)`` for evaluating a checkpoint (``model.pt``) or training
    state (``checkpoints/last.pt``) on ``split``: ``config_source`` supplies the data location and
    test_cfg (:func:`evaluation_config`), ``tiou`` the thresholds; every feature file of the split is
    read and checked before the evaluation starts."""
    from ..config import load_config
    from .trainer import load_trained_model

    model, config = load_trained_model(ckpt, device=device)
    if config_source is not None:
        config = evaluation_config(config, load_config(config_source), config_source)
    if tiou is not None:
        config.test_cfg.tiou_thresholds = parse_tious(tiou)
    records, skipped = load_records(config, [split], skip_invalid=skip_invalid, check_files=True)
    return model, config, records, skipped
