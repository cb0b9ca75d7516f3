"""Beyond one machine (DESIGN §7): DDP training under torchrun equals one process at the same global
batch, a failing process stops every process, sharded feature extraction equals one process and
resumes after a killed shard, and a camera list splits over boxes. Two CPU processes with gloo on
loopback; tiny synthetic data."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from video_media import free_port

from asl_edge.cli import main
from asl_edge.config import load_config, save_config
from asl_edge.sharding import Shard, ShardError, choose_shard, parse_shard, rank_device
from asl_edge.stream import StreamError
from asl_edge.stream.sources import cameras_of_shard, load_cameras
from asl_edge.model import build_model
from asl_edge.train.criterion import ASLCriterion
from asl_edge.train.datasets import Batch, TrainSampler
from asl_edge.train.distributed import World
from asl_edge.train.synthetic import PRESETS, make_synthetic
from asl_edge.train.trainer import Trainer, TrainingError, TrainingObjective

from helpers import save_motion_model, small_config

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
LOOPBACK = {"GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1"}      # gloo between the processes of a test
LOSS_RTOL = 1e-4        # per iteration, 2 processes against 1 (measured: about 1e-7)


def run_quietly(command, cwd=None, timeout=300):
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **LOOPBACK})


# ------------------------------------------------------------------------------------- the split


def test_every_item_goes_to_exactly_one_shard_whatever_the_order():
    for count in range(1, 8):
        for size in (0, 1, 5, 12, 31):
            ids = [f"cam-{(7 * i) % size:03d}" for i in range(size)] if size else []
            shares = [Shard(k, count).take(ids, key=str) for k in range(count)]
            assert sorted(i for share in shares for i in share) == sorted(ids)
            assert max(map(len, shares)) - min(map(len, shares)) <= 1
            reversed_shares = [Shard(k, count).take(ids[::-1], key=str) for k in range(count)]
            assert [sorted(s) for s in reversed_shares] == [sorted(s) for s in shares]


def test_the_shard_comes_from_the_option_or_from_torchrun():
    assert parse_shard("1/4") == Shard(1, 4) and str(Shard(1, 4)) == "1/4"
    for bad, message in [("4/4", "K must be in 0..N-1"), ("1/0", "N at least 1"), ("a/b", "expected K/N"),
                         ("2", "expected K/N")]:
        with pytest.raises(ShardError, match=message):
            parse_shard(bad)
    torchrun = {"RANK": "1", "WORLD_SIZE": "3", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    assert choose_shard(None, {}) == Shard(0, 1) and choose_shard(None, torchrun) == Shard(1, 3)
    assert choose_shard("2/5", {}) == Shard(2, 5)
    with pytest.raises(ShardError, match="under torchrun"):
        choose_shard("0/2", torchrun)
    assert rank_device("cuda", torchrun) == "cuda:1" and rank_device("cuda", {}) == "cuda"
    assert rank_device("cpu", torchrun) == "cpu"


def test_torchrun_processes_share_the_machine_s_cpus():
    from asl_edge.compute import configure_threads, usable_cpus

    threads = torch.get_num_threads()
    try:
        share = max(1, usable_cpus() // 2)
        chosen = configure_threads({"LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"})   # torchrun's own default
        assert chosen.startswith(f"{share} intra-op thread") and "shared by torchrun's 2 local processes" in chosen
        assert torch.get_num_threads() == share
        assert configure_threads({"LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": "3"}).startswith("3 intra-op threads")
        assert configure_threads({"LOCAL_WORLD_SIZE": "1", "OMP_NUM_THREADS": "1"}).startswith("1 intra-op thread ")
    finally:
        torch.set_num_threads(threads)


def test_the_sampler_shares_each_global_batch_out():
    one = TrainSampler(18, seed=3)
    one.set_epoch(2)
    batches = [list(one)[i:i + 4] for i in range(0, 16, 4)]           # 4 whole global batches of 4
    for processes in (2, 4):
        shares = []
        for rank in range(processes):
            sampler = TrainSampler(18, seed=3, rank=rank, world_size=processes, global_batch=4)
            sampler.set_epoch(2)
            shares.append(list(sampler))
            assert len(sampler) == len(shares[-1]) == 16 // processes
        per = 4 // processes
        assert [sum((s[b * per:(b + 1) * per] for s in shares), []) for b in range(4)] == batches


def test_a_global_batch_the_processes_cannot_share_is_refused_before_anything(tmp_path):
    data = make_synthetic(tmp_path / "data", dataclasses.replace(PRESETS["easy"], num_train=8, num_val=2))
    with pytest.raises(TrainingError, match="loader.batch_size 4 is the global batch, shared by the 3 processes"):
        Trainer(load_config(data["config"]), tmp_path / "run", progress=False, world=World(size=3))
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------- training


def step_batch():
    """4 videos of 24 channels; the last two (the second process's share) without any action."""
    g = torch.Generator().manual_seed(5)
    mask = torch.ones(4, 64, dtype=torch.bool)
    mask[1, 50:] = False
    segments = [torch.tensor([[4.0, 20.0], [30.0, 44.0]]), torch.tensor([[10.0, 40.0]]), torch.zeros(0, 2),
                torch.zeros(0, 2)]
    none = torch.zeros(0, dtype=torch.long)
    labels = [torch.tensor([0, 2]), torch.tensor([1]), none, none]
    return Batch(torch.randn(4, 24, 64, generator=g), mask, segments, labels, ["a", "b", "c", "d"])


def objective_and_gradients(batch, world=None):
    """The loss parts and the parameters' gradients of one backward of the whole objective (every
    ASL part on) on ``batch``, DDP-wrapped when ``world`` has a process group."""
    from torch.nn.parallel import DistributedDataParallel

    torch.manual_seed(0)
    config = small_config(droppath=0.0)
    model = build_model(config)
    objective = TrainingObjective(model, ASLCriterion(config, model.strides, config.model.fpn_dim, world))
    wrapped = objective if world is None else DistributedDataParallel(objective)
    loss, parts = wrapped(batch.feats, batch.mask, batch.segments, batch.labels)
    loss.backward()
    parts["loss"] = float(loss.detach())
    return (parts if world is None else world.average(parts),
            {name: p.grad.clone() for name, p in objective.named_parameters() if p.grad is not None})


def _step_process(rank: int, port: int, results: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2",
                      MASTER_PORT=str(port), **LOOPBACK)
    from asl_edge.train.distributed import join_world

    torch.set_num_threads(1)
    batch, world = step_batch(), join_world("cpu")
    share = slice(2 * rank, 2 * rank + 2)
    mine = Batch(batch.feats[share], batch.mask[share], batch.segments[share], batch.labels[share],
                 batch.video_ids[share])
    parts, gradients = objective_and_gradients(mine, world)
    torch.save({"parts": parts, "gradients": gradients}, Path(results, f"step{rank}.pt"))
    world.close()


def test_two_processes_compute_the_loss_and_gradients_of_the_whole_batch(tmp_path):
    context = multiprocessing.get_context("spawn")
    port = free_port()
    processes = [context.Process(target=_step_process, args=(rank, port, str(tmp_path))) for rank in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=600)      # generous: a loaded machine exits slowly
    assert [p.exitcode for p in processes] == [0, 0]
    parts, gradients = objective_and_gradients(step_batch())          # one process, the whole batch
    assert set(gradients) >= {"criterion.class_sensitivity.mu", "criterion.instance_head.conv.weight"}
    for rank in range(2):
        got = torch.load(tmp_path / f"step{rank}.pt", weights_only=True)
        assert got["parts"] == pytest.approx(parts, rel=1e-5)              # the whole batch's, on each process
        assert sorted(got["gradients"]) == sorted(gradients)
        for name, value in gradients.items():
            torch.testing.assert_close(got["gradients"][name], value, rtol=1e-4, atol=1e-7, msg=name)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """16 training videos, global batch 4 (4 iterations per epoch), 2 epochs, every iteration
    logged, no stochastic depth (nothing random but the shared order and crops)."""
    folder = tmp_path_factory.mktemp("tiny")
    data = make_synthetic(folder / "data", dataclasses.replace(PRESETS["easy"], num_train=16, num_val=4))
    config = load_config(data["config"], overrides={
        "opt": {"epochs": 1, "warmup_epochs": 1},
        "train_cfg": {"droppath": 0.0, "log_interval": 1, "eval_interval": 0}})
    save_config(config, folder / "config.yaml")
    return folder / "config.yaml"


@pytest.fixture
def one_thread(monkeypatch):
    """torch on one thread in this process (as each of the 2 processes on 2 cores): no spinning
    threads racing the other processes (DESIGN §6); the CLI's own choice follows OMP_NUM_THREADS."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def records(run: Path):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def losses(run: Path):
    return {r["iteration"]: r["loss"] for r in records(run) if r["kind"] == "iter"}


@pytest.mark.slow
def test_two_processes_train_like_one_and_one_resumes_them(tiny, tmp_path, one_thread):
    one, two = tmp_path / "one", tmp_path / "two"
    Trainer(load_config(tiny), one, progress=False).fit()
    done = run_quietly([*TORCHRUN, "-m", "asl_edge", "train", "--config", str(tiny), "--out", str(two),
                        "--no-progress"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "training on 2 processes (gloo), 2 of the global batch of 4 videos each" in done.stderr

    reference, distributed = losses(one), losses(two)
    assert sorted(distributed) == sorted(reference) == list(range(1, 9))
    for iteration, loss in reference.items():           # both epochs, the first included
        assert distributed[iteration] == pytest.approx(loss, rel=LOSS_RTOL), iteration
    log = records(two)                                   # rank 0 alone wrote it: each record once
    assert log[0] == {"kind": "run", "epoch": 0, "iteration": 0, "world_size": 2, "backend": "gloo",
                      "device": "cpu", "global_batch": 4, "batch_per_process": 2}
    assert [r["epoch"] for r in log if r["kind"] == "epoch"] == [1, 2]
    assert [r["kind"] for r in records(one)][0] == "run" and records(one)[0]["world_size"] == 1
    evaluation = json.loads((two / "eval.json").read_text())
    assert evaluation["world_size"] == 2 and evaluation["backend"] == "gloo"
    assert evaluation["average_mAP"] == pytest.approx(json.loads((one / "eval.json").read_text())["average_mAP"],
                                                      abs=0.005)
    states = [torch.load(run / "checkpoints" / "last.pt", weights_only=True) for run in (one, two)]
    for name, value in states[0]["ema"].items():
        torch.testing.assert_close(states[1]["ema"][name], value, rtol=0, atol=5e-5, msg=name)  # steps: ~1e-3
    assert states[1]["loss_normalizer"] == pytest.approx(states[0]["loss_normalizer"], rel=1e-9)
    assert not list(two.rglob("*.partial*"))

    # the 2-process run goes on in 1 process, as the 1-process run does
    for run in (one, two):
        assert main(["train", "--out", str(run), "--resume", "--epochs", "3", "--no-progress"]) == 0
    reference, distributed = losses(one), losses(two)
    assert sorted(distributed) == list(range(1, 13))
    for iteration in range(9, 13):
        assert distributed[iteration] == pytest.approx(reference[iteration], rel=LOSS_RTOL), iteration
    resumed = [r for r in records(two) if r["kind"] == "run"]
    assert [(r["iteration"], r["world_size"], r["backend"]) for r in resumed] == [(0, 2, "gloo"), (8, 1, None)]


def _train_process(rank: int, port: int, argv, fail_at, results: str) -> None:
    """One of 2 training processes as torchrun starts them (its variables set here); rank 1 fails
    at its ``fail_at``-th step. Writes its exit code, stderr and the files it saved with torch.save."""
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2",
                      MASTER_PORT=str(port), **LOOPBACK)
    from asl_edge.train import trainer as trainer_module

    saved, real_save = [], torch.save

    def recording_save(obj, path, *args, **kwargs):
        saved.append(str(path))
        return real_save(obj, path, *args, **kwargs)

    torch.save = recording_save
    if rank == 1 and fail_at:
        step, calls = trainer_module.training_step, []

        def failing_step(*args):
            calls.append(None)
            if len(calls) == fail_at:
                raise TrainingError("injected failure")
            return step(*args)

        trainer_module.training_step = failing_step
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    Path(results, f"rank{rank}.json").write_text(json.dumps({"code": code, "stderr": err.getvalue(), "saved": saved}))


@pytest.mark.slow
def test_a_failing_process_stops_every_process_and_the_last_checkpoint_stays(tiny, tmp_path):
    run = tmp_path / "run"
    argv = ["train", "--config", str(tiny), "--out", str(run), "--no-progress"]
    context = multiprocessing.get_context("spawn")
    port = free_port()
    processes = [context.Process(target=_train_process, args=(rank, port, argv, 5, str(tmp_path)))
                 for rank in range(2)]                      # rank 1 fails in epoch 2's first step
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=600)      # generous: a loaded machine exits slowly
    assert [p.exitcode for p in processes] == [0, 0], "a process hung or crashed"
    result = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert result[1]["code"] == 2 and "rank 1: iteration 4: injected failure" in result[1]["stderr"]
    assert result[0]["code"] == 2
    assert "rank 0: stopped because another process of the run stopped (its message says why)" in result[0]["stderr"]
    assert f"{run / 'checkpoints' / 'last.pt'} keeps the last finished epoch" in result[0]["stderr"]
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and state["iteration"] == 4                  # epoch 1's, whole
    assert not list(run.rglob("*.partial*")) and not (run / "model.pt").exists()
    assert [r["epoch"] for r in records(run) if r["kind"] == "epoch"] == [1]
    assert result[1]["saved"] == [] and result[0]["saved"] == [str(run / "checkpoints" / "last.partial.pt")]


# ---------------------------------------------------------------------------- feature extraction


SHORT = [f"test://demo?seed={seed}&seconds=2&width=64&height=48" for seed in (1, 2, 3)]
LONG = "test://demo?seed=4&seconds=20&width=64&height=48"          # shard 1/2's second video


def extract(*args, cwd, launcher=(sys.executable, "-m")):
    return run_quietly([*launcher, "asl_edge", "extract-features", *SHORT, LONG, "--extractor", "motion",
                        "--out", "feats", "--no-progress", *args], cwd=cwd)


def folder_bytes(folder: Path):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.mark.slow
def test_sharded_extraction_equals_one_process_and_a_killed_shard_finishes_on_a_rerun(tmp_path):
    from video_media import gst_or_skip

    gst_or_skip()
    for name in ("one", "two", "killed"):
        (tmp_path / name).mkdir()
    assert extract(cwd=tmp_path / "one").returncode == 0
    expected = folder_bytes(tmp_path / "one" / "feats")
    assert len([n for n in expected if n.endswith(".npy")]) == 4

    done = extract(cwd=tmp_path / "two", launcher=(*TORCHRUN, "-m"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "shard 0/2: 2 of the 4 videos" in done.stderr and "shard 1/2: 2 of the 4 videos" in done.stderr
    assert folder_bytes(tmp_path / "two" / "feats") == expected

    # shard 1/2 killed during its second video; shard 0/2 finishes; shard 1/2 again finishes the job
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "asl_edge", "extract-features", *SHORT, LONG, "--extractor",
                                "motion", "--out", "feats", "--no-progress", "--shard", "1/2"], cwd=killed,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = killed / "feats" / "demo_seed2_2s_64x48.npy"
    deadline = time.monotonic() + 120
    while not first.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert first.exists() and not (killed / "feats" / "demo_seed4_20s_64x48.npy").exists()
    finished_at = first.stat().st_mtime_ns
    assert extract("--shard", "0/2", cwd=killed).returncode == 0
    again = extract("--shard", "1/2", cwd=killed)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"shard 1/2: [1/2] {SHORT[1]}: done before with the same settings, skipped" in again.stderr
    assert "lists 4 of the 4 videos (all of them)" in again.stderr
    assert first.stat().st_mtime_ns == finished_at
    assert folder_bytes(killed / "feats") == expected

    # a shard told other settings does not add to the folder
    other = extract("--shard", "1/2", "--fps", "native", cwd=tmp_path / "two")
    assert other.returncode == 2 and "holds earlier features that do not match this run: its features were made " \
                                      "with fps 15.0 (now None)" in other.stderr
    assert folder_bytes(tmp_path / "two" / "feats") == expected


# ----------------------------------------------------------------------------------- camera lists


def write_cameras(path: Path, cameras) -> str:
    path.write_text(yaml.safe_dump({"cameras": cameras}))
    return str(path)


def test_a_camera_list_splits_every_camera_to_exactly_one_box(tmp_path):
    listed = [{"name": f"cam-{i:02d}", "uri": f"rtsp://10.0.0.{i}/live"} for i in range(11)]
    listed[3]["options"] = {"hop": 4, "min_score": 0.2}
    path = write_cameras(tmp_path / "cams.yaml", listed)
    cameras = load_cameras(path)
    assert cameras[3].options == {"hop": 4, "min_score": 0.2} and cameras[0].options == {}
    for boxes in (1, 2, 3, 4, 11):
        shares = [cameras_of_shard(cameras, Shard(k, boxes), path) for k in range(boxes)]
        names = [camera.name for share in shares for camera in share]
        assert sorted(names) == [c["name"] for c in listed]
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
    with pytest.raises(StreamError, match="shard 11/12 has no camera: the list has 11"):
        cameras_of_shard(cameras, Shard(11, 12), path)


@pytest.mark.parametrize("cameras, message", [
    ("not a list", "expected one key, 'cameras', holding a list"),
    ([], "the camera list is empty"),
    ([{"name": "a", "uri": "rtsp://h/1"}, "rtsp://h/2"], "camera 2: expected a mapping with name and uri"),
    ([{"name": "a", "uri": "rtsp://h/1"}, {"name": "b"}], "camera 2 ('b'): 'uri' must be a non-empty string"),
    ([{"uri": "rtsp://h/1"}], "camera 1: 'name' must be a non-empty string"),
    ([{"name": "a", "uri": "rtsp://h/1"}, {"name": "a", "uri": "rtsp://h/2"}],
     "camera 2 ('a'): the name is camera 1's too"),
    ([{"name": "a", "uri": "foo://h/1"}], "camera 1 ('a'): foo://h/1: unknown scheme 'foo'"),
    ([{"name": "a", "uri": "rtsp://h/1", "url": "x"}], "camera 1 ('a'): unknown key(s) url"),
    ([{"name": "a", "uri": "rtsp://h/1", "options": {"window": 3}}], "option 'window' cannot be set per camera"),
    ([{"name": "a", "uri": "rtsp://h/1", "options": {"hop": "fast"}}], "option hop must be a number"),
])
def test_a_malformed_camera_list_is_an_error_naming_the_entry(tmp_path, cameras, message):
    path = write_cameras(tmp_path / "cams.yaml", cameras)
    with pytest.raises(StreamError) as raised:
        load_cameras(path)
    assert f"--sources {path}" in str(raised.value) and message in str(raised.value)


def test_a_box_streams_its_share_and_its_events_carry_the_camera_and_the_box(tmp_path, capsys):
    from video_media import gst_or_skip

    gst_or_skip()
    model = save_motion_model(tmp_path / "model.pt")
    path = write_cameras(tmp_path / "cams.yaml", [
        {"name": name, "uri": f"test://demo?seed={seed}&seconds=2&width=64&height=48", "options": {"min_score": 0.0}}
        for seed, name in enumerate(["dock", "gate", "yard"], 1)])
    out = tmp_path / "events.jsonl"
    assert main(["stream", "--model", str(model), "--sources", path, "--shard", "1/2", "--box", "edge-2",
                 "--out", str(out)]) in (0, 1)
    assert "(box edge-2, shard 1/2: gate)" in capsys.readouterr().err
    items = [json.loads(line) for line in out.read_text().splitlines()]
    assert items[0]["status"] == "start" and items[0]["streams"] == ["gate"] and items[0]["shard"] == "1/2"
    assert all(item["box"] == "edge-2" for item in items)
    assert {item["stream"] for item in items[1:] if "stream" in item} == {"gate"}
    assert main(["stream", "--model", str(model), "--sources", path, "--source", "rtsp://h/1"]) == 2
    assert "one of the two" in capsys.readouterr().err
    assert main(["stream", "--model", str(model), "--source", "rtsp://h/1", "--shard", "0/2"]) == 2
    assert "--shard splits a camera list" in capsys.readouterr().err
