"""ActionFormer-format datasets: reading features, annotations, the inference grid, random crops,
batching and the reproducible training sampler, on tiny hand-worked fixtures."""

import json
from functools import partial

import numpy as np
import pytest
import torch

from asl_edge.localizer import Localizer
from asl_edge.train.datasets import (
    ActionDataset,
    Batch,
    DatasetError,
    TrainSampler,
    VideoSample,
    collate,
    load_records,
    read_features,
)
from helpers import small_config

C = 24  # small_config: input_dim 24, 3 classes, max_seq_len 64, feat_stride 4, num_frames 16


def ramp(steps, seed=0):
    """(T, C) features whose channel 0 is the time index, so a crop's start can be read back."""
    feats = np.random.default_rng(seed).standard_normal((steps, C)).astype(np.float32)
    feats[:, 0] = np.arange(steps)
    return feats


def video(segs=(), subset="training", fps=4.0, duration=40.0, **extra):
    """An annotation entry; ``segs`` are (start_sec, end_sec, label_id)."""
    entry = {"subset": subset, "fps": fps, "duration": duration,
             "annotations": [{"label": "x", "label_id": lid, "segment": [s, e]} for s, e, lid in segs]}
    entry.update(extra)
    return entry


def setup(tmp_path, videos, feats, **dataset):
    """Write the annotation JSON and one .npy per video; the small config pointing at them."""
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"database": videos}))
    folder = tmp_path / "feats"
    folder.mkdir(exist_ok=True)
    for vid, array in feats.items():
        np.save(folder / f"{vid}.npy", array)
    return small_config(**{"json_file": str(ann), "feat_folder": str(folder), **dataset})


def localizer(config):
    return Localizer(lambda x, mask: None, config)


# --------------------------------------------------------------------------- the inference grid


def test_seconds_map_to_the_localizer_grid(tmp_path):
    # fps 10, feat_stride 4, num_frames 16: x = (sec * 10 - 8) / 4, so [2, 5] s -> [3, 10.5].
    raw = ramp(40)
    config = setup(tmp_path, {"v": video([(2.0, 5.0, 1)], subset="test", fps=10.0, duration=5.6)}, {"v": raw})
    sample = ActionDataset(config, ["testing"], training=False)[0]
    assert isinstance(sample, VideoSample) and sample.video_id == "v"
    assert sample.segments.dtype == torch.float32 and sample.labels.dtype == torch.int64
    assert sample.segments.tolist() == [[3.0, 10.5]] and sample.labels.tolist() == [1]
    assert torch.equal(sample.feats, torch.from_numpy(raw).t())
    assert sample.fps == 10.0 and sample.duration == 5.6


@pytest.mark.parametrize("dataset, length, expected", [
    # every 2nd step: stride 8 -> x = (sec * 10 - 8) / 8
    ({"downsample_rate": 2}, 20, [1.5, 5.25]),
    # 40 features span 39 * 4 + 16 = 172 frames, tiled by 64 steps of 2.6875 frames:
    # x = (sec * 10 - 2.6875 / 2) / 2.6875
    ({"force_upsampling": True}, 64, [18.65625 / 2.6875, 48.65625 / 2.6875]),
])
def test_resampled_grids_match_the_localizer(tmp_path, dataset, length, expected):
    raw = ramp(40)
    config = setup(tmp_path, {"v": video([(2.0, 5.0, 0)], fps=10.0)}, {"v": raw}, crop_ratio=None, **dataset)
    for training in (False, True):  # without crop_ratio, training crops only sequences > max_seq_len
        sample = ActionDataset(config, ["training"], training=training)[(0, 3)]
        assert sample.feats.shape == (C, length)
        assert sample.segments[0].tolist() == pytest.approx(expected, abs=1e-5)
    x, mask, grid, _ = localizer(config).prepare(raw, fps=10.0, duration=40.0)
    assert int(mask.sum()) == length
    assert torch.allclose(sample.feats, x[0, :, :length], atol=1e-6)
    assert grid.to_seconds(sample.segments, 40.0)[0].tolist() == pytest.approx([2.0, 5.0], abs=1e-5)


def test_evaluation_items_are_never_cropped(tmp_path):
    config = setup(tmp_path, {"v": video([(10.0, 20.0, 0)], subset="validation")}, {"v": ramp(100)})
    sample = ActionDataset(config, ["val"], training=False)[(0, 5)]
    assert sample.feats.shape == (C, 100) and sample.segments.tolist() == [[8.0, 18.0]]


# --------------------------------------------------------------------------------- random crops

# fps 4 with feat_stride 4 and num_frames 16: grid x = sec - 2. L = 100 > max_seq_len 64, so the
# window is 64 steps starting at s in [0, 36], widened by 0.5 * 16 / 4 = 2: [s - 2, s + 66].
A, B, Cs, D = (30, 60), (0, 4), (90, 100), (120, 130)  # grid units


def keeps(seg, s):
    """The 50% rule of the crop, worked by hand for the segments above."""
    left, right = max(seg[0], s - 2), min(seg[1], s + 66)
    return max(right - left, 0) / (seg[1] - seg[0]) >= 0.5


def crop_config(tmp_path, segs, **dataset):
    entry = video([(s + 2.0, e + 2.0, i % 3) for i, (s, e) in enumerate(segs)], duration=110.0)
    return setup(tmp_path, {"v": entry}, {"v": ramp(100)}, crop_ratio=None, **dataset)


def test_crop_keeps_segments_by_the_half_overlap_rule(tmp_path):
    # A is kept by every window; B only when s <= 4 (s = 4 keeps exactly half of it); C only when
    # s >= 29 (its overlap s + 66 - 90 reaches 5 of 10); D lies past the features and never is.
    assert [keeps(B, s) for s in (4, 5)] == [True, False]
    assert [keeps(Cs, s) for s in (28, 29)] == [False, True]
    dataset = ActionDataset(crop_config(tmp_path, [A, B, Cs, D]), ["train"], training=True)
    starts = set()
    for seed in range(60):
        sample = dataset[(0, seed)]
        s = int(sample.feats[0, 0])
        starts.add(s)
        assert 0 <= s <= 36 and sample.feats.shape == (C, 64)
        assert torch.equal(sample.feats[0], torch.arange(s, s + 64, dtype=torch.float32))
        kept = [(i, seg) for i, seg in enumerate([A, B, Cs, D]) if keeps(seg, s)]
        # kept segments are clipped to the widened window and shifted by -s
        expected = [[max(a, s - 2) - s, min(b, s + 66) - s] for _, (a, b) in kept]
        assert sample.segments.tolist() == expected
        assert sample.labels.tolist() == [i % 3 for i, _ in kept]
    assert min(starts) <= 4 and max(starts) >= 29  # both B and C cases were seen


def test_crop_retries_until_an_action_is_kept(tmp_path):
    # Only starts 0..4 of 37 keep B: the crop must keep retrying until it finds one.
    dataset = ActionDataset(crop_config(tmp_path, [B]), ["training"], training=True)
    for seed in range(10):
        sample = dataset[(0, seed)]
        s = int(sample.feats[0, 0])
        assert s <= 4 and sample.segments.tolist() == [[max(0, s - 2) - s, 4 - s]]


def test_right_cut_crops_end_inside_an_action_and_keep_its_seen_part(tmp_path):
    # A = (30, 60): a crop of 64 that ends inside it, at 25 % to all of it, starts at
    # round(30 + share * 30) - 64 in [-26..2] -> clamped to [0, 2]; the kept A ends at the widened
    # window's end s + 66 (its seen part), even below the 50 % rule
    dataset = ActionDataset(crop_config(tmp_path, [A, D], right_cut_prob=1.0, right_cut_min=0.25), ["training"],
                            training=True)
    for seed in range(30):
        sample = dataset[(0, seed)]
        s = int(sample.feats[0, 0])
        assert 0 <= s <= 2 and sample.labels.tolist() == [0]
        assert sample.segments.tolist() == [[30 - s, min(60, s + 66) - s]]
    # E = (70, 100) is cut at 25 % to 100 %: the crop ends at 78..100 (starts 14..36), keeping E's
    # part before its end
    E = (70, 100)
    cut = ActionDataset(crop_config(tmp_path, [E], right_cut_prob=1.0, right_cut_min=0.25), ["training"],
                        training=True)
    starts = {int(cut[(0, seed)].feats[0, 0]) for seed in range(40)}
    assert starts <= set(range(14, 37)) and min(starts) < 20
    for seed in range(40):
        sample = cut[(0, seed)]
        s = int(sample.feats[0, 0])
        seen = (min(100, s + 66) - 70) / 30
        assert sample.labels.tolist() == [0] and seen >= 0.25
        assert sample.segments.tolist() == [[70 - s, min(100, s + 66) - s]]


def test_crop_without_a_keepable_action_returns_no_segment(tmp_path):
    sample = ActionDataset(crop_config(tmp_path, [D]), ["training"], training=True)[(0, 1)]
    assert sample.feats.shape == (C, 64) and sample.segments.shape == (0, 2) and sample.labels.shape == (0,)


def test_crop_start_covers_every_window(tmp_path):
    # L = 65, window 64: the start is 0 or 1, both reachable.
    config = setup(tmp_path, {"v": video([(10.0, 20.0, 0)], duration=20.0)}, {"v": ramp(65)}, crop_ratio=None)
    dataset = ActionDataset(config, ["training"], training=True)
    assert {int(dataset[(0, seed)].feats[0, 0]) for seed in range(20)} == {0, 1}


def test_crop_ratio_draws_the_window_length(tmp_path):
    entry = video([(4.0, 30.0, 0)])
    config = setup(tmp_path, {"v": entry}, {"v": ramp(40)}, crop_ratio=[0.5, 0.5])
    dataset = ActionDataset(config, ["training"], training=True)
    assert {dataset[(0, seed)].feats.shape[1] for seed in range(5)} == {20}  # round(0.5 * 40)
    config = setup(tmp_path, {"v": entry}, {"v": ramp(40)}, crop_ratio=[0.9, 1.0])
    dataset = ActionDataset(config, ["training"], training=True)
    lengths = {dataset[(0, seed)].feats.shape[1] for seed in range(40)}
    assert lengths <= set(range(36, 41)) and len(lengths) > 1
    assert all(dataset[(0, seed)].segments.shape == (1, 2) for seed in range(5))


def test_items_are_reproducible_and_leave_the_global_rng_alone(tmp_path):
    dataset = ActionDataset(crop_config(tmp_path, [A, B, Cs]), ["training"], training=True)
    state = torch.get_rng_state()
    torch.manual_seed(1)
    first = dataset[(0, 7)]
    torch.manual_seed(2)
    again = dataset[(0, 7)]
    assert torch.equal(torch.get_rng_state(), torch.manual_seed(2).get_state())
    torch.set_rng_state(state)
    assert torch.equal(first.feats, again.feats) and torch.equal(first.segments, again.segments)
    assert torch.equal(dataset[0].feats, dataset[(0, 0)].feats)
    assert len({int(dataset[(0, seed)].feats[0, 0]) for seed in range(8)}) > 1


def test_worker_processes_give_the_same_items(tmp_path):
    videos = {f"v{i}": video([(10.0 + i, 40.0, i % 3)]) for i in range(4)}
    config = setup(tmp_path, videos, {vid: ramp(80 + i, seed=i) for i, vid in enumerate(videos)})
    dataset = ActionDataset(config, ["training"], training=True)
    sampler = TrainSampler(len(dataset), seed=11)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, sampler=sampler, num_workers=1,
                                         collate_fn=partial(collate, length=64))
    keys = list(sampler)
    for b, batch in enumerate(loader):
        expected = collate([dataset[key] for key in keys[2 * b:2 * b + 2]], 64)
        assert torch.equal(batch.feats, expected.feats) and batch.video_ids == expected.video_ids
        assert all(torch.equal(x, y) for x, y in zip(batch.segments, expected.segments))


# ------------------------------------------------------------------------------- feature files


def test_npy_npz_and_hdf5_read_the_same(tmp_path):
    h5py = pytest.importorskip("h5py")
    feats = ramp(7)
    np.save(tmp_path / "a.npy", feats.astype(np.float64))
    np.savez(tmp_path / "b.npz", feats=feats, other=np.zeros(3))
    np.savez(tmp_path / "c.npz", x=feats)
    with h5py.File(tmp_path / "d.h5", "w") as h5:
        h5["feats"] = feats
        h5["meta"] = np.zeros(2)
    with h5py.File(tmp_path / "e.hdf5", "w") as h5:
        h5["whatever"] = feats
    with h5py.File(tmp_path / "f.h5", "w") as h5:
        h5["vid1"] = feats
        h5["vid2"] = np.zeros((2, 2))
    with h5py.File(tmp_path / "g.h5", "w") as h5:
        h5.create_group("vid1")["feats"] = feats
    for name, vid in [("a.npy", None), ("b.npz", None), ("c.npz", None), ("d.h5", None),
                      ("e.hdf5", "vid9"), ("f.h5", "vid1"), ("g.h5", "vid1")]:
        out = read_features(tmp_path / name, vid)
        assert out.dtype == np.float32 and np.array_equal(out, feats), name


def test_ambiguous_containers_are_refused(tmp_path):
    h5py = pytest.importorskip("h5py")
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 2)), b=np.zeros((2, 2)))
    with h5py.File(tmp_path / "two.h5", "w") as h5:
        h5["a"] = np.zeros((2, 2))
        h5["b"] = np.zeros((2, 2))
    with pytest.raises(DatasetError, match=r"two\.npz.*'a', 'b'.*'feats'"):
        read_features(tmp_path / "two.npz", "v")
    with pytest.raises(DatasetError, match=r"video 'v'.*two\.h5.*'feats'"):
        read_features(tmp_path / "two.h5", "v")


def test_hdf5_without_h5py_says_how_to_install(tmp_path, monkeypatch):
    (tmp_path / "x.h5").write_bytes(b"")
    monkeypatch.setitem(__import__("sys").modules, "h5py", None)
    with pytest.raises(DatasetError, match=r"pip install h5py"):
        read_features(tmp_path / "x.h5", "v")


def corrupt_files(tmp_path):
    np.save(tmp_path / "full.npy", ramp(50))
    data = (tmp_path / "full.npy").read_bytes()
    (tmp_path / "truncated.npy").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.npy").write_bytes(b"this is not numpy")
    (tmp_path / "garbage.h5").write_bytes(b"nor is this hdf5")
    np.save(tmp_path / "object.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "text.npy", np.array([["a", "b"]]))
    np.save(tmp_path / "flat.npy", np.zeros(5))
    np.save(tmp_path / "cube.npy", np.zeros((2, 3, 4)))
    np.save(tmp_path / "empty.npy", np.zeros((0, C)))
    (tmp_path / "feats.pt").write_bytes(b"")


@pytest.mark.parametrize("name, reason", [
    ("missing.npy", "not found"),
    ("truncated.npy", "cannot read"),
    ("garbage.npy", "cannot read"),
    ("garbage.h5", "cannot read it as HDF5"),
    ("object.npy", "cannot read"),
    ("text.npy", "numeric"),
    ("flat.npy", r"2-D \(T, C\), got shape \(5,\)"),
    ("cube.npy", r"2-D \(T, C\), got shape \(2, 3, 4\)"),
    ("empty.npy", "empty"),
    ("feats.pt", "unsupported extension"),
])
def test_bad_feature_files_name_the_video_and_file(tmp_path, name, reason):
    corrupt_files(tmp_path)
    with pytest.raises(DatasetError, match=rf"video 'clip7'.*{name.replace('.', '[.]')}.*{reason}"):
        read_features(tmp_path / name, "clip7")


@pytest.mark.parametrize("array, reason", [
    (ramp(30)[:, :20], r"20 channels, the model expects 24 \(dataset.input_dim\)$"),
    (ramp(10).T.copy(), r"10 channels.*looks transposed"),
    (np.where(np.arange(30)[:, None] % 10 == 3, np.nan, ramp(30)), "NaN or inf in 3 of 30 time steps"),
])
def test_features_that_do_not_fit_the_model(tmp_path, array, reason):
    config = setup(tmp_path, {"bad": video([(4.0, 8.0, 0)])}, {"bad": array})
    dataset = ActionDataset(config, ["training"], training=True)
    with pytest.raises(DatasetError, match=rf"video 'bad'.*bad[.]npy.*{reason}"):
        dataset[0]
    with pytest.raises(DatasetError, match=r"all 1 videos.*skipped.*bad: feature file"):
        ActionDataset(config, ["training"], training=True, skip_invalid=True)


# --------------------------------------------------------------------------------- annotations


def test_records_follow_the_file_order_and_split_aliases(tmp_path):
    videos = {
        "b": video([(1.0, 2.0, 2), (3.0, 9.5, 0)], subset="Training", fps=30.0, duration=12.0),
        "x": video([(1.0, 2.0, 1)], subset="test"),
        "a": video([], subset="train", fps=None),
        "c": {"subset": "validation", "duration": 8.0, "annotations": [{"label": "run", "segment": [1, 2]}]},
    }
    config = setup(tmp_path, videos, {v: ramp(10) for v in videos}, default_fps=25.0)
    records, skipped = load_records(config, ["train", "VAL"])
    assert [r.video_id for r in records] == ["b", "a", "c"] and skipped == []
    b, a, c = records
    # ActionFormer's rule: dataset.default_fps, when set, wins over the video's own fps
    assert b.subset == "Training" and b.fps == 25.0 and b.duration == 12.0
    assert b.segments.dtype == np.float64 and b.segments.tolist() == [[1.0, 2.0], [3.0, 9.5]]
    assert b.labels.dtype == np.int64 and b.labels.tolist() == [2, 0]
    assert b.feature_path == tmp_path / "feats" / "b.npy"
    assert a.fps == 25.0 and a.segments.shape == (0, 2) and a.labels.shape == (0,)
    assert c.labels.tolist() == [1]  # "run" through dataset.class_names
    records, skipped = load_records(config, "training", require_actions=True)
    assert [r.video_id for r in records] == ["b"]
    assert skipped == [f"a: no annotated action in {tmp_path / 'ann.json'}"]
    assert [r.video_id for r in ActionDataset(config, ["training"], training=True).records] == ["b"]
    assert len(ActionDataset(config, ["training"], training=False)) == 2


def test_prefix_and_extension_make_the_feature_path(tmp_path):
    config = setup(tmp_path, {"v": video([(1.0, 2.0, 0)])}, {}, file_prefix="i3d_", file_ext=".npz")
    np.savez(tmp_path / "feats" / "i3d_v.npz", feats=ramp(12))
    dataset = ActionDataset(config, ["training"], training=False)
    assert dataset.records[0].feature_path.name == "i3d_v.npz" and dataset[0].feats.shape == (C, 12)


def ann(**fields):
    return {"label": "jump", "label_id": 0, "segment": [1.0, 2.0], **fields}


@pytest.mark.parametrize("entry, field", [
    (video(fps=None), r"'fps'.*dataset.default_fps"),
    (video(fps=0), r"fps must be a positive finite number, got 0"),
    (video(fps=float("nan")), r"fps must be a positive finite number, got nan"),
    ({"subset": "training", "fps": 4.0, "annotations": []}, r"missing field 'duration'"),
    (video(duration=-1.0), r"'duration' must be a positive finite number"),
    ({"fps": 4.0, "duration": 4.0}, "missing field 'subset'"),
    (video(annotations={"a": 1}), r"'annotations' must be a list"),
    (video(annotations=[ann(segment=[2.0, 2.0])]), r"annotation 0: 'segment' must end after it starts"),
    (video(annotations=[ann(), ann(segment=[1.0, "x"])]), r"annotation 1: 'segment' must hold two numbers"),
    (video(annotations=[ann(segment=[1.0, 2.0, 3.0])]), r"annotation 0: 'segment' must be \[start, end\]"),
    (video(annotations=[ann(segment=[1.0, float("inf")])]), r"annotation 0: 'segment' is not finite"),
    (video(annotations=[ann(label_id=3)]), r"'label_id' 3 is outside \[0, 3\) \(dataset.num_classes\)"),
    (video(annotations=[ann(label_id=-1)]), r"'label_id' -1 is outside"),
    (video(annotations=[ann(label_id="1")]), r"'label_id' must be an integer"),
    (video(annotations=[{"label": "swim", "segment": [1, 2]}]),
     r"'label' 'swim' is not in dataset.class_names"),
    (video(annotations=[{"segment": [1, 2]}]), r"missing fields 'label_id' and 'label'"),
])
def test_malformed_annotations_name_the_video_file_and_field(tmp_path, entry, field):
    config = setup(tmp_path, {"ok": video([(1.0, 2.0, 0)]), "bad1": entry}, {"ok": ramp(8), "bad1": ramp(8)})
    with pytest.raises(DatasetError, match=rf"^video 'bad1': .*ann[.]json.*{field}"):
        load_records(config, ["training"])
    records, skipped = load_records(config, ["training"], skip_invalid=True)
    assert [r.video_id for r in records] == ["ok"] and len(skipped) == 1 and skipped[0].startswith("bad1: ")


def test_label_names_need_class_names(tmp_path):
    entry = video(annotations=[{"label": "run", "segment": [1, 2]}])
    config = setup(tmp_path, {"v": entry}, {"v": ramp(8)}, class_names=None)
    with pytest.raises(DatasetError, match=r"video 'v'.*'label_id'.*no dataset.class_names.*'run'"):
        load_records(config, ["training"])


def test_missing_feature_file(tmp_path):
    config = setup(tmp_path, {"v": video([(1.0, 2.0, 0)])}, {})
    with pytest.raises(DatasetError, match=r"^video 'v': feature file .*feats/v[.]npy not found"):
        ActionDataset(config, ["training"], training=True)


@pytest.mark.parametrize("text, reason", [
    (None, r"annotation file .*ann[.]json not found \(dataset.json_file\)"),
    ("{not json", r"ann[.]json is not valid JSON"),
    ('{"videos": {}}', r"ann[.]json: expected an object with a 'database' object"),
    ('{"database": {"v": {"subset": "test", "fps": 4, "duration": 4}}}',
     r"ann[.]json: no video has subset in \['training'\]"),
])
def test_unusable_annotation_files_always_raise(tmp_path, text, reason):
    config = small_config(json_file=str(tmp_path / "ann.json"), feat_folder=str(tmp_path))
    if text is not None:
        (tmp_path / "ann.json").write_text(text)
    for skip in (False, True):
        with pytest.raises(DatasetError, match=reason):
            load_records(config, ["training"], skip_invalid=skip)


def test_skip_invalid_counts_and_names_the_skips(tmp_path):
    videos = {
        "good": video([(1.0, 5.0, 0)]),
        "nofile": video([(1.0, 5.0, 0)]),
        "badseg": video([(5.0, 1.0, 0)]),
        "narrow": video([(1.0, 5.0, 0)]),
        "nan": video([(1.0, 5.0, 0)]),
        "corrupt": video([(1.0, 5.0, 0)]),
        "empty": video([]),
        "other": video([(1.0, 5.0, 0)], subset="test"),
    }
    nan = ramp(20)
    nan[4, 7] = np.inf
    feats = {"good": ramp(20), "badseg": ramp(20), "narrow": ramp(20)[:, :23], "nan": nan, "empty": ramp(20)}
    config = setup(tmp_path, videos, feats)
    (tmp_path / "feats" / "corrupt.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DatasetError, match=r"^video 'nofile': feature file"):
        load_records(config, ["training"])
    dataset = ActionDataset(config, ["training"], training=True, skip_invalid=True)
    assert [r.video_id for r in dataset.records] == ["good"] and len(dataset) == 1
    reasons = dict(message.split(": ", 1) for message in dataset.skipped)
    assert list(reasons) == ["nofile", "badseg", "narrow", "nan", "corrupt", "empty"]
    assert "not found" in reasons["nofile"] and "'segment' must end after it starts" in reasons["badseg"]
    assert "23 channels" in reasons["narrow"] and "NaN or inf in 1 of 20" in reasons["nan"]
    assert "cannot read" in reasons["corrupt"] and "no annotated action" in reasons["empty"]


def test_settings_are_checked(tmp_path):
    config = setup(tmp_path, {"v": video([(1.0, 2.0, 0)])}, {"v": ramp(8)}, crop_ratio=[0.9, 0.5])
    with pytest.raises(DatasetError, match=r"dataset.crop_ratio"):
        ActionDataset(config, ["training"], training=True)
    config = setup(tmp_path, {"v": video([(1.0, 2.0, 0)])}, {"v": ramp(8)}, feat_folder=["a", "b"])
    with pytest.raises(DatasetError, match=r"dataset.feat_folder"):
        load_records(config, ["training"])


# ----------------------------------------------------------------------------------- batching


def sample(vid, steps, segs=((0.5, 2.0),)):
    return VideoSample(video_id=vid, feats=torch.ones((C, steps)), segments=torch.tensor(segs),
                       labels=torch.zeros(len(segs), dtype=torch.int64), fps=4.0, duration=10.0)


def test_collate_pads_and_masks():
    batch = collate([sample("a", 3), sample("b", 5, segs=((0.0, 1.0), (2.0, 4.0)))], length=8)
    assert isinstance(batch, Batch) and batch.video_ids == ["a", "b"]
    assert batch.feats.shape == (2, C, 8) and batch.feats.dtype == torch.float32
    assert batch.mask.tolist() == [[True] * 3 + [False] * 5, [True] * 5 + [False] * 3]
    assert float(batch.feats[0, :, :3].min()) == 1.0 and float(batch.feats[0, :, 3:].abs().max()) == 0.0
    assert [s.shape[0] for s in batch.segments] == [1, 2] and [lb.shape[0] for lb in batch.labels] == [1, 2]
    moved = batch.to("cpu")
    assert isinstance(moved, Batch) and torch.equal(moved.feats, batch.feats)
    assert torch.equal(moved.mask, batch.mask) and moved.video_ids == ["a", "b"]
    with pytest.raises(DatasetError, match=r"video 'long': 9 feature steps do not fit the batch length 8"):
        collate([sample("a", 3), sample("long", 9)], length=8)


def test_train_sampler_is_a_reproducible_permutation_per_epoch():
    sampler = TrainSampler(10, seed=5)
    epoch0 = list(sampler)
    assert len(sampler) == 10 and sorted(i for i, _ in epoch0) == list(range(10))
    assert all(isinstance(i, int) and isinstance(s, int) for i, s in epoch0)
    assert list(sampler) == epoch0 and list(TrainSampler(10, seed=5)) == epoch0
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert sorted(i for i, _ in epoch1) == list(range(10)) and epoch1 != epoch0
    resumed = TrainSampler(10, seed=5)
    resumed.set_epoch(1)  # straight to epoch 1, without iterating epoch 0
    assert list(resumed) == epoch1
    assert list(TrainSampler(10, seed=6)) != epoch0
    assert len({s for _, s in epoch0 + epoch1}) == 20
