"""Detection mAP (ActivityNet protocol) on hand-worked fixtures, file formats and errors."""

import json

import pytest

import numpy as np

from asl_edge.train.evaluation import (
    EvaluationError,
    EvaluationWarning,
    GroundTruth,
    Prediction,
    evaluate_detections,
    load_ground_truth,
    load_predictions,
    parse_tious,
    segment_iou,
)


def gt_of(*segs):
    """GroundTruth from (video, label, start, end) tuples, all in the split."""
    gt = GroundTruth()
    for vid, label, s, e in segs:
        if vid not in gt.videos:
            gt.videos.append(vid)
        if label not in gt.classes:
            gt.classes.append(label)
        gt.segments.append((vid, label, float(s), float(e)))
    return gt


def P(vid, label, s, e, score):
    return Prediction(vid, label, float(s), float(e), float(score))


def write(tmp_path, name, obj):
    path = tmp_path / name
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return path


GT2 = gt_of(("v1", "a", 0, 10), ("v1", "a", 20, 30), ("v2", "b", 5, 15))


def test_perfect_predictions_give_one():
    preds = [P("v1", "a", 0, 10, 0.9), P("v1", "a", 20, 30, 0.8), P("v2", "b", 5, 15, 0.7)]
    res = evaluate_detections(GT2, preds, [0.3, 0.5, 0.7])
    assert res["mAP_per_tiou"] == [1.0, 1.0, 1.0]
    assert res["average_mAP"] == 1.0
    assert res["ap_per_class"] == {"a": [1.0] * 3, "b": [1.0] * 3}
    assert res["recall_at_k"]["1"] == [pytest.approx(2 / 3)] * 3  # top-1 of v1 finds one of its two GT
    assert res["recall_at_k"]["5"] == [1.0] * 3


def test_one_false_positive_hand_worked():
    # Class a, 2 GT. Ranked: TP (0.9), FP (0.8, no overlap), TP (0.7).
    # precision = 1, 1/2, 2/3 ; recall = 1/2, 1/2, 1
    # interpolated precision (max to the right): 1, 2/3, 2/3
    # AP = (1/2 - 0) * 1 + (1 - 1/2) * 2/3 = 1/2 + 1/3 = 5/6
    gt = gt_of(("v1", "a", 0, 10), ("v1", "a", 20, 30))
    preds = [P("v1", "a", 0, 10, 0.9), P("v1", "a", 40, 50, 0.8), P("v1", "a", 20, 30, 0.7)]
    res = evaluate_detections(gt, preds, [0.5])
    assert res["ap_per_class"]["a"] == [pytest.approx(5 / 6, abs=1e-12)]
    assert res["average_mAP"] == pytest.approx(5 / 6, abs=1e-12)


def test_duplicate_detection_of_one_gt_is_false_positive():
    # One GT; two detections on it: first TP, second FP -> precision 1, 1/2; recall 1, 1 -> AP 1.
    # With a second GT found later: TP, FP, TP -> AP = 1/2*1 + 1/2*2/3 = 5/6.
    gt = gt_of(("v1", "a", 0, 10), ("v1", "a", 20, 30))
    preds = [P("v1", "a", 0, 10, 0.9), P("v1", "a", 0.5, 10, 0.8), P("v1", "a", 20, 30, 0.7)]
    assert evaluate_detections(gt, preds, [0.5])["average_mAP"] == pytest.approx(5 / 6, abs=1e-12)


def test_matching_takes_highest_tiou_unmatched_gt():
    # GT A [0,10], B [2,12]. Pred X [2,12] (0.9) -> B (tIoU 1); pred Y [0,10] (0.8) -> A. Both TP.
    gt = gt_of(("v1", "a", 0, 10), ("v1", "a", 2, 12))
    preds = [P("v1", "a", 2, 12, 0.9), P("v1", "a", 0, 10, 0.8)]
    assert evaluate_detections(gt, preds, [0.5])["average_mAP"] == 1.0
    # At 0.7, tIoU(A, B) = 8/12 < 0.7: a detection at B then one at B again -> TP, FP -> AP 1/2.
    preds = [P("v1", "a", 2, 12, 0.9), P("v1", "a", 2, 12, 0.8)]
    assert evaluate_detections(gt, preds, [0.7])["average_mAP"] == pytest.approx(0.5)


def test_class_without_predictions_counts_as_zero_and_absent_class_is_ignored():
    preds = [
        P("v1", "a", 0, 10, 0.9),
        P("v1", "a", 20, 30, 0.8),
        P("v2", "zzz", 5, 15, 0.99),  # class absent from the GT: ignored
    ]
    res = evaluate_detections(GT2, preds, [0.5])
    assert res["ap_per_class"] == {"a": [1.0], "b": [0.0]}
    assert res["average_mAP"] == pytest.approx(0.5)
    assert "zzz" not in res["ap_per_class"]


def test_prediction_in_video_without_gt_is_false_positive():
    gt = gt_of(("v1", "a", 0, 10))
    preds = [P("other", "a", 0, 10, 0.9), P("v1", "a", 0, 10, 0.8)]
    # FP then TP: precision 0, 1/2; recall 0, 1 -> AP = 1 * 1/2
    assert evaluate_detections(gt, preds, [0.5])["average_mAP"] == pytest.approx(0.5)


def test_score_ties_are_deterministic_reverse_input_order():
    # Tied scores: ranked in reverse input order (as the official argsort()[::-1] does with a
    # stable argsort). Input FP then TP -> ranking TP, FP -> AP 1. Reversed input -> FP, TP -> AP 1/2.
    gt = gt_of(("v1", "a", 0, 10))
    fp, tp = P("v1", "a", 50, 60, 0.5), P("v1", "a", 0, 10, 0.5)
    assert evaluate_detections(gt, [fp, tp], [0.5])["average_mAP"] == 1.0
    assert evaluate_detections(gt, [tp, fp], [0.5])["average_mAP"] == pytest.approx(0.5)
    for _ in range(3):  # and repeatable
        assert evaluate_detections(gt, [tp, fp], [0.5])["average_mAP"] == pytest.approx(0.5)


def test_output_keys_and_average():
    preds = [P("v1", "a", 0, 10, 0.9), P("v1", "a", 20, 26, 0.8), P("v2", "b", 5, 15, 0.7)]
    res = evaluate_detections(GT2, preds, "0.3:0.7:0.1")
    assert res["tiou_thresholds"] == [0.3, 0.4, 0.5, 0.6, 0.7]
    # [20,26] vs [20,30]: tIoU 0.6 -> TP up to 0.6, FP at 0.7 (class a AP 1/2 there)
    assert res["ap_per_class"]["a"] == [1.0, 1.0, 1.0, 1.0, 0.5]
    assert res["mAP_per_tiou"][-1] == pytest.approx(0.75)
    assert res["average_mAP"] == pytest.approx(sum(res["mAP_per_tiou"]) / 5)
    assert set(res["recall_at_k"]) == {"1", "5", "10", "100"}


def test_parse_tious():
    assert parse_tious("0.3:0.7:0.1") == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert parse_tious("0.5:0.95:0.05") == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    assert parse_tious("0.3, 0.5,0.7") == [0.3, 0.5, 0.7]
    assert parse_tious("0.5") == [0.5]
    for bad in ("a:b:c", "0.3:0.7", "0.7:0.3:0.1", "0.3:0.7:0", "1.5", ""):
        with pytest.raises(EvaluationError):
            parse_tious(bad)


GT_JSON = {
    "database": {
        "v1": {"subset": "Testing", "annotations": [
            {"label": "a", "label_id": 0, "segment": [0, 10]},
            {"label": "a", "label_id": 0, "segment": [20, 30]}]},
        "v2": {"subset": "test", "annotations": [{"label": "b", "label_id": 1, "segment": [5, 15]}]},
        "v3": {"subset": "training", "annotations": [{"label": "c", "label_id": 2, "segment": [1, 2]}]},
    }
}


def test_load_ground_truth_split_case_insensitive(tmp_path):
    gt = load_ground_truth(write(tmp_path, "gt.json", GT_JSON), "test")
    assert gt.videos == ["v1", "v2"]
    assert gt.classes == ["a", "b"]
    assert len(gt.segments) == 3
    assert gt.label_names == {0: "a", 1: "b"}          # only the requested split is read
    assert load_ground_truth(write(tmp_path, "gt.json", GT_JSON), "training").classes == ["c"]


def test_both_prediction_formats_agree(tmp_path):
    gt = load_ground_truth(write(tmp_path, "gt.json", GT_JSON), "testing")
    anet = {"results": {
        "v1": [{"label": "a", "score": 0.9, "segment": [0, 10]}, {"label": "a", "score": 0.4, "segment": [40, 50]}],
        "v2": [{"label": "b", "score": 0.8, "segment": [5, 14]}]}}
    af = {"database": {
        "v1": [{"label_id": 0, "scores": 0.9, "segment": [0, 10]}, {"label_id": 0, "scores": 0.4, "segment": [40, 50]}],
        "v2": [{"label_id": 1, "scores": 0.8, "segment": [5, 14]}]}}
    p1 = load_predictions(write(tmp_path, "p1.json", anet), gt)
    p2 = load_predictions(write(tmp_path, "p2.json", af), gt)
    assert p1 == p2
    r1 = evaluate_detections(gt, p1, [0.5, 0.95])
    assert r1 == evaluate_detections(gt, p2, [0.5, 0.95])
    assert r1["ap_per_class"]["a"] == [0.5, 0.5]
    # without the ground truth's names the id is the class key
    assert load_predictions(write(tmp_path, "p2.json", af))[0].label == 0


@pytest.mark.parametrize(
    "obj, fragment",
    [
        ("{not json", "not valid JSON"),
        ({"foo": {}}, "'database'"),
        ({"database": {"v1": {"annotations": []}}}, "'v1': missing field 'subset'"),
        ({"database": {"v1": {"subset": "test", "annotations": [{"segment": [0, 1]}]}}}, "'v1', annotation 0: missing field 'label'"),
        ({"database": {"v1": {"subset": "test", "annotations": [{"label": "a"}]}}}, "missing field 'segment'"),
        ({"database": {"v1": {"subset": "test", "annotations": [{"label": "a", "segment": [1, "x"]}]}}}, "two numbers"),
        ({"database": {"v1": {"subset": "test", "annotations": [{"label": "a", "segment": [1, float("nan")]}]}}},
         "not finite"),
        ({"database": {"v1": {"subset": "test", "annotations": [{"label": "a", "segment": [0]}]}}}, "'segment' must be [start, end]"),
        ({"database": {"v1": {"subset": "train", "annotations": []}}}, "no video has subset"),
    ],
)
def test_malformed_ground_truth(tmp_path, obj, fragment):
    with pytest.raises(EvaluationError, match=None) as info:
        load_ground_truth(write(tmp_path, "gt.json", obj), "test")
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "obj, fragment",
    [
        ({"nothing": 1}, "expected"),
        ({"results": {"v1": {"label": "a"}}}, "'v1': expected a list"),
        ({"results": {"v1": [{"label": "a", "segment": [0, 1]}]}}, "'v1', detection 0: missing field 'score'"),
        ({"results": {"v1": [{"score": 0.5, "segment": [0, 1]}]}}, "missing field 'label'"),
        ({"results": {"v1": [{"label": "a", "score": "x", "segment": [0, 1]}]}}, "score must be a number"),
        ({"results": {"v1": [{"label": "a", "score": 0.5, "segment": ["a", 1]}]}}, "two numbers"),
        ({"database": {"v1": [{"label_id": "q", "scores": 0.5, "segment": [0, 1]}]}}, "'label_id' must be an integer"),
    ],
)
def test_malformed_predictions(tmp_path, obj, fragment):
    with pytest.raises(EvaluationError) as info:
        load_predictions(write(tmp_path, "p.json", obj))
    assert fragment in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(EvaluationError, match="not found"):
        load_predictions(tmp_path / "nope.json")


def test_eval_detections_cli_prints_a_table_and_writes_json(tmp_path, capsys):
    from asl_edge.cli import main

    gt = {"database": {
        "v1": {"subset": "test", "annotations": [{"label": "jump", "segment": [1.0, 3.0]},
                                                  {"label": "run", "segment": [5.0, 9.0]}]},
        "v2": {"subset": "training", "annotations": [{"label": "jump", "segment": [0.0, 1.0]}]}}}
    pred = {"results": {"v1": [{"label": "jump", "score": 0.9, "segment": [1.0, 3.0]},
                               {"label": "run", "score": 0.8, "segment": [20.0, 22.0]}]}}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    code = main(["eval-detections", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.json"),
                 "--tiou", "0.5", "--out", str(tmp_path / "map.json")])
    assert code == 0
    out = capsys.readouterr().out
    assert "jump" in out and "average mAP 50.00" in out          # jump found (AP 1), run missed (AP 0)
    result = json.loads((tmp_path / "map.json").read_text())
    assert result["mAP_per_tiou"] == [0.5] and result["average_mAP"] == 0.5
    assert main(["eval-detections", "--gt", str(tmp_path / "missing.json"), "--pred",
                 str(tmp_path / "pred.json")]) == 2


# ------------------------------------------------ input the official evaluator scores, scored alike


def test_other_splits_are_not_read(tmp_path):
    gt = {"database": {
        "v1": {"subset": "test", "annotations": [{"label": "a", "segment": [0, 10]}]},
        "v2": {"subset": "training", "annotations": [{"segment": "junk", "label_id": "x"}, {"label": "b"}]},
        "v3": {"subset": "validation", "annotations": "not even a list"}}}
    loaded = load_ground_truth(write(tmp_path, "gt.json", gt), "test")
    assert loaded.videos == ["v1"] and loaded.classes == ["a"]


def test_inverted_and_long_segments_are_scored_as_the_official_evaluator_reads_them(tmp_path):
    gt = {"database": {"v1": {"subset": "test", "annotations": [
        {"label": "a", "segment": [0, 10, 99]},           # first two numbers used
        {"label": "b", "segment": [5, 2]}]}}}             # inverted GT: counts, can never be matched
    pred = {"results": {"v1": [
        {"label": "a", "score": 0.9, "segment": [186.939, 176.25]},   # inverted: overlaps nothing, FP
        {"label": "a", "score": 0.8, "segment": [0, 10]},
        {"label": "b", "score": 0.7, "segment": [2, 5, 0]}]}}
    with pytest.warns(EvaluationWarning) as caught:
        loaded = load_ground_truth(write(tmp_path, "gt.json", gt), "test")
        predictions = load_predictions(write(tmp_path, "p.json", pred), loaded)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2                                     # once per file, with counts
    assert "1 end before they start" in messages[0] and "1 have more than two numbers" in messages[0]
    assert "1 end before they start" in messages[1] and "1 have more than two numbers" in messages[1]
    assert loaded.segments == [("v1", "a", 0.0, 10.0), ("v1", "b", 5.0, 2.0)]
    result = evaluate_detections(loaded, predictions, [0.5])
    # class a: FP then TP -> precision 1/2 at recall 1 -> AP 1/2; class b: its only GT is inverted -> 0
    assert result["ap_per_class"] == {"a": [0.5], "b": [0.0]}


def test_a_zero_union_overlaps_nothing():
    # the official utils.segment_iou divides 0 by 0 here, and NaN < threshold is False
    assert segment_iou(np.array([5.0, 5.0]), np.array([[5.0, 5.0], [4.0, 6.0]])).tolist() == [0.0, 0.0]


def test_predictions_by_label_id_need_ids_in_the_ground_truth(tmp_path):
    gt = load_ground_truth(write(tmp_path, "gt.json", {"database": {
        "v1": {"subset": "test", "annotations": [{"label": "Jump", "segment": [1, 3]}]}}}), "test")
    pred = write(tmp_path, "p.json", {"results": {"v1": [{"label_id": 0, "score": 0.9, "segment": [1, 3]}]}})
    with pytest.raises(EvaluationError, match="the ground truth has no 'label_id' to name it"):
        load_predictions(pred, gt)
    ambiguous = load_ground_truth(write(tmp_path, "gt2.json", {"database": {"v1": {"subset": "test", "annotations": [
        {"label": "Jump", "label_id": 0, "segment": [1, 3]}, {"label": "Run", "label_id": 0, "segment": [4, 6]}]}}}),
        "test")
    with pytest.raises(EvaluationError, match="'label_id' 0 names more than one label"):
        load_predictions(pred, ambiguous)


MISMATCH_GT = {"database": {
    "v1": {"subset": "test", "annotations": [{"label": "Jump", "segment": [1.0, 3.0]},
                                              {"label": "Run", "segment": [5.0, 9.0]}]}}}


def eval_cli(tmp_path, pred, *extra):
    from asl_edge.cli import main

    (tmp_path / "gt.json").write_text(json.dumps(MISMATCH_GT))
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    return main(["eval-detections", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.json"),
                 "--tiou", "0.5", *extra])


def test_predictions_that_cannot_match_anything_are_an_error(tmp_path, capsys):
    pred = {"results": {"v1": [{"label": "jump", "score": 0.9, "segment": [1.0, 3.0]},
                               {"label": "run", "score": 0.8, "segment": [5.0, 9.0]}]}}
    assert eval_cli(tmp_path, pred) == 2
    err = capsys.readouterr().err
    assert "none of the 2 predictions can match the ground truth" in err
    assert "'jump', 'run'" in err and "'Jump', 'Run'" in err
    other_video = {"results": {"v9": [{"label": "Jump", "score": 0.9, "segment": [1.0, 3.0]}]}}
    assert eval_cli(tmp_path, other_video) == 2
    assert "1 of 1 predictions are for videos not in the split" in capsys.readouterr().err


def test_unmatched_labels_and_videos_are_reported_and_recorded(tmp_path, capsys):
    pred = {"results": {
        "v1": [{"label": "Jump", "score": 0.9, "segment": [1.0, 3.0]},
               {"label": "run", "score": 0.8, "segment": [5.0, 9.0]}],
        "v7": [{"label": "Run", "score": 0.7, "segment": [5.0, 9.0]}]}}
    assert eval_cli(tmp_path, pred, "--out", str(tmp_path / "map.json")) == 0
    err = capsys.readouterr().err
    assert "warning: 1 of 3 predictions have a label that is not a ground-truth class of the split (left out), " \
           "e.g. 'run'" in err
    assert "1 of 3 predictions are for videos not in the split (false positives), e.g. 'v7'" in err
    result = json.loads((tmp_path / "map.json").read_text())
    assert result["ap_per_class"] == {"Jump": [1.0], "Run": [0.0]}
    assert result["unmatched"] == {"predictions": 3, "matchable": 1,
                                   "label_not_in_ground_truth": {"count": 1, "examples": ["run"]},
                                   "video_not_in_split": {"count": 1, "examples": ["v7"]}}
