"""Synthetic datasets: determinism, file formats, planted structure, config, errors."""

import json
import time

import numpy as np
import pytest

from asl_edge.config import load_config
from asl_edge.train.evaluation import load_ground_truth
from asl_edge.train.synthetic import (
    PRESETS,
    SyntheticError,
    generate_synthetic,
    make_synthetic,
)

STRIDE, NFRAMES, FPS = 4, 16, 30.0


def sec_to_grid(sec):
    return (sec * FPS - 0.5 * NFRAMES) / STRIDE


def read_dataset(paths):
    ann = json.loads(paths["annotations"].read_text())
    feats = {p.stem: np.load(p) for p in sorted(paths["features"].glob("*.npy"))}
    return ann, feats


@pytest.fixture(scope="module")
def keyframe_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("keyframe")
    return make_synthetic(out, "keyframe", seed=0)


def test_same_seed_same_files_other_seed_differs(tmp_path):
    a = make_synthetic(tmp_path / "a", "easy", seed=3)
    b = make_synthetic(tmp_path / "b", "easy", seed=3)
    c = make_synthetic(tmp_path / "c", "easy", seed=4)
    assert a["annotations"].read_bytes() == b["annotations"].read_bytes()
    ann_a, feats_a = read_dataset(a)
    _, feats_b = read_dataset(b)
    assert feats_a.keys() == feats_b.keys() and len(feats_a) == 160
    for vid in feats_a:
        assert np.array_equal(feats_a[vid], feats_b[vid])
    # configs differ only by their folder
    cfg_a = a["config"].read_text().replace(str(a["features"].parent), "X")
    cfg_b = b["config"].read_text().replace(str(b["features"].parent), "X")
    assert cfg_a == cfg_b
    ann_c, feats_c = read_dataset(c)
    assert ann_c != ann_a
    assert not np.array_equal(feats_c["synth_train_0000"][:100], feats_a["synth_train_0000"][:100])


def test_generation_is_fast(tmp_path):
    for name in PRESETS:
        start = time.perf_counter()
        make_synthetic(tmp_path / name, name, seed=0)
        assert time.perf_counter() - start < 10.0  # ~0.1 s on 2 cores; loose for shared machines


def test_annotations_load_with_the_evaluator(keyframe_dir):
    val = load_ground_truth(keyframe_dir["annotations"], "validation")
    train = load_ground_truth(keyframe_dir["annotations"], "training")
    assert len(val.videos) == 60 and len(train.videos) == 120
    assert all(v.startswith("synth_val_") for v in val.videos)
    assert train.videos[7] == "synth_train_0007"
    names = PRESETS["keyframe"].class_names
    assert set(val.classes) <= set(names)
    assert train.label_names == {k: n for k, n in enumerate(names)}
    per_video = {}
    for vid, _, _, _ in val.segments:
        per_video[vid] = per_video.get(vid, 0) + 1
    assert set(per_video) == set(val.videos) and 1 <= min(per_video.values()) and max(per_video.values()) <= 4


@pytest.mark.parametrize("preset", ["easy", "keyframe"])
def test_segments_map_back_to_the_grid(preset, tmp_path):
    p = PRESETS[preset]
    paths = make_synthetic(tmp_path, preset, seed=1)
    ann, feats = read_dataset(paths)
    data = generate_synthetic(preset, seed=1)
    assert len(ann["database"]) == len(data.videos) == p.num_train + p.num_val
    lengths = []
    for v in data.videos:
        entry = ann["database"][v.video_id]
        T = v.features.shape[0]
        assert feats[v.video_id].dtype == np.float32 and feats[v.video_id].shape == (T, 32)
        assert np.array_equal(feats[v.video_id], v.features)
        assert 160 <= T <= 360
        lengths.append(T)
        assert entry["fps"] == 30.0
        assert entry["duration"] == pytest.approx(((T - 1) * STRIDE + NFRAMES) / FPS)
        prev_end = None
        assert len(entry["annotations"]) == len(v.actions)
        for a, (label, start, end) in zip(entry["annotations"], v.actions):
            assert a["label_id"] == label and a["label"] == p.class_names[label]
            s, e = a["segment"]
            assert s == pytest.approx((start * 4 + 8) / 30) and e == pytest.approx((end * 4 + 8) / 30)
            assert sec_to_grid(s) == pytest.approx(start) and sec_to_grid(e) == pytest.approx(end)
            assert 0 <= start and end <= T and e <= entry["duration"]
            assert p.action_len[0] <= end - start <= p.action_len[1]
            if prev_end is not None:
                assert start - prev_end >= 4
            prev_end = end
    assert max(lengths) > 256 > min(lengths)  # some sequences need cropping


def _projections(ann, feats, prototypes, subset=None):
    """Per action: (label, relative position of each frame, projection on its prototype),
    and the projections of every background frame on every prototype."""
    actions, background = [], []
    for vid, entry in ann["database"].items():
        if subset and entry["subset"] != subset:
            continue
        x = feats[vid] @ prototypes.T  # (T, K)
        inside = np.zeros(len(x), bool)
        for a in entry["annotations"]:
            start, end = (int(round(sec_to_grid(t))) for t in a["segment"])
            inside[start:end] = True
            rel = (np.arange(start, end) + 0.5 - start) / (end - start)
            actions.append((a["label_id"], rel, x[start:end, a["label_id"]]))
        background.append(x[~inside])
    return actions, np.concatenate(background)


def test_easy_class_signal_on_every_action_frame(tmp_path):
    paths = make_synthetic(tmp_path, "easy", seed=0)
    ann, feats = read_dataset(paths)
    protos = generate_synthetic("easy", seed=0).prototypes
    actions, background = _projections(ann, feats, protos)
    inside = np.concatenate([proj for _, _, proj in actions])
    assert inside.mean() == pytest.approx(2.5, abs=0.2)
    assert abs(background.mean()) < 0.2
    # every part of the action carries the class: first and second half alike
    first = np.concatenate([proj[rel < 0.5] for _, rel, proj in actions]).mean()
    second = np.concatenate([proj[rel >= 0.5] for _, rel, proj in actions]).mean()
    assert abs(first - second) < 0.3


def test_keyframe_class_evidence_sits_at_class_specific_positions(keyframe_dir):
    ann, feats = read_dataset(keyframe_dir)
    data = generate_synthetic("keyframe", seed=0)
    actions, background = _projections(ann, feats, data.prototypes)

    # key frames (from the generator) carry the class; the rest of the action does not
    key_vals, rest_vals = [], []
    for v in data.videos:
        x = v.features @ data.prototypes.T
        for (label, start, end), (k0, k1) in zip(v.actions, v.key_frames):
            assert start <= k0 < k1 <= end
            assert 0.1 <= (k1 - k0) / (end - start) <= 0.3
            key_vals.append(x[k0:k1, label])
            rest_vals.append(np.concatenate([x[start:k0, label], x[k1:end, label]]))
    key_mean, rest_mean = np.concatenate(key_vals).mean(), np.concatenate(rest_vals).mean()
    assert key_mean > 2.0 and abs(rest_mean) < 0.3 and abs(background.mean()) < 0.2

    # measured from the files alone: where, inside its actions, each class's evidence peaks
    edges = np.linspace(0.0, 1.0, 21)
    peaks = []
    for k in range(5):
        rel = np.concatenate([r for lab, r, _ in actions if lab == k])
        proj = np.concatenate([p for lab, _, p in actions if lab == k])
        idx = np.digitize(rel, edges) - 1
        profile = np.array([proj[idx == b].mean() for b in range(20)])  # mean evidence per 5 % bin
        peaks.append(0.5 * (edges[profile.argmax()] + edges[profile.argmax() + 1]))
        assert profile.max() > 1.5 and np.median(profile) < 0.5
    assert np.all(np.diff(peaks) > 0.1)  # the position depends on the class
    np.testing.assert_allclose(peaks, np.linspace(0.15, 0.85, 5), atol=0.051)

    # a weak class-agnostic cue marks every action frame; decoys put class evidence outside
    in_cue, out_cue, decoy_vals = [], [], []
    for v in data.videos:
        cue = v.features @ data.action_cue
        inside = np.zeros(len(cue), bool)
        for _, start, end in v.actions:
            inside[start:end] = True
        in_cue.append(cue[inside])
        out_cue.append(cue[~inside])
        for label, start, end in v.decoys:
            assert not inside[start:end].any()
            decoy_vals.append(v.features[start:end] @ data.prototypes[label])
    assert np.concatenate(in_cue).mean() == pytest.approx(0.6, abs=0.15)
    assert abs(np.concatenate(out_cue).mean()) < 0.15
    assert len(decoy_vals) >= 2 * len(data.videos)
    assert np.concatenate(decoy_vals).mean() == pytest.approx(1.5, abs=0.2)


def test_config_loads_and_points_at_the_data(keyframe_dir):
    cfg = load_config(keyframe_dir["config"])
    ds = cfg.dataset
    assert ds.json_file == str(keyframe_dir["annotations"]) and keyframe_dir["annotations"].is_absolute()
    assert ds.feat_folder == str(keyframe_dir["features"])
    assert ds.file_ext == ".npy" and ds.file_prefix is None
    assert (ds.input_dim, ds.num_classes, ds.feat_stride, ds.num_frames) == (32, 5, 4, 16)
    assert ds.default_fps == 30 and ds.max_seq_len == 256 and ds.crop_ratio == [0.9, 1.0]
    assert ds.class_names == list(PRESETS["keyframe"].class_names)
    assert cfg.train_split == ["training"] and cfg.val_split == ["validation"]
    assert cfg.model.embd_dim == 64 and cfg.model.n_mha_win_size == 9 and len(cfg.model.regression_range) == 6
    assert cfg.model.tca.levels == [0] and cfg.opt.epochs == 15 and cfg.loader.num_workers == 0
    ann = json.loads(keyframe_dir["annotations"].read_text())
    for vid in ann["database"]:
        assert (keyframe_dir["features"] / f"{vid}{ds.file_ext}").is_file()


def test_unknown_preset_lists_the_presets(tmp_path):
    with pytest.raises(SyntheticError, match=r"unknown synthetic preset 'hard'.*easy, keyframe"):
        make_synthetic(tmp_path, "hard")
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match="presets"):
        generate_synthetic("hard")


def test_rewrites_only_its_own_files(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "readme.txt").write_text("keep me too")
    make_synthetic(tmp_path, "keyframe", seed=0, overwrite=True)  # 60 validation videos; a folder with other files
    assert (tmp_path / "features" / "synth_val_0059.npy").is_file()
    paths = make_synthetic(tmp_path, "easy", seed=0, overwrite=True)  # 40 validation videos
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert (tmp_path / "features" / "readme.txt").read_text() == "keep me too"
    assert not (tmp_path / "features" / "synth_val_0040.npy").exists()  # stale, from keyframe
    ann, feats = read_dataset(paths)
    assert set(feats) == set(ann["database"])
    assert load_config(paths["config"]).dataset.num_classes == 4


def test_output_path_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(SyntheticError, match="not a folder"):
        make_synthetic(target, "easy")
