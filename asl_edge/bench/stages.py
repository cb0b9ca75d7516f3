"""What ``asl-edge bench`` measures, one function per stage, each returning result rows.

Every row has ``stage``, ``case`` (what ran), ``device``, ``precision``, ``batch``, ``window``
and either the timing of :func:`asl_edge.bench.measure.measure` plus ``throughput_per_s`` (items
of the stage per second: windows, videos, clips or stream-seconds) or ``error`` (why it did not
run). Everything goes through the runtime's public interfaces: ``asl_edge.runtime.load``
backends, the Localizer's post-processing, ``load_extractor`` and ``StreamRunner``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from ..config import Config, load_config
from ..localizer import Localizer
from ..model import build_model, save_checkpoint
from ..ops import native_state
from ..ops.library import forced_ops
from ..runtime import load
from .measure import measure, percentiles

BASELINE = "eager, reference ops"
FEATURES_BASELINE = "i3d-rgb PyTorch eager"          # fp32, the extractor models are trained on
BENCH_CALIBRATION_CLIPS = 8           # int8 exports timed by the bench (their cosine is the export's parity check)
FIXED_BATCH_FORMATS = {"openvino"}     # exported at the smallest batch: larger ones run in calls of it


@dataclass
class Plan:
    """What to measure: ``windows`` and ``batches`` of the network, the export ``formats`` (each
    at each of ``precisions`` where it exists), ``runs`` timed calls after ``warmup``, on
    ``device``; artifacts go to ``work``. ``extractors``: (name, format, precision) of the clip
    extractors, format ``eager`` for the extractor itself, else an export of it
    (:mod:`asl_edge.export.extractor_export`), each at ``extractor_batches``."""

    windows: Sequence[int]
    batches: Sequence[int]
    formats: Sequence[Tuple[str, str]]
    runs: int
    warmup: int
    device: str
    work: Path
    extractors: Sequence[Tuple[str, str, str]]
    stream_seconds: float
    extractor_batches: Sequence[int] = (1, 8)


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _row(stage: str, case: str, plan: Plan, precision: str = "fp32", batch=None, window=None, **extra) -> Dict:
    return {"stage": stage, "case": case, "device": plan.device, "precision": precision, "batch": batch,
            "window": window, **extra}


def thumos_checkpoint(work: Path) -> Tuple[Path, Config]:
    """The THUMOS-size network (random weights: latency does not depend on training) as a
    checkpoint, with ``max_seq_len`` 576 (the padding unit) so that every window measured is a
    length it runs at as it is, not padded up to 2304; the weights are the same either way."""
    config = load_config("thumos_i3d", overrides={"dataset": {"max_seq_len": 576}})
    path = work / "thumos_random_576.pt"
    if not path.is_file():
        torch.manual_seed(0)
        save_checkpoint(build_model(config).eval(), config, path)
    return path, config


def random_calibration_features(config: Config, work: Path) -> Path:
    """A folder of seeded random (T, C) feature files (THUMOS length) for int8 calibration of a
    random network."""
    folder = work / "calibration"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(8):
        path = folder / f"video{i}.npy"
        if not path.is_file():
            rng = np.random.default_rng(i)
            np.save(path, rng.standard_normal((2304, config.dataset.input_dim), dtype=np.float32))
    return folder


def _network_inputs(config: Config, batch: int, window: int):
    generator = torch.Generator().manual_seed(batch * 100003 + window)
    features = torch.randn(batch, config.dataset.input_dim, window, generator=generator)
    return features, torch.ones(batch, window, dtype=torch.bool)


def _time_backend(backend, config: Config, plan: Plan, case: str, precision: str, mode: str = "auto") -> List[Dict]:
    rows = []
    for window in plan.windows:
        for batch in plan.batches:
            features, mask = _network_inputs(config, batch, window)
            try:
                with forced_ops(mode), torch.inference_mode():
                    timing = measure(lambda: backend.run(features, mask), plan.runs, plan.warmup, plan.device)
            except Exception as err:  # noqa: BLE001 - a backend that cannot take this shape is reported
                rows.append(_row("network", case, plan, precision, batch, window, error=f"{type(err).__name__}: {err}"))
                continue
            rows.append(_row("network", case, plan, precision, batch, window, **timing,
                             throughput_per_s=1000.0 * batch / timing["p50_ms"]))
            _say(f"network {case} {precision} B{batch} T{window}: p50 {timing['p50_ms']:.1f} ms")
    return rows


def network(plan: Plan) -> List[Dict]:
    """The baseline (eager fp32, pure-PyTorch ops), eager with the native ops, eager with CUDA
    graphs on a GPU, then each export format and precision, at every window and batch, through
    ``Backend.run`` (on the CPU a large batch goes in calls of ``CPU_FRAMES_PER_CALL`` frames; a
    fixed-batch artifact takes a larger batch in calls of its own). Exports are dynamic in length
    and batch (OpenVINO: length only), one artifact per format and precision, without parity;
    int8 calibrates on random features, like the random network."""
    from ..export.exporter import export_checkpoint
    from ..export.spec import ExportSpec

    ckpt, config = thumos_checkpoint(plan.work)
    calibration = random_calibration_features(config, plan.work)
    baseline = load(ckpt, device=plan.device)
    baseline.CPU_FRAMES_PER_CALL = sys.maxsize          # the plain model: a whole batch in one call
    rows = _time_backend(baseline, config, plan, BASELINE, "fp32", mode="reference")
    rows += _time_backend(load(ckpt, device=plan.device), config, plan, "eager", "fp32")
    if plan.device.startswith("cuda"):
        rows += _time_backend(load(ckpt, device=plan.device, cuda_graphs=True), config, plan, "eager + CUDA graphs",
                              "fp32")
    for fmt, precision in plan.formats:
        spec = ExportSpec(format=fmt, precision=precision, window=min(plan.windows), batch=min(plan.batches),
                          dynamic_length=True, dynamic_batch=fmt not in FIXED_BATCH_FORMATS,
                          max_length=max(plan.windows), device=plan.device,
                          calibration=str(calibration) if precision == "int8" else None)
        folder = plan.work / f"{fmt}-{precision}-{plan.device.replace(':', '')}"
        start = time.perf_counter()
        try:
            export_checkpoint(ckpt, spec, folder, parity=False)
            backend = load(folder, device=plan.device)
        except Exception as err:  # noqa: BLE001 - ExportError or a load failure: a format that cannot run here is a row
            rows.append(_row("network", fmt, plan, precision, error=f"{type(err).__name__}: {err}"))
            _say(f"network {fmt} {precision}: not measured: {err}")
            continue
        _say(f"exported {fmt} {precision} in {time.perf_counter() - start:.0f} s")
        rows += _time_backend(backend, config, plan, fmt, precision)
    return rows


def window(plan: Plan) -> List[Dict]:
    """One whole window end to end — (T, C) features in, detections in seconds out, decode and
    NMS included (``Backend.detect``) — at batch 1 for every window: the baseline (pure-PyTorch
    ops, post-processing on the CPU), eager with the native ops on ``device``, and eager with
    CUDA graphs on a GPU."""
    ckpt, config = thumos_checkpoint(plan.work)
    cases = [(BASELINE, "reference", load(ckpt, device="cpu")), ("eager", "auto", load(ckpt, device=plan.device))]
    if plan.device.startswith("cuda"):
        cases.append(("eager + CUDA graphs", "auto", load(ckpt, device=plan.device, cuda_graphs=True)))
    rows = []
    for case, mode, backend in cases:
        for length in plan.windows:
            features = _network_inputs(config, 1, length)[0][0].T.contiguous()        # (T, C)
            with forced_ops(mode):
                timing = measure(lambda: backend.detect(features, fps=30.0), plan.runs, plan.warmup,
                                 str(backend.device))
            rows.append({**_row("window", case, plan, "fp32", 1, length, **timing,
                                throughput_per_s=1000.0 / timing["p50_ms"]), "device": str(backend.device)})
            _say(f"window {case} T{length}: p50 {timing['p50_ms']:.1f} ms")
    return rows


def postprocess(plan: Plan) -> List[Dict]:
    """Decode + NMS of one THUMOS-size window's outputs (random logits, T = the largest window),
    through the Localizer: pure PyTorch, then the native op on the CPU and on CUDA when present."""
    _, config = thumos_checkpoint(plan.work)
    window = max(plan.windows)
    localizer = Localizer(lambda x, m: None, config)
    features, mask = _network_inputs(config, 1, window)
    _, mask, grid, duration = localizer.prepare(features[0].T.numpy(), fps=30.0)
    levels = config.model.backbone_arch[-1] + 1                 # pyramid levels, strides 1, 2, 4, ...
    points = sum(window // 2 ** level for level in range(levels))
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(points, config.dataset.num_classes, generator=generator) - 3.0
    offsets = torch.rand(points, 2, generator=generator) * 8
    point_mask = mask[0]
    cases = [("pure PyTorch", "reference", "cpu")]
    state = native_state()
    if state.loaded:
        cases.append(("native CPU op", "native", "cpu"))
        if torch.cuda.is_available() and state.devices.get("cuda"):
            cases.append(("native CUDA op", "native", "cuda"))
    rows = []
    for case, mode, device in cases:
        args = (logits.to(device), offsets.to(device), point_mask.to(device), grid, duration)
        try:
            with forced_ops(mode):
                timing = measure(lambda: localizer.postprocess(*args), plan.runs, plan.warmup, device)
        except Exception as err:  # noqa: BLE001
            rows.append(_row("postprocess", case, plan, window=window, error=f"{type(err).__name__}: {err}"))
            continue
        rows.append({**_row("postprocess", case, plan, batch=1, window=window, **timing,
                            throughput_per_s=1000.0 / timing["p50_ms"]), "device": device})
        _say(f"postprocess {case}: p50 {timing['p50_ms']:.2f} ms")
    return rows


def _extractor(plan: Plan, name: str, fmt: str, precision: str):
    """The extractor of a case: the extractor itself (``eager``), or its export into the work
    folder (without the parity check; int8 calibrates on 8 clips of the generated demo scene: the
    speed does not depend on the calibration, whose quality the export's parity check measures)."""
    from ..features import load_extractor

    if fmt == "eager":
        return load_extractor(name, device=plan.device, precision=precision)
    from ..export.extractor_export import GENERATED_SCENE, export_extractor

    folder = plan.work / f"extractor-{name}-{fmt}-{precision}-{plan.device.replace(':', '')}"
    start = time.perf_counter()
    export_extractor(name, fmt, folder, precision=precision, device=plan.device, parity=False,
                     calibration=[GENERATED_SCENE] if precision == "int8" else None,
                     calibration_clips=BENCH_CALIBRATION_CLIPS)
    _say(f"exported {name} {fmt} {precision} in {time.perf_counter() - start:.0f} s")
    return load_extractor(str(folder), device=plan.device)


def features(plan: Plan) -> List[Dict]:
    """Clips per second of each extractor case at each of ``extractor_batches`` (random clips of
    its size: the time does not depend on the pixels), ms per clip and peak RSS; ``i3d-rgb``
    PyTorch eager fp32, the features models are trained on, is the baseline of the ratios. A case
    that cannot be built or run here is a row with its reason."""
    import gc

    from ..export.spec import ExportError
    from ..features import ExtractorError

    rows = []
    for name, fmt, precision in plan.extractors:
        case = f"{name} PyTorch eager" if fmt == "eager" and name != "motion" else (
            name if fmt == "eager" else f"{name} {fmt}")
        try:
            extractor = _extractor(plan, name, fmt, precision)
        except (ExtractorError, ExportError) as err:
            rows.append(_row("features", case, plan, precision, error=str(err)))
            _say(f"features {case} {precision}: not measured: {err}")
            continue
        spec = extractor.clip
        runs = plan.runs if name == "motion" else max(3, plan.runs // 4)
        for batch in plan.extractor_batches:
            clips = np.random.default_rng(batch).integers(
                0, 256, (batch, spec.num_frames, spec.geometry.height, spec.geometry.width, 3), dtype=np.uint8)
            timing = measure(lambda: extractor.extract(clips), runs, plan.warmup, extractor.device)
            rows.append(_row("features", case, plan, precision, batch, **timing,
                             throughput_per_s=1000.0 * batch / timing["p50_ms"], ms_per_clip=timing["p50_ms"] / batch))
            _say(f"features {case} {precision} B{batch}: {1000.0 * batch / timing['p50_ms']:.2f} clips/s")
        del extractor
        gc.collect()                                     # the next case's peak RSS without this one
    return rows


def stream(plan: Plan) -> List[Dict]:
    """The demo scene (rendered unpaced) through the whole streaming runtime with the bundled
    model: stream-seconds per wall-second and decision latency, each of ``runs // 4`` runs."""
    from ..demo import BUNDLED_MODEL, DEMO_GUARD, DEMO_HOP, scene_uri
    from ..stream import StreamOptions, StreamRunner

    if not BUNDLED_MODEL.is_file():
        return [_row("stream", "demo scene", plan, error=f"no bundled model at {BUNDLED_MODEL}")]
    times, latencies, summary = [], [], {}
    for _ in range(max(3, plan.runs // 4)):
        runner = StreamRunner(str(BUNDLED_MODEL), [scene_uri(0, plan.stream_seconds, live=False)], "motion",
                              StreamOptions(hop=DEMO_HOP, guard=DEMO_GUARD), device=plan.device)
        for _ in runner.events():
            pass
        summary = runner.summary()
        times.append(summary["wall_s"])
        latencies.append(summary["decision_latency"])
    timing = percentiles(times)
    rate = plan.stream_seconds / (timing["p50_ms"] / 1000.0)
    _say(f"stream: {rate:.1f} stream-s per wall-s")
    return [_row("stream", "demo scene, motion, bundled model", plan, "fp32", 1, summary["window"], **timing,
                 throughput_per_s=rate, stream_seconds=plan.stream_seconds,
                 decision_latency_p50_s=latencies[-1]["p50_s"], decision_latency_p95_s=latencies[-1]["p95_s"],
                 stages=summary["stages"])]
