"""Detection timelines and training curves: valid PNGs, output layout, input errors."""

import json
import struct
import sys

import pytest

pytest.importorskip("matplotlib")

from asl_edge.train.evaluation import EvaluationError  # noqa: E402
from asl_edge.train.plots import PlotError, plot_detections, plot_training_curve  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """(width, height) of a PNG, after checking that it is a non-trivial PNG file."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    assert len(data) > 5000, f"{path} is suspiciously small ({len(data)} bytes)"
    return struct.unpack(">II", data[16:24])


def write_json(path, obj):
    path.write_text(json.dumps(obj))
    return path


def ann(label, label_id, start, end):
    return {"label": label, "label_id": label_id, "segment": [start, end]}


@pytest.fixture
def files(tmp_path):
    gt = write_json(tmp_path / "gt.json", {"database": {
        "vA": {"subset": "test", "duration": 60.0, "fps": 30.0,
               "annotations": [ann("jump", 0, 5.0, 12.0), ann("run", 1, 30.0, 41.5)]},
        "vB": {"subset": "test", "duration": 30.0, "fps": 30.0, "annotations": [ann("throw", 2, 2.0, 4.0)]},
        "vC": {"subset": "test", "duration": 20.0, "fps": 30.0, "annotations": []},  # no GT, no preds
        "vD": {"subset": "test", "duration": 25.0, "fps": 30.0, "annotations": []},  # predictions only
        "vT": {"subset": "training", "duration": 10.0, "annotations": [ann("jump", 0, 1.0, 2.0)]},
    }})
    preds = {
        "vA": [{"label": "jump", "score": 0.9, "segment": [5.5, 12.5]},
               {"label": "jump", "score": 0.4, "segment": [4.0, 10.0]},
               {"label": "throw", "score": 0.3, "segment": [20.0, 22.0]},
               {"label": "run", "score": 0.05, "segment": [31.0, 40.0]}],  # below min_score
        "vB": [{"label": "throw", "score": 0.7, "segment": [2.1, 4.2]}],
        "vD": [{"label": "run", "score": 0.6, "segment": [3.0, 9.0]}],
        "vT": [{"label": "jump", "score": 0.6, "segment": [1.0, 2.0]}],  # other split: ignored
    }
    pred = write_json(tmp_path / "pred.json", {"results": preds})
    return gt, pred


def test_one_video_goes_to_the_png_file(files, tmp_path):
    gt, pred = files
    out = tmp_path / "plots" / "vA.png"
    written = plot_detections(gt, pred, out, videos=["vA"])
    assert written == [out]
    width, height = png_size(out)
    assert width > 600 and height > 150
    assert not list(out.parent.glob("*.partial*"))


def test_many_videos_go_to_a_folder(files, tmp_path):
    gt, pred = files
    out = tmp_path / "timelines"
    written = plot_detections(gt, pred, out, videos=["vA", "vB"])
    assert written == [out / "vA.png", out / "vB.png"]
    for path in written:
        png_size(path)
    # videos=None: every test video with GT or predictions (not vC, not the training video)
    everything = plot_detections(gt, pred, tmp_path / "all")
    assert [p.name for p in everything] == ["vA.png", "vB.png", "vD.png"]
    for path in everything:
        png_size(path)
    # a single video and a folder as out: <video>.png inside it
    assert plot_detections(gt, pred, tmp_path / "one", videos=["vC"]) == [tmp_path / "one" / "vC.png"]
    png_size(tmp_path / "one" / "vC.png")


def test_more_rows_for_more_classes(files, tmp_path):
    gt, pred = files
    _, h_a = png_size(plot_detections(gt, pred, tmp_path / "a.png", videos=["vA"])[0])  # 3 classes
    _, h_b = png_size(plot_detections(gt, pred, tmp_path / "b.png", videos=["vB"])[0])  # 1 class
    assert h_a > h_b
    # with min_score 0.5, vA keeps one prediction (jump) and its two GT classes: 2 rows
    _, h_a2 = png_size(plot_detections(gt, pred, tmp_path / "a2.png", videos=["vA"], min_score=0.5)[0])
    assert h_b < h_a2 < h_a


def test_actionformer_style_predictions(files, tmp_path):
    gt, _ = files
    pred = write_json(tmp_path / "af.json", {"database": {
        "vA": [{"segment": [5.0, 11.0], "label_id": 0, "scores": 0.8},
               {"segment": [30.0, 40.0], "label_id": 1, "scores": 0.6}]}})
    png_size(plot_detections(gt, pred, tmp_path / "af.png", videos=["vA"], top_k=1)[0])


def test_unknown_videos_are_named(files, tmp_path):
    gt, pred = files
    with pytest.raises(PlotError, match=r"unknown video ids .*'nope'.*'vT'"):
        plot_detections(gt, pred, tmp_path / "x", videos=["vA", "nope", "vT"])
    with pytest.raises(PlotError, match="must be a folder"):
        plot_detections(gt, pred, tmp_path / "x.png", videos=["vA", "vB"])
    with pytest.raises(EvaluationError, match="no video has subset"):
        plot_detections(gt, pred, tmp_path / "x", split="validation")
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.png").exists()


def write_log(path, with_eval=True, extra_lines=()):
    lines = []
    iteration = 0
    for epoch in range(4):
        for _ in range(10):
            iteration += 1
            loss = 3.0 / (1 + iteration / 10)
            lines.append({"kind": "iter", "epoch": epoch, "iteration": iteration, "lr": 1e-3 * min(1.0, iteration / 10),
                          "loss": loss, "losses": {"cls": 0.6 * loss, "reg": 0.4 * loss}})
        lines.append({"kind": "epoch", "epoch": epoch, "iteration": iteration, "loss": loss,
                      "losses": {"cls": 0.6 * loss, "reg": 0.4 * loss}})
        lines.append({"kind": "checkpoint", "epoch": epoch, "path": "ckpt.pt"})  # other kinds: ignored
        if with_eval:
            lines.append({"kind": "eval", "epoch": epoch, "iteration": iteration, "average_mAP": 0.1 * epoch,
                          "mAP_per_tiou": [0.15 * epoch, 0.1 * epoch, 0.05 * epoch],
                          "tiou_thresholds": [0.3, 0.5, 0.7]})
    text = "\n".join(json.dumps(rec) for rec in lines) + "\n" + "".join(extra_lines)
    path.write_text(text)
    return path


def test_training_curve_with_and_without_eval(tmp_path):
    with_eval = plot_training_curve(write_log(tmp_path / "a.jsonl"), tmp_path / "a.png")
    without = plot_training_curve(write_log(tmp_path / "b.jsonl", with_eval=False), tmp_path / "b.png")
    assert with_eval == tmp_path / "a.png" and without == tmp_path / "b.png"
    _, h_with = png_size(with_eval)
    _, h_without = png_size(without)
    assert h_with > h_without  # the mAP panel is only there with eval records


def test_training_curve_malformed_lines(tmp_path):
    log = write_log(tmp_path / "bad.jsonl", extra_lines=["{not json\n"])
    n_lines = len(log.read_text().splitlines())
    with pytest.raises(PlotError, match=rf"line {n_lines}: not valid JSON"):
        plot_training_curve(log, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
    log.write_text('{"kind": "iter", "iteration": 1, "loss": 1.0}\n\n[1, 2]\n')
    with pytest.raises(PlotError, match="line 3: expected a JSON object"):
        plot_training_curve(log, tmp_path / "bad.png")
    log.write_text('{"kind": "iter", "iteration": 1, "loss": 1.0}\n{"kind": "iter", "iteration": 2}\n')
    with pytest.raises(PlotError, match="line 2: 'iter' record without 'loss'"):
        plot_training_curve(log, tmp_path / "bad.png")
    log.write_text('{"kind": "eval", "epoch": 1, "average_mAP": "high"}\n')
    with pytest.raises(PlotError, match="line 1: 'average_mAP' must be a number"):
        plot_training_curve(log, tmp_path / "bad.png")
    log.write_text('{"kind": "note"}\n')
    with pytest.raises(PlotError, match="no 'iter', 'epoch' or 'eval' records"):
        plot_training_curve(log, tmp_path / "bad.png")
    with pytest.raises(PlotError, match="cannot read training log"):
        plot_training_curve(tmp_path / "missing.jsonl", tmp_path / "bad.png")


def test_missing_matplotlib_says_what_to_install(files, tmp_path, monkeypatch):
    gt, pred = files
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotError, match=r"pip install 'asl-edge\[train\]'"):
        plot_training_curve(write_log(tmp_path / "a.jsonl"), tmp_path / "a.png")
    with pytest.raises(PlotError, match=r"pip install 'asl-edge\[train\]'"):
        plot_detections(gt, pred, tmp_path / "a.png", videos=["vA"])
