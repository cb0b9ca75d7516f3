"""The ``engine`` format: a serialized TensorRT engine built from the ``onnx-trt`` graph.

The onnx-trt graph holds ``AslTcaAttention`` (and, with post-processing, ``AslNms1d``) nodes in
domain ``asl_edge`` with ``plugin_version="1"`` and ``plugin_namespace="asl_edge"``; TensorRT's
ONNX parser maps each to the plugin creator of the same name/version/namespace, which
``libasl_edge_trt_plugins.so`` registers when it is loaded.

Precision, per TensorRT generation:

- 10.x (JetPack 6 ships 10.3): weakly typed network; ``--precision fp16`` sets the builder flag
  ``BuilderFlag.FP16`` so the builder may pick FP16 kernels (the plugins accept FP32 and FP16).
- 11.x: every network is strongly typed and ``BuilderFlag.FP16`` no longer exists: the tensor
  types of the ONNX graph decide, so an FP16 engine needs an FP16 onnx-trt graph
  (``asl-edge export --format onnx-trt --precision fp16``).

TensorRT is imported only inside :func:`build_engine`; everything else here (profile shapes,
trtexec command lines, version and precision decisions, ONNX checks) is plain Python, so it is
testable without TensorRT or a GPU.
"""

from __future__ import annotations

import shlex
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from asl_edge.runtime.tensorrt_backend import (PLUGIN_NAMESPACE, PLUGIN_VERSION, PLUGINS, PluginLibraryError,
                                               default_plugin_library, import_tensorrt, load_plugin_library,
                                               tensorrt_import_error, version_support)

from asl_edge.outputs import atomic_output

from .spec import INPUT_NAMES, PRECISIONS, ExportError, ExportSpec, Exported

PLUGIN_DOMAIN = "asl_edge"
PLUGIN_OPS = tuple(name for name, _, _ in PLUGINS)
# largest batch of the optimization profile when the batch is dynamic (the profile needs a bound;
# the attention plugin sizes its workspace for the profile's largest shape)
DYNAMIC_MAX_BATCH = 16
JETSON_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"

Shape = Tuple[int, ...]
Profile = Dict[str, Dict[str, Shape]]   # input name -> {"min"|"opt"|"max": shape}


# --- pure logic -------------------------------------------------------------------------------

def profile_shapes(spec: ExportSpec, channels: int) -> Profile:
    """Optimization profile of the inputs ``features`` (B, C, T) and ``mask`` (B, T).

    Batch: ``spec.batch`` when static; 1 .. max(batch, DYNAMIC_MAX_BATCH) with opt = batch when
    dynamic. Length: ``spec.window`` when static; min_length .. max_length (rounded down to a
    multiple of length_multiple) with opt = window when dynamic.
    """
    if channels is None or int(channels) <= 0:
        raise ExportError(f"features need a positive channel count, got {channels}")
    if spec.batch < 1 or spec.window < 1:
        raise ExportError(f"batch and window must be positive, got batch {spec.batch}, window {spec.window}")
    if spec.dynamic_batch:
        batch = (1, spec.batch, max(spec.batch, DYNAMIC_MAX_BATCH))
    else:
        batch = (spec.batch,) * 3
    if spec.dynamic_length:
        if spec.postprocess:
            raise ExportError("an engine with post-processing has a static length: drop dynamic length or "
                              "--postprocess")
        unit = max(int(spec.length_multiple), 1)
        top = (spec.max_length // unit) * unit
        bottom = max(spec.min_length, unit)
        if spec.window % unit or not bottom <= spec.window <= top:
            raise ExportError(f"dynamic length: window {spec.window} must be a multiple of {unit} between {bottom} "
                              f"and max_length {spec.max_length}")
        length = (bottom, spec.window, top)
    else:
        length = (spec.window,) * 3
    keys = ("min", "opt", "max")
    return {INPUT_NAMES[0]: {k: (b, int(channels), t) for k, b, t in zip(keys, batch, length)},
            INPUT_NAMES[1]: {k: (b, t) for k, b, t in zip(keys, batch, length)}}


def shapes_argument(profile: Profile, which: str, channels: Optional[str] = None) -> str:
    """trtexec's shape spec, e.g. ``features:1x2048x2304,mask:1x2304``; ``channels`` replaces the
    channel count (e.g. ``"<C>"`` when it is unknown)."""
    parts = []
    for name in INPUT_NAMES:
        dims = [str(d) for d in profile[name][which]]
        if channels is not None and name == INPUT_NAMES[0]:
            dims[1] = channels
        parts.append(f"{name}:{'x'.join(dims)}")
    return ",".join(parts)


def profile_metadata(profile: Profile) -> Dict[str, Dict[str, List[int]]]:
    return {name: {k: list(v) for k, v in shapes.items()} for name, shapes in profile.items()}


@dataclass(frozen=True)
class PrecisionPlan:
    """How the builder is set up for a precision on one TensorRT generation."""

    strongly_typed: bool   # 11.x: always (the graph's tensor types decide)
    fp16_flag: bool        # 10.x: BuilderFlag.FP16 on a weakly typed network


def precision_plan(major: int, precision: str, graph_precision: Optional[str]) -> PrecisionPlan:
    """Decide typing and flags. ``graph_precision`` is "fp16" when the onnx-trt graph holds FP16
    tensors, "fp32" when it holds none, None when unknown."""
    if precision not in ("fp32", "fp16"):
        raise ExportError(f"precision must be fp32 or fp16, got {precision!r}")
    if precision == "fp32" and graph_precision == "fp16":
        raise ExportError("the onnx-trt graph holds FP16 tensors but an fp32 engine was asked: export the "
                          "onnx-trt graph with --precision fp32, or build the engine with --precision fp16")
    if major >= 11:
        if precision == "fp16" and graph_precision != "fp16":
            raise ExportError(
                "TensorRT 11.x builds strongly typed networks only (BuilderFlag.FP16 and trtexec --fp16 are gone): "
                "the onnx-trt graph must already be FP16, and this one is "
                f"{graph_precision or 'of unknown precision'}. Export the onnx-trt graph with --precision fp16 "
                "(asl-edge export --format onnx-trt --precision fp16), then build the engine from it")
        return PrecisionPlan(strongly_typed=True, fp16_flag=False)
    return PrecisionPlan(strongly_typed=False, fp16_flag=precision == "fp16")


def trtexec_command(onnx_path, engine_path, spec: ExportSpec, channels: Optional[int], plugin_library,
                    *, tensorrt_major: int = 10, timing_cache=None, workspace_mb: Optional[int] = None,
                    trtexec: str = "trtexec") -> str:
    """The trtexec command line that builds the same engine as :func:`build_engine`.

    10.x: ``--fp16`` for an fp16 engine (weakly typed). 11.x: no ``--fp16`` (removed); the
    onnx-trt graph must be FP16 and ``--stronglyTyped`` is given to state it (a no-op on 11.x,
    where strong typing is the default). ``channels`` None writes a ``<C>`` placeholder.
    """
    profile = profile_shapes(spec, 1 if channels is None else channels)
    placeholder = "<C>" if channels is None else None
    shapes = {k: shapes_argument(profile, k, placeholder) for k in ("min", "opt", "max")}
    parts = [trtexec, f"--onnx={shlex.quote(str(onnx_path))}", f"--saveEngine={shlex.quote(str(engine_path))}",
             f"--staticPlugins={shlex.quote(str(plugin_library))}",
             f"--minShapes={shapes['min']}", f"--optShapes={shapes['opt']}", f"--maxShapes={shapes['max']}"]
    if spec.precision == "fp16":
        parts.append("--stronglyTyped" if tensorrt_major >= 11 else "--fp16")
    if workspace_mb:
        parts.append(f"--memPoolSize=workspace:{int(workspace_mb)}M")
    if timing_cache:
        parts.append(f"--timingCacheFile={shlex.quote(str(timing_cache))}")
    return " ".join(parts)


@dataclass
class OnnxGraphInfo:
    """What build_engine checks in the onnx-trt graph before handing it to TensorRT."""

    inputs: List[str]
    channels: Optional[int]
    input_dims: Dict[str, List[Optional[int]]]   # None for symbolic dims
    precision: str                               # "fp16" when it holds FP16 tensors, else "fp32"
    plugin_ops: List[str]                        # op types of the asl_edge nodes, in graph order
    problems: List[str]


def inspect_onnx(path: Path) -> Optional[OnnxGraphInfo]:
    """Read the graph's inputs, precision and plugin nodes (None when the onnx package is missing)."""
    try:
        import onnx
    except ImportError:
        return None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001 - any parse failure is a bad file
        raise ExportError(f"{path} is not a readable ONNX model: {err}") from err
    return describe_onnx(model)


def describe_onnx(model) -> OnnxGraphInfo:
    from onnx import TensorProto

    graph = model.graph
    initializer_names = {init.name for init in graph.initializer}
    real_inputs = [i for i in graph.input if i.name not in initializer_names]
    dims: Dict[str, List[Optional[int]]] = {}
    fp16 = False
    for value in real_inputs:
        tensor_type = value.type.tensor_type
        dims[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
        fp16 |= tensor_type.elem_type == TensorProto.FLOAT16
    fp16 |= any(init.data_type == TensorProto.FLOAT16 for init in graph.initializer)
    problems: List[str] = []
    plugin_ops: List[str] = []
    for node in graph.node:
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "Cast" and "to" in attrs and attrs["to"].i == TensorProto.FLOAT16:
            fp16 = True
        if node.op_type == "Constant" and "value" in attrs and attrs["value"].t.data_type == TensorProto.FLOAT16:
            fp16 = True
        if node.domain != PLUGIN_DOMAIN:
            continue
        plugin_ops.append(node.op_type)
        label = f"node {node.name or '?'} ({node.domain}::{node.op_type})"
        if node.op_type not in PLUGIN_OPS:
            problems.append(f"{label}: TensorRT's ONNX parser finds plugins by op type, which must be one of "
                            f"{', '.join(PLUGIN_OPS)}")
        for key, want in (("plugin_version", PLUGIN_VERSION), ("plugin_namespace", PLUGIN_NAMESPACE)):
            got = attrs[key].s.decode() if key in attrs else None
            if got != want:
                problems.append(f"{label}: attribute {key} is {got!r}, the plugins need {want!r}")
    names = [v.name for v in real_inputs]
    if names != list(INPUT_NAMES):
        problems.append(f"graph inputs are {names}, expected {list(INPUT_NAMES)} in that order")
    feature_dims = dims.get(INPUT_NAMES[0], [])
    channels = feature_dims[1] if len(feature_dims) == 3 else None
    return OnnxGraphInfo(inputs=names, channels=channels, input_dims=dims, precision="fp16" if fp16 else "fp32",
                         plugin_ops=plugin_ops, problems=problems)


def check_static_dims(input_dims: Dict[str, List[Optional[int]]], profile: Profile) -> List[str]:
    """Mismatches between the graph's static dims and the profile (a static dim must equal
    min = opt = max of the profile)."""
    problems = []
    for name, shapes in profile.items():
        dims = input_dims.get(name)
        if dims is None:
            continue
        if len(dims) != len(shapes["min"]):
            problems.append(f"{name} has rank {len(dims)} in the graph, the profile expects {len(shapes['min'])}")
            continue
        for axis, dim in enumerate(dims):
            if dim is None or dim < 0:
                continue
            wanted = {shapes[k][axis] for k in ("min", "opt", "max")}
            if wanted != {dim}:
                problems.append(f"{name} axis {axis} is fixed to {dim} in the graph but the export asks for "
                                f"{'..'.join(str(shapes[k][axis]) for k in ('min', 'max'))}")
    return problems


def missing_tensorrt_error(onnx_path: Path, out_path: Path, spec: ExportSpec, channels: Optional[int],
                           plugin_library: Path, timing_cache: Optional[Path], workspace_mb: int,
                           graph_precision: Optional[str] = None) -> ExportError:
    """The error for a machine without TensorRT, with the trtexec command lines to use elsewhere."""
    def command(major: int, trtexec: str = "trtexec") -> str:
        return trtexec_command(onnx_path, out_path, spec, channels, plugin_library, tensorrt_major=major,
                               timing_cache=timing_cache, workspace_mb=workspace_mb, trtexec=trtexec)

    reason = tensorrt_import_error() or "not importable"
    lines = [
        f"TensorRT is not installed here ({reason}), so the engine cannot be built on this machine.",
        f"The onnx-trt graph has been written: {onnx_path}",
    ]
    if (onnx_path.parent / "metadata.json").is_file():
        lines.append(f"With its metadata.json, {onnx_path.parent} runs here in ONNX Runtime: "
                     f"asl_edge.runtime.load({str(onnx_path.parent)!r}).")
    lines += [
        "Build the engine on the target machine (TensorRT and a CUDA GPU; engines are specific to the GPU and the "
        "TensorRT version), with the asl-edge plugin library built there first "
        "(asl-edge build-ext --cuda --tensorrt <TensorRT include dir>; on a Jetson add --cuda-arch 87):",
        "",
        "  desktop x86-64, TensorRT 10.x:",
        "    " + command(10),
        "  Jetson, JetPack 6 (TensorRT 10.3):",
        "    " + command(10, JETSON_TRTEXEC),
    ]
    if spec.precision == "fp16":
        note = ("this graph is FP32: export the onnx-trt graph with --precision fp16 first"
                if graph_precision == "fp32" else "the onnx-trt graph must be exported with --precision fp16")
        lines += [f"  TensorRT 11.x (strongly typed only, --fp16 is gone; {note}):", "    " + command(11)]
    else:
        lines += ["  TensorRT 11.x:", "    " + command(11)]
    lines += ["", "Or, on that machine, run asl-edge export --format engine from the checkpoint, or call "
                  "asl_edge.export.tensorrt_engine.build_engine on the copied onnx-trt graph; see export/TENSORRT.md."]
    return ExportError("\n".join(lines))


# --- TensorRT ---------------------------------------------------------------------------------

def _atomic_write(path: Path, data) -> None:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def _make_logger(trt):
    """A TensorRT logger that prints warnings and errors and keeps the errors for the exception."""

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: List[str] = []

        def log(self, severity, msg):
            level = int(severity)
            if level <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
            if level <= int(trt.ILogger.Severity.WARNING):
                print(f"[TensorRT] {severity.name if hasattr(severity, 'name') else severity}: {msg}", flush=True)

    return Logger()


def _network_has_fp16(trt, network) -> bool:
    for i in range(network.num_inputs):
        if network.get_input(i).dtype == trt.float16:
            return True
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for j in range(layer.num_outputs):
            if layer.get_output(j).dtype == trt.float16:
                return True
    return False


def build_engine(onnx_path: Path, out_path: Path, spec: ExportSpec, plugin_library: Optional[Path],
                 timing_cache: Optional[Path] = None, workspace_mb: int = 4096) -> Exported:
    """Build a TensorRT engine from the onnx-trt graph at ``onnx_path`` and write it to ``out_path``.

    ``plugin_library``: ``libasl_edge_trt_plugins.so`` (None: the one ``asl-edge build-ext``
    installed). ``timing_cache``: a file loaded when present and saved after the build.
    Raises ExportError, with trtexec command lines, where TensorRT is missing.
    """
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    timing_cache = Path(timing_cache) if timing_cache else None
    plugin_library = Path(plugin_library) if plugin_library else default_plugin_library()
    if workspace_mb <= 0:
        raise ExportError(f"workspace_mb must be positive, got {workspace_mb}")
    if not onnx_path.is_file():
        raise ExportError(f"{onnx_path} not found: the engine is built from the onnx-trt graph "
                          "(asl-edge export --format onnx-trt)")
    if spec.precision not in PRECISIONS:
        raise ExportError(f"precision must be one of {', '.join(PRECISIONS)}, got {spec.precision!r}")
    info = inspect_onnx(onnx_path)
    channels = info.channels if info else None
    if info and info.problems:
        raise ExportError(f"{onnx_path} is not an onnx-trt graph TensorRT can build with the asl-edge plugins:\n  "
                          + "\n  ".join(info.problems))
    if channels is not None:
        profile = profile_shapes(spec, channels)
        problems = check_static_dims(info.input_dims, profile)
        if problems:
            raise ExportError(f"{onnx_path} does not match the export options (export the onnx-trt graph with the "
                              "same --window/--batch/dynamic options):\n  " + "\n  ".join(problems))
    else:
        profile_shapes(spec, 1)  # validates the spec

    trt = import_tensorrt()
    if trt is None:
        raise missing_tensorrt_error(onnx_path, out_path, spec, channels, plugin_library, timing_cache,
                                     workspace_mb, info.precision if info else None)
    version = str(trt.__version__)
    try:
        major, warning = version_support(version)
    except ValueError as err:
        raise ExportError(str(err)) from err
    if warning:
        warnings.warn(warning, RuntimeWarning, stacklevel=2)

    # plugins first, so that the ONNX parser finds their creators in the global registry
    uses_plugins = info is None or bool(info.plugin_ops)
    registration = None
    if uses_plugins:
        try:
            registration = load_plugin_library(trt, plugin_library)
        except PluginLibraryError as err:
            raise ExportError(str(err)) from err

    logger = _make_logger(trt)
    builder = trt.Builder(logger)
    flags = 0  # 10.x: weakly typed (EXPLICIT_BATCH is implied); 11.x: strongly typed regardless
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)] or logger.errors
        raise ExportError(f"TensorRT {version} could not parse {onnx_path}:\n  " + "\n  ".join(errors))

    names = [network.get_input(i).name for i in range(network.num_inputs)]
    if names != list(INPUT_NAMES):
        raise ExportError(f"{onnx_path}: network inputs are {names}, expected {list(INPUT_NAMES)}")
    if channels is None:
        channels = int(network.get_input(0).shape[1])
        if channels < 0:
            raise ExportError(f"{onnx_path}: the channel axis of features must be static")
    profile = profile_shapes(spec, channels)
    graph_precision = info.precision if info else ("fp16" if _network_has_fp16(trt, network) else "fp32")
    plan = precision_plan(major, spec.precision, graph_precision)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if plan.fp16_flag:
        if not getattr(builder, "platform_has_fast_fp16", True):
            warnings.warn("this GPU has no fast FP16: the FP16 engine may be slower than FP32", RuntimeWarning,
                          stacklevel=2)
        config.set_flag(trt.BuilderFlag.FP16)

    dynamic = [i for i in range(network.num_inputs) if any(d < 0 for d in network.get_input(i).shape)]
    if dynamic:
        opt_profile = builder.create_optimization_profile()
        for i in dynamic:
            name = network.get_input(i).name
            opt_profile.set_shape(name, *(profile[name][k] for k in ("min", "opt", "max")))
        config.add_optimization_profile(opt_profile)
    for i in range(network.num_inputs):   # static inputs must match the profile as asked
        tensor = network.get_input(i)
        shape = tuple(tensor.shape)
        if i not in dynamic and not (profile[tensor.name]["min"] == shape == profile[tensor.name]["max"]):
            raise ExportError(f"{onnx_path}: input {tensor.name} is fixed to {shape}, the export asks for "
                              f"{profile[tensor.name]['min']}..{profile[tensor.name]['max']}")

    cache_note = None
    if timing_cache is not None:
        data = timing_cache.read_bytes() if timing_cache.is_file() else b""
        cache = config.create_timing_cache(data)
        if not config.set_timing_cache(cache, ignore_mismatch=False) and data:
            warnings.warn(f"timing cache {timing_cache} does not match this GPU/TensorRT; starting a new one",
                          RuntimeWarning, stacklevel=2)
            config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
        cache_note = "loaded" if data else "new"

    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT {version} failed to build the engine from {onnx_path}:\n  "
                          + "\n  ".join(logger.errors or ["(no error logged)"]))
    build_seconds = time.perf_counter() - start
    _atomic_write(out_path, memoryview(serialized))
    if timing_cache is not None:
        _atomic_write(timing_cache, memoryview(config.get_timing_cache().serialize()))

    metadata = {
        "tensorrt": version,
        "plugin_library": plugin_library.name if uses_plugins else None,
        "profile": profile_metadata(profile),
        "tensorrt_build": {
            "typing": "strong" if plan.strongly_typed else "weak",
            "fp16_flag": plan.fp16_flag,
            "graph_precision": graph_precision,
            "workspace_mb": int(workspace_mb),
            "timing_cache": None if timing_cache is None else {"path": str(timing_cache), "start": cache_note},
            "plugin_registration": registration,
            "build_seconds": round(build_seconds, 3),
            "warning": warning or None,
        },
    }
    return Exported(out_path, metadata=metadata)
