"""``export_checkpoint``: checkpoint -> artifact + metadata.json + parity.json, one format at a time."""

from __future__ import annotations

import copy
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, Optional

import torch

from asl_edge.compute import DeviceError, resolve_device
from asl_edge.model import (CheckpointError, input_channels, load_checkpoint, padded_length, padding_unit,
                            shortest_input_length)
from asl_edge.ops import native_state
from asl_edge.outputs import OutputError, claim_output_folder, write_json
from asl_edge.runtime import ArtifactError, load
from asl_edge.runtime.backend import METADATA

from .calibration import RealFeatures, real_features
from .inference import NetworkOutputs, NetworkWithDetections
from .metadata import make_metadata
from .parity import parity_report
from .spec import FORMATS, PRECISION_FORMATS, PRECISIONS, ExportError, ExportSpec

ARTIFACT_NAMES = {"torchscript": "model.ts", "exported": "model.pt2", "aoti": "model_aoti.pt2",
                  "onnx": "model.onnx", "onnx-trt": "model_trt.onnx", "engine": "model.engine",
                  "openvino": "model.xml"}
PARITY = "parity.json"
# every file an export folder may hold (metadata.json first: every export writes it); a folder holds
# one export: its artifact (OpenVINO: with model.bin; engine: with the onnx-trt graph it was built
# from), metadata.json and its own parity.json
EXPORT_FILES = (METADATA, PARITY, *ARTIFACT_NAMES.values(), "model.bin", "*.partial*")


def _artifact_files(fmt: str):
    """The files of a ``fmt`` export besides metadata.json and parity.json."""
    return {"openvino": {"model.xml", "model.bin"}, "engine": {"model_trt.onnx", "model.engine"}}.get(
        fmt, {ARTIFACT_NAMES[fmt]})


def _validate(spec: ExportSpec, config) -> ExportSpec:
    """``spec`` checked against ``config`` and completed: window, length range, padding unit."""
    if spec.format not in FORMATS:
        raise ExportError(f"unknown format {spec.format!r}; choose one of {', '.join(FORMATS)}")
    if spec.precision not in PRECISIONS:
        raise ExportError(f"precision must be one of {', '.join(PRECISIONS)}, got {spec.precision!r}")
    if spec.format not in PRECISION_FORMATS[spec.precision]:
        takes = [p for p in PRECISIONS if spec.format in PRECISION_FORMATS[p]]
        raise ExportError(f"the {spec.format} format takes precision {' or '.join(takes)}, not {spec.precision}: "
                          f"{spec.precision} exports are for the CPU through --format "
                          f"{' or '.join(PRECISION_FORMATS[spec.precision])}")
    if spec.calibration is not None and spec.precision != "int8":
        raise ExportError(f"--calibration is for --precision int8 (quantization), not {spec.precision}")
    if spec.precision in ("bf16", "int8") and spec.device != "cpu":
        raise ExportError(f"{spec.precision} exports are for the CPU: drop --device {spec.device}")
    if spec.precision == "fp16" and spec.format in ("torchscript", "exported", "aoti") and spec.device == "cpu":
        raise ExportError(f"fp16 {spec.format} needs --device cuda (the CPU kernels run fp32)")
    try:
        resolve_device(spec.device)
    except DeviceError as err:
        raise ExportError(f"--device: {err}") from None
    if spec.batch < 1:
        raise ExportError(f"--batch must be at least 1, got {spec.batch}")
    if spec.window is None:
        spec = replace(spec, window=config.dataset.max_seq_len)
    if spec.window < 1:
        raise ExportError(f"--window must be a positive length, got {spec.window} (leave it out for the config's "
                          f"max_seq_len, {config.dataset.max_seq_len})")
    unit = padding_unit(config)
    if padded_length(config, spec.window) != spec.window:
        raise ExportError(f"--window {spec.window} is not an input length this model runs at: use "
                          f"max_seq_len ({config.dataset.max_seq_len}) or a larger multiple of {unit}")
    if spec.postprocess and spec.dynamic_length:
        raise ExportError("--postprocess needs a fixed window (decode depends on T): drop --dynamic")
    if spec.postprocess and config.test_cfg.nms_method == "none":
        raise ExportError("--postprocess puts NMS in the graph, and this config has test_cfg.nms_method: none; "
                          "export the network outputs (no --postprocess) instead")
    if spec.format in ("onnx-trt", "engine") and not native_state().loaded:
        raise ExportError(f"the {spec.format} format puts the native asl_edge ops in the graph, and they are "
                          f"unavailable: {native_state().reason}")
    if not spec.dynamic_length:
        if spec.max_length is not None:
            raise ExportError(f"--max-length {spec.max_length} is for --dynamic artifacts; this one takes T = "
                              f"{spec.window} only: add --dynamic or drop --max-length")
        return replace(spec, length_multiple=unit, min_length=spec.window, max_length=spec.window)
    if spec.window % unit:
        raise ExportError(f"--dynamic lets T vary in multiples of the padding unit {unit}, and --window {spec.window} "
                          f"is not one: pass a --window that is (max_seq_len is {config.dataset.max_seq_len})")
    spec = replace(spec, length_multiple=unit, min_length=shortest_input_length(config))
    max_length = 4 * spec.window if spec.max_length is None else spec.max_length   # 4x the window unless told
    if max_length < 1 or max_length % unit:
        raise ExportError(f"--max-length {max_length} is not a multiple of the padding unit {unit}: use "
                          f"{max_length // unit * unit or unit} or {(max_length // unit + 1) * unit}")
    if max_length < spec.window:
        raise ExportError(f"--max-length {max_length} is below the --window ({spec.window}): pass --max-length "
                          f"{spec.window} or more")
    return replace(spec, max_length=max_length)


def _write(spec: ExportSpec, module, example, out_dir: Path, config, calibration: Optional[RealFeatures]):
    fmt = spec.format
    if fmt == "openvino":
        from .openvino_export import export_openvino
        return export_openvino(module, example, out_dir / ARTIFACT_NAMES[fmt], spec, config, calibration)
    if fmt == "torchscript":
        from .torch_formats import export_torchscript
        return export_torchscript(module, example, out_dir / ARTIFACT_NAMES[fmt], spec)
    if fmt == "exported":
        from .torch_formats import export_exported
        return export_exported(module, example, out_dir / ARTIFACT_NAMES[fmt], spec)
    if fmt == "aoti":
        from .torch_formats import export_aoti
        return export_aoti(module, example, out_dir / ARTIFACT_NAMES[fmt], spec)
    from .onnx_export import export_onnx
    if fmt == "onnx":
        return export_onnx(module, example, out_dir / ARTIFACT_NAMES[fmt], spec, flavour="portable")
    onnx_spec = replace(spec, format="onnx-trt")
    graph = export_onnx(module, example, out_dir / ARTIFACT_NAMES["onnx-trt"], onnx_spec, flavour="trt")
    if fmt == "onnx-trt":
        return graph
    return graph, onnx_spec


def export_checkpoint(ckpt_path, spec: ExportSpec, out_dir, plugin_library: Optional[Path] = None,
                      parity: bool = True, overwrite: bool = False, parity_features: Optional[str] = None) -> Dict:
    """Export the checkpoint's network as ``spec`` asks into folder ``out_dir``: the artifact,
    ``metadata.json`` and (with ``parity``) ``parity.json``. Returns a summary with the parity report.

    Everything that can be checked is checked before anything is written: the checkpoint, the spec,
    the device, ``out_dir`` (new, empty or an earlier export; any other folder only with
    ``overwrite``, whose own files are then left alone), int8 calibration and ``parity_features`` (a
    folder of (T, C) .npy files or a dataset config: the parity check runs on them; an int8 export's
    parity runs on its calibration features unless told otherwise). The new artifact replaces an
    earlier export's files only once it is written; then the files of the earlier export that this
    one does not write (another format's artifact, its parity.json) are removed. Raises ExportError
    when the export cannot be done as asked.
    """
    try:
        ckpt = load_checkpoint(ckpt_path, device="cpu")
    except CheckpointError as err:
        raise ExportError(str(err)) from err
    config = ckpt.config
    spec = _validate(spec, config)
    if parity_features is not None and not parity:
        raise ExportError("--parity-features gives the inputs of the parity check, and --no-parity skips it: "
                          "drop one of them")
    out_dir = Path(out_dir)
    try:
        claim_output_folder(out_dir, EXPORT_FILES, overwrite, "export")
    except OutputError as err:
        raise ExportError(str(err)) from err
    calibration = real_features(spec.calibration, config) if spec.precision == "int8" else None
    parity_inputs = real_features(parity_features, config, "--parity-features") if parity_features else calibration
    made_folder = not out_dir.exists()
    try:
        return _export(ckpt, spec, out_dir, plugin_library, parity, calibration, parity_inputs)
    except BaseException:
        if made_folder and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()                 # leave no empty folder behind a failed export
        raise


def _export(ckpt, spec: ExportSpec, out_dir: Path, plugin_library: Optional[Path], parity: bool,
            calibration: Optional[RealFeatures], parity_inputs: Optional[RealFeatures]) -> Dict:
    config = ckpt.config
    out_dir.mkdir(parents=True, exist_ok=True)
    model = ckpt.model.eval()
    dtype = torch.float16 if spec.precision == "fp16" and spec.format in ("torchscript", "exported", "aoti") \
        else torch.float32
    network = copy.deepcopy(model).to(spec.device, dtype)   # `model` stays the fp32 CPU reference
    module = NetworkWithDetections(network, config, spec.window) if spec.postprocess else NetworkOutputs(network)
    rows = max(spec.batch, 2) if spec.dynamic_batch else spec.batch     # a batch of 1 would be specialised
    example = (torch.zeros(rows, input_channels(config), spec.trace_length, device=spec.device, dtype=dtype),
               torch.ones(rows, spec.trace_length, dtype=torch.bool, device=spec.device))
    start = time.perf_counter()
    try:
        written = _write(spec, module, example, out_dir, config, calibration)
    except ExportError:
        raise
    except Exception as err:  # noqa: BLE001 - tracing/compiling errors of torch and onnx come in many types
        raise ExportError(f"the {spec.format} export failed: {type(err).__name__}: {err}") from err
    if spec.format == "engine":
        graph, onnx_spec = written
        write_json(make_metadata(model, config, onnx_spec, graph, time.perf_counter() - start), out_dir / METADATA)
        _remove_stale(out_dir, {graph.path.name})
        from .tensorrt_engine import build_engine
        written = build_engine(graph.path, out_dir / ARTIFACT_NAMES["engine"], spec, plugin_library)
        written.metadata = {**graph.metadata, **written.metadata}
    seconds = time.perf_counter() - start
    write_json(make_metadata(model, config, spec, written, seconds), out_dir / METADATA)
    _remove_stale(out_dir, _artifact_files(spec.format))
    size = written.path.stat().st_size
    if "weights_file" in written.metadata:                  # an OpenVINO IR keeps its weights beside the .xml
        size += (out_dir / written.metadata["weights_file"]).stat().st_size
    summary = {"format": spec.format, "precision": spec.precision, "artifact": str(written.path),
               "size_bytes": size, "export_seconds": seconds}
    if "calibration" in written.metadata:
        summary["calibration"] = written.metadata["calibration"]
    if parity:
        try:
            backend = load(out_dir, device="cuda" if spec.format == "engine" else spec.device)   # engines: GPUs
        except ArtifactError as err:
            raise ExportError(f"{written.path} and its metadata.json were written, but the parity check cannot "
                              f"load them here: {err} (use --no-parity to skip it)") from err
        report = parity_report(backend, model, config, spec, features=parity_inputs)
        write_json(report, out_dir / PARITY)
        summary["parity"] = report
    return summary


def _remove_stale(out_dir: Path, keep) -> None:
    """Remove the export files in ``out_dir`` that the export now there does not use (``keep``, its
    artifact files, and metadata.json stay): another format's artifact, an earlier parity.json."""
    for name in EXPORT_FILES[1:]:
        if "*" not in name and name not in keep:
            (out_dir / name).unlink(missing_ok=True)
