"""``asl-edge export --extractor NAME``: a clip extractor as a clip model that
``asl_edge.features.load_extractor(path)`` runs wherever an extractor is named (extract-features,
stream, bench, the Python API): TorchScript, ONNX (ONNX Runtime here; on a Jetson the file goes
on to TensorRT, whose trtexec line is printed) or an OpenVINO IR for the CPU. Beside it,
``extractor.json`` (what it consumes), ``metadata.json`` and ``parity.json``.

The clip model is :class:`asl_edge.features.i3d.I3DClipNetwork`: ``clips uint8 [B, T, H, W, 3]``
in, ``features float32 [B, D]`` out, batch dynamic, normalisation inside.

Precisions: torchscript fp32, fp16 (CUDA); onnx fp32, fp16, int8 (a QDQ graph for ONNX Runtime);
openvino fp32, bf16 (the fp32 IR compiled with OpenVINO's bf16 inference precision), int8 (NNCF
post-training quantization; what stays unquantized runs in bf16). int8 calibrates on clips of real
videos, decoded through the package's own video path and sampled evenly
(:mod:`asl_edge.features.sampling`).

Parity: the artifact, loaded as users load it, against the fp32 PyTorch extractor on the CPU, per
clip (cosine, max difference), on clips of the calibration videos and of videos held out of
calibration: ``parity_videos`` when given, else every third calibration video (the 3rd, 6th, ...
in the order given, folders sorted by name; the 2nd of two), else a generated demo scene.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from asl_edge.features import ClipExtractor, ExtractorError, load_extractor
from asl_edge.features.exported import DESCRIPTION, METADATA, OPENVINO_PRECISION
from asl_edge.features.i3d import DTYPES, I3DClipNetwork
from asl_edge.features.sampling import sample_videos
from asl_edge.outputs import OutputError, atomic_output, claim_output_folder, write_json

from .metadata import _package_versions
from .spec import ExportError

PRECISIONS = {"torchscript": ("fp32", "fp16"), "onnx": ("fp32", "fp16", "int8"), "openvino": ("fp32", "bf16", "int8")}
FORMATS = tuple(PRECISIONS)
# what parity must show: max |artifact - eager| / max(1, max |eager|), or the per-clip cosine
TOLERANCE = {"fp32": {"max_rel_diff": 1e-4}, "fp16": {"max_rel_diff": 2e-2}, "bf16": {"mean_cosine": 0.995},
             "int8": {"mean_cosine": 0.98, "min_cosine": 0.95}}
# int8: clips to calibrate on (NNCF collects statistics one clip at a time, about 0.5 s each on
# 2 cores, plus its bias correction; 8, 16, 32 and 64 clips gave the same held-out cosine)
CALIBRATION_CLIPS = 32
PARITY_CLIPS = 16                  # per set of videos (the fp32 reference runs about 2 clips/s on 2 cores)
GENERATED_SCENE = "test://demo?seed=0&seconds=6&live=0"
PARITY = "parity.json"
# what an extractor export writes into --out (metadata.json first: every finished export holds it);
# an earlier export of another format or extractor there is replaced, anything else needs --overwrite
EXPORTABLE = ("i3d-rgb",)
ARTIFACT_SUFFIXES = (".ts", ".onnx", ".xml", ".bin")
EXTRACTOR_FILES = (METADATA, DESCRIPTION, PARITY, *(f"{name}{suffix}" for name in EXPORTABLE for suffix in
                                                    ARTIFACT_SUFFIXES), "*.partial*", "tmp*")


def _clip_network(extractor: ClipExtractor, device: str, precision: str) -> I3DClipNetwork:
    """The extractor's network as a clip model in ``precision`` on ``device``; a copy, so that the
    extractor stays the fp32 CPU reference of the parity check."""
    if extractor.name not in EXPORTABLE:
        raise ExportError(f"--extractor {extractor.name}: only i3d-rgb is a network to export "
                          "(motion is a few numpy lines that run anywhere)")
    dtype = DTYPES["fp16" if precision == "fp16" else "fp32"]
    return I3DClipNetwork(copy.deepcopy(extractor.network).to(device, dtype)).eval()


def _check_request(fmt: str, precision: str, device: str, calibration: Optional[Sequence[str]]) -> None:
    if fmt not in PRECISIONS:
        raise ExportError(f"--extractor exports {', '.join(FORMATS)}, not {fmt}")
    if precision not in PRECISIONS[fmt]:
        raise ExportError(f"--format {fmt} exports an extractor in {', '.join(PRECISIONS[fmt][:-1])} or "
                          f"{PRECISIONS[fmt][-1]}, not {precision}")
    cuda = torch.device(device).type == "cuda"
    if fmt == "openvino" and cuda:
        raise ExportError("the openvino format runs on the CPU: drop --device cuda")
    if precision == "fp16" and fmt == "torchscript" and not cuda:
        raise ExportError("an fp16 TorchScript clip model needs --device cuda (the CPU kernels run fp32)")
    if calibration and precision != "int8":
        raise ExportError(f"--calibration is for --precision int8; {precision} needs no calibration (give the "
                          "videos to check it on with --parity-videos)")
    if precision == "int8" and not calibration:
        raise ExportError("int8 calibrates on real footage: pass --calibration with video files or folders of "
                          "them (e.g. a few minutes of what the camera will see)")


def find_video_inputs(items: Sequence[str], what: str) -> List[str]:
    """The video URIs that files, folders (their video files, by name) and source URIs give;
    ExportError naming ``what`` for a path that does not exist or a folder without videos."""
    from asl_edge.features.extract import VIDEO_SUFFIXES, find_videos

    uris: List[str] = []
    for item in items:
        if "://" not in item and not item.startswith("gst:") and not Path(item).exists():
            raise ExportError(f"{what} {item}: no such file or folder")
        found = [uri for _, uri in find_videos([item])]
        if not found:
            raise ExportError(f"{what} {item}: the folder holds no video files "
                              f"({', '.join(sorted(VIDEO_SUFFIXES))})")
        uris += found
    return uris


def split_held_out(videos: List[str]) -> Tuple[List[str], List[str]]:
    """(calibration, held out): every third video is held out (the 2nd of two; none of one)."""
    held = videos[2::3] if len(videos) >= 3 else videos[1:]
    return [v for v in videos if v not in held], held


def _sample(uris: Sequence[str], extractor: ClipExtractor, count: int, what: str) -> Tuple[np.ndarray, List[Dict]]:
    try:
        return sample_videos(uris, extractor.clip, count, what)
    except ExtractorError as err:
        raise ExportError(str(err)) from err


def _evenly(clips: np.ndarray, count: int) -> np.ndarray:
    return clips[np.unique(np.linspace(0, len(clips) - 1, min(count, len(clips))).round().astype(int))]


def _read_inputs(eager: ClipExtractor, precision: str, calibration: Optional[Sequence[str]], calibration_clips: int,
                 parity_videos: Optional[Sequence[str]], parity: bool):
    """The int8 calibration clips (None otherwise), where they came from, and the named sets of
    parity clips: ``calibration`` (int8) and ``held_out``."""
    held_out, held_what = [], "--parity-videos"
    if parity_videos:
        held_out = find_video_inputs(parity_videos, held_what)
    sets: List[Tuple[str, np.ndarray, object]] = []
    clips, info = None, None
    if precision == "int8":
        videos = find_video_inputs(calibration, "--calibration")
        if not held_out:
            (videos, held_out), held_what = split_held_out(videos), "--calibration (held out)"
        clips, used = _sample(videos, eager, calibration_clips, "--calibration")
        info = {"videos": used, "clips": len(clips)}
        sets.append(("calibration", _evenly(clips, PARITY_CLIPS), used))
    if parity and held_out:
        sets.append(("held_out", *_sample(held_out, eager, PARITY_CLIPS, held_what)))
    elif parity:
        generated, _ = _sample([GENERATED_SCENE], eager, PARITY_CLIPS, "the generated parity scene")
        sets.append(("held_out", generated, [{"video": GENERATED_SCENE, "clips": len(generated), "generated": True}]))
    return clips, info, sets


def export_extractor(name: str, fmt: str, out_dir, precision: str = "fp32", device: str = "cpu", batch: int = 1,
                     calibration: Optional[Sequence[str]] = None, calibration_clips: int = CALIBRATION_CLIPS,
                     parity_videos: Optional[Sequence[str]] = None, parity: bool = True,
                     overwrite: bool = False) -> Dict:
    """Export extractor ``name`` as ``fmt`` in ``precision`` into ``out_dir``; returns a summary
    (artifact, size, seconds, calibration, parity report, trtexec line). Every input is read
    before anything is written: a bad request or video raises ExportError with no artifact.
    ``out_dir`` must be new, empty or an earlier extractor export (whose files the new one replaces
    once it is written); any other folder only with ``overwrite``, whose other files are then left
    alone."""
    _check_request(fmt, precision, device, calibration)
    if calibration_clips < 1:
        raise ExportError(f"--calibration-clips must be at least 1, got {calibration_clips}")
    if parity_videos and not parity:
        raise ExportError("--parity-videos gives the videos of the parity check, and --no-parity skips it: "
                          "drop one of them")
    out = Path(out_dir)
    try:
        claim_output_folder(out, EXTRACTOR_FILES, overwrite, "export")
    except OutputError as err:
        raise ExportError(str(err)) from err
    try:
        eager = load_extractor(name)
    except ExtractorError as err:
        raise ExportError(str(err)) from err
    network = _clip_network(eager, device, precision)
    calibration_clips_used, calibration_info, sets = _read_inputs(eager, precision, calibration, calibration_clips,
                                                                  parity_videos, parity)
    made_folder = not out.exists()
    try:
        return _export(eager, network, fmt, precision, device, batch, out, calibration_clips_used, calibration_info,
                       sets, parity)
    except BaseException:
        if made_folder and out.is_dir():
            shutil.rmtree(out, ignore_errors=True)       # a failed export into a new folder leaves nothing
        raise


def _export(eager: ClipExtractor, network: I3DClipNetwork, fmt: str, precision: str, device: str, batch: int,
            out: Path, calibration_clips_used: Optional[np.ndarray], calibration_info: Optional[Dict],
            sets: List, parity: bool) -> Dict:
    name = eager.name
    out.mkdir(parents=True, exist_ok=True)
    spec, g = eager.clip, eager.clip.geometry
    example = torch.zeros(max(batch, 2), spec.num_frames, g.height, g.width, 3, dtype=torch.uint8)
    start = time.perf_counter()
    extra: Dict = {}
    if fmt == "torchscript":
        path = _export_torchscript(network, example.to(device), out / f"{name}.ts")
    elif fmt == "onnx":
        path = out / f"{name}.onnx"
        if precision == "int8":
            with tempfile.TemporaryDirectory(dir=out) as tmp:
                graph = _export_onnx(network, example, Path(tmp) / "fp32.onnx")
                _quantize_onnxruntime(graph, calibration_clips_used, path)
        else:
            _export_onnx(network, example, path)
    else:
        path = _export_openvino(network, example, precision, calibration_clips_used, out / f"{name}.xml")
        extra["openvino_inference_precision"] = OPENVINO_PRECISION[precision]
    seconds = time.perf_counter() - start
    _remove_stale(out, path)
    if calibration_info is not None:
        extra["calibration"] = calibration_info
    description = {**eager.describe(), "precision": precision, "device": device, "format": fmt}
    write_json(description, out / DESCRIPTION)
    write_json({"kind": "clip-extractor", "format": fmt, "artifact": path.name, "extractor": description,
                "inputs": [{"name": "clips", "dtype": "uint8", "shape": ["B", spec.num_frames, g.height, g.width, 3]}],
                "outputs": [{"name": "features", "dtype": "float32", "shape": ["B", eager.dim]}],
                "versions": {"torch": torch.__version__,
                             **_package_versions(("onnx", "onnxruntime", "openvino", "nncf"))},
                "export_seconds": round(seconds, 3), **extra}, out / METADATA)
    summary = {"artifact": str(path), "size_bytes": _size(path), "export_seconds": seconds, **extra}
    if parity:
        summary["parity"] = extractor_parity(eager, out, fmt, precision, device, sets)
        write_json(summary["parity"], out / PARITY)
    else:
        (out / PARITY).unlink(missing_ok=True)          # an earlier export's would describe another artifact
    if fmt == "onnx":
        summary["trtexec"] = trtexec_command(path, eager, batch, precision)
    return summary


def trtexec_command(onnx_path: Path, extractor: ClipExtractor, batch: int, precision: str) -> str:
    """The trtexec line that builds a TensorRT engine (beside the ONNX clip model) for batches of
    1 to max(batch, 8), tuned for ``batch``: fp16 kernels (int8 from a QDQ graph's scales)."""
    spec, g = extractor.clip, extractor.clip.geometry
    shape = f"{spec.num_frames}x{g.height}x{g.width}x3"
    return (f"trtexec --onnx={onnx_path} --saveEngine={Path(onnx_path).with_suffix('.engine')} "
            f"--minShapes=clips:1x{shape} --optShapes=clips:{batch}x{shape} --maxShapes=clips:{max(batch, 8)}x{shape} "
            + ("--fp16 --int8" if precision == "int8" else "--fp16"))


def _remove_stale(out: Path, artifact: Path) -> None:
    """An earlier export's artifacts in ``out`` other than the new ``artifact`` (another format's
    file would otherwise sit beside a metadata.json that no longer names it)."""
    keep = {artifact.name, artifact.with_suffix(".bin").name if artifact.suffix == ".xml" else artifact.name}
    for stale in (out / f"{name}{suffix}" for name in EXPORTABLE for suffix in ARTIFACT_SUFFIXES):
        if stale.name not in keep and stale.is_file():
            stale.unlink()


def _size(path: Path) -> int:
    return path.stat().st_size + (path.with_suffix(".bin").stat().st_size if path.suffix == ".xml" else 0)


def _export_torchscript(network: I3DClipNetwork, example: torch.Tensor, path: Path) -> Path:
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)   # paddings depend on the fixed T, H, W only
        traced = torch.jit.trace(network, example, check_trace=False)
    with atomic_output(path) as tmp:
        traced.save(str(tmp))
    return path


def _export_onnx(network: I3DClipNetwork, example: torch.Tensor, path: Path) -> Path:
    """The clip model through the dynamo exporter, batch dynamic."""
    from .onnx_export import _quiet_export

    batch = torch.export.Dim("batch", min=1, max=1024)
    program = _quiet_export(network.cpu(), (example,), dynamo=True, input_names=["clips"], output_names=["features"],
                            dynamic_shapes=({0: batch},), optimize=True, verify=False, verbose=False)
    with atomic_output(path) as tmp:
        program.save(str(tmp))
    return path


def _export_openvino(network: I3DClipNetwork, example: torch.Tensor, precision: str,
                     calibration: Optional[np.ndarray], path: Path) -> Path:
    """The ONNX graph read into OpenVINO (weights in fp32; bf16 is how it is compiled), quantized
    by NNCF for int8; ``.xml`` and ``.bin`` replace old ones together at the end. (``Core.read_model``
    rather than ``convert_model``: NNCF quantizes the latter's graph of I3D worse, held-out cosine
    0.992 against 0.998, same calibration clips.)"""
    from .openvino_export import _require_openvino

    ov = _require_openvino(precision)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        model = ov.Core().read_model(str(_export_onnx(network, example, Path(tmp) / "clip.onnx")))
        if precision == "int8":
            model = _quantize_openvino(model, calibration)
        staged = Path(tmp) / path.name
        ov.save_model(model, str(staged), compress_to_fp16=False)
        os.replace(staged.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(staged, path)
    return path


def _quantize_openvino(model, clips: np.ndarray):
    """NNCF post-training int8 quantization (symmetric activations: the PERFORMANCE preset, whose
    held-out cosine equals MIXED's on the sample videos) on one clip per calibration sample."""
    import nncf

    dataset = nncf.Dataset([clips[i:i + 1] for i in range(len(clips))])
    try:
        return nncf.quantize(model, dataset, subset_size=len(clips), preset=nncf.QuantizationPreset.PERFORMANCE)
    except Exception as err:  # noqa: BLE001 - NNCF raises many kinds; all mean "cannot quantize as asked"
        raise ExportError(f"NNCF int8 quantization failed: {type(err).__name__}: {err}") from err


def _quantize_onnxruntime(graph: Path, clips: np.ndarray, path: Path) -> Path:
    """ONNX Runtime static int8 quantization as a QDQ graph (per-channel int8 weights, uint8
    activations, min-max calibration)."""
    try:
        from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quant_pre_process,
                                              quantize_static)
    except ImportError as err:
        raise ExportError(f"onnx int8 needs onnxruntime ({err}): pip install 'asl-edge[runtime]'") from err

    class Clips(CalibrationDataReader):
        def __init__(self):
            self.items = iter(clips[i:i + 1] for i in range(len(clips)))

        def get_next(self):
            item = next(self.items, None)
            return None if item is None else {"clips": item}

    prepared = graph.with_name("prepared.onnx")
    try:
        quant_pre_process(str(graph), str(prepared), skip_symbolic_shape=True)
        with atomic_output(path) as tmp:
            quantize_static(str(prepared), str(tmp), Clips(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    except Exception as err:  # noqa: BLE001 - the quantizer raises many kinds; all mean "cannot quantize"
        raise ExportError(f"ONNX Runtime int8 quantization failed: {type(err).__name__}: {err}") from err
    return path


def _features(extractor: ClipExtractor, clips: np.ndarray, batch: int = 8) -> np.ndarray:
    return np.concatenate([extractor.extract(clips[i:i + batch]) for i in range(0, len(clips), batch)])


def extractor_parity(eager: ClipExtractor, folder: Path, fmt: str, precision: str, device: str,
                     sets: Sequence[Tuple[str, np.ndarray, object]]) -> Dict:
    """The artifact in ``folder`` (loaded with ``load_extractor``) against the fp32 extractor
    ``eager`` on each named set of clips: per-clip cosine (min, median, mean) and the largest
    difference, each set against :data:`TOLERANCE`."""
    try:
        exported = load_extractor(str(folder), device=device)
    except ExtractorError as err:
        raise ExportError(f"the exported clip model does not load: {err}") from err
    tolerance = TOLERANCE[precision]
    report: Dict = {"format": fmt, "precision": precision,
                    "reference": f"{eager.name} fp32 PyTorch on the CPU, per clip", "tolerance": tolerance,
                    "sets": {}}
    for set_name, clips, inputs in sets:
        want, got = _features(eager, clips), _features(exported, clips)
        cosine = (got * want).sum(1) / np.maximum(np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1), 1e-12)
        diff = float(np.abs(got - want).max())
        entry = {"inputs": inputs, "clips": len(clips), "min_cosine": float(cosine.min()),
                 "median_cosine": float(np.median(cosine)), "mean_cosine": float(cosine.mean()),
                 "max_abs_diff": diff, "max_rel_diff": diff / max(1.0, float(np.abs(want).max()))}
        entry["passed"] = all(entry[key] <= limit if key.startswith("max") else entry[key] >= limit
                              for key, limit in tolerance.items())
        report["sets"][set_name] = entry
    report["passed"] = all(entry["passed"] for entry in report["sets"].values())
    return report


def video_label(uri: str) -> str:
    """A video's file name, or the URI of a stream."""
    return uri if "://" in uri or uri.startswith("gst:") else Path(uri).name


def format_extractor_parity(report: Dict) -> str:
    """A few human-readable lines of an extractor parity report."""
    limits = ", ".join(f"{key.replace('_', ' ')} {'<=' if key.startswith('max') else '>='} {value:g}"
                       for key, value in report["tolerance"].items())
    lines = [f"parity ({report['format']} {report['precision']} vs {report['reference']}; {limits}): "
             f"{'PASS' if report['passed'] else 'FAIL'}"]
    for name, entry in report["sets"].items():
        videos = ", ".join(video_label(item["video"]) for item in entry["inputs"])
        lines.append(f"  {name.replace('_', ' ')} ({entry['clips']} clips of {videos}): cosine min "
                     f"{entry['min_cosine']:.4f}, median {entry['median_cosine']:.4f}, mean {entry['mean_cosine']:.4f}; "
                     f"max abs diff {entry['max_abs_diff']:.3g} (relative {entry['max_rel_diff']:.3g})"
                     f"{'' if entry['passed'] else ' FAIL'}")
    return "\n".join(lines)
