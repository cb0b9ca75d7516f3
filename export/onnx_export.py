"""ONNX export in two flavours (DESIGN §4):

- ``portable``: standard ONNX ops only. The attention is exported from its pure-PyTorch
  reference, so any ONNX Runtime runs the graph; post-processing stays outside the graph.
- ``trt``: the graph TensorRT's ONNX parser reads with the asl_edge plugin library loaded: each
  fused attention is one ``asl_edge::AslTcaAttention`` node and, with post-processing, NMS is an
  ``asl_edge::AslNms1d`` node (attributes as in ``csrc/tensorrt/*/README.md`` plus
  ``plugin_version`` / ``plugin_namespace``). ONNX Runtime runs it through the Python custom ops
  of :mod:`asl_edge.runtime.ort_custom_ops`.

Both go through ``torch.onnx.export(..., dynamo=True)``: the native ops appear in the
``torch.export`` graph as ``torch.ops.asl_edge.*`` (their Meta kernels give the shapes, dynamic T
included) and a custom translation table turns them into the custom-domain nodes.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Tuple

import torch
from torch import Tensor

from asl_edge.outputs import atomic_output

from .spec import INPUT_NAMES, ExportError, ExportSpec, Exported, dynamic_shapes

FLAVOURS = ("portable", "trt")
DOMAIN = "asl_edge"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = DOMAIN
TCA_OP = "AslTcaAttention"
NMS_OP = "AslNms1d"

# ONNX attribute kinds of the custom nodes (csrc/tensorrt/*/README.md "Fields")
TCA_ATTRIBUTES = {"num_heads": "INT", "window": "INT", "theta": "FLOAT", "channel_scale": "STRING",
                  "plugin_version": "STRING", "plugin_namespace": "STRING"}
NMS_ATTRIBUTES = {"method": "STRING", "iou_threshold": "FLOAT", "sigma": "FLOAT", "min_score": "FLOAT",
                  "max_out": "INT", "multiclass": "INT", "voting_threshold": "FLOAT", "num_classes": "INT",
                  "plugin_version": "STRING", "plugin_namespace": "STRING"}


def _require_onnx():
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ExportError(f"ONNX export needs onnx and onnxscript ({err}): pip install 'asl-edge[export]'") from err


# --- custom-domain nodes -------------------------------------------------------------------------

def _custom_schemas():
    """OpSchemas of the two custom nodes, used only to build the nodes (never registered with onnx,
    so onnx.checker and shape inference treat them as opaque and read their value_info)."""
    from onnx.defs import OpSchema

    param, attr, kind = OpSchema.FormalParameter, OpSchema.Attribute, OpSchema.AttrType
    floats = ["tensor(float)", "tensor(float16)"]
    tca = OpSchema(
        TCA_OP, DOMAIN, 1, doc="Fused temporal-channel attention (csrc/tensorrt/tca_attention/README.md)",
        inputs=[param("q", "T"), param("k", "T"), param("v", "T"), param("mask", "B")],
        outputs=[param("f", "T")],
        type_constraints=[("T", floats, "data"), ("B", ["tensor(bool)"], "validity")],
        attributes=[attr(name, getattr(kind, k), "") for name, k in TCA_ATTRIBUTES.items()])
    nms = OpSchema(
        NMS_OP, DOMAIN, 1, doc="1-D NMS with fixed-size outputs (csrc/tensorrt/nms1d/README.md)",
        inputs=[param("segments", "T"), param("scores", "T"), param("labels", "I")],
        outputs=[param("kept_segments", "T"), param("kept_scores", "T"), param("kept_labels", "I"),
                 param("count", "I")],
        type_constraints=[("T", floats, "data"), ("I", ["tensor(int32)"], "labels and count")],
        attributes=[attr(name, getattr(kind, k), "") for name, k in NMS_ATTRIBUTES.items()])
    return tca, nms


def _translation_table(flavour: str) -> Dict[Callable, Callable]:
    """torch op -> onnxscript function: the custom nodes (trt flavour) and a stable sort."""
    import onnx
    import onnxscript
    from onnxscript import opset18 as op

    table: Dict[Callable, Callable] = {}

    def sort_stable(self, stable=None, dim: int = -1, descending: bool = False):
        # ONNX TopK breaks ties by the lower index: with k = the full size it is a stable sort
        rank = len(self.shape)
        axis = dim % rank if rank else 0
        k = op.Shape(self, start=axis, end=axis + 1)
        values, indices = op.TopK(self, k, axis=axis, largest=1 if descending else 0, sorted=1)
        return values, indices

    table[torch.ops.aten.sort.stable] = sort_stable
    if flavour != "trt":
        return table

    tca_schema, nms_schema = _custom_schemas()
    domain = onnxscript.values.Opset(DOMAIN, 1)
    tca_node = onnxscript.values.Op(domain, TCA_OP, tca_schema)
    nms_node = onnxscript.values.Op(domain, NMS_OP, nms_schema)

    def tca_attention(q, k, v, mask, num_heads: int, window: int, theta: float, channel_scale: str):
        return tca_node(q, k, v, mask, num_heads=int(num_heads), window=int(window), theta=float(theta),
                        channel_scale=str(channel_scale), plugin_version=PLUGIN_VERSION,
                        plugin_namespace=PLUGIN_NAMESPACE)

    def nms1d(segments, scores, labels, method: str, iou_threshold: float, sigma: float, min_score: float,
              max_out: int, multiclass: bool, voting_threshold: float, num_classes: int):
        # the plugin takes and gives INT32 labels; the torch op gives int64 ones
        labels32 = op.Cast(labels, to=onnx.TensorProto.INT32)
        kept_segments, kept_scores, kept_labels, count = nms_node(
            segments, scores, labels32, method=str(method), iou_threshold=float(iou_threshold), sigma=float(sigma),
            min_score=float(min_score), max_out=int(max_out), multiclass=int(bool(multiclass)),
            voting_threshold=float(voting_threshold), num_classes=int(num_classes),
            plugin_version=PLUGIN_VERSION, plugin_namespace=PLUGIN_NAMESPACE)
        return kept_segments, kept_scores, op.Cast(kept_labels, to=onnx.TensorProto.INT64), count

    table[torch.ops.asl_edge.tca_attention.default] = tca_attention
    table[torch.ops.asl_edge.nms1d.default] = nms1d
    return table


# --- choosing the op implementation that gets traced ----------------------------------------------

@contextlib.contextmanager
def _ops_for(flavour: str) -> Iterator[None]:
    """Portable: trace the pure-PyTorch ops. TensorRT flavour: trace the native ops for every
    dtype (tracing needs only their Meta kernels, so an fp16 graph traces on a CPU-only machine)."""
    from asl_edge.ops import native_state
    from asl_edge.ops.library import forced_ops

    if flavour == "portable":
        with forced_ops("reference"):
            yield
        return
    state = native_state()
    if not state.loaded:
        raise ExportError("the onnx-trt flavour exports the native asl_edge ops as AslTcaAttention/AslNms1d "
                          f"nodes, and they are unavailable: {state.reason}. Build them with "
                          "`asl-edge build-ext`, or export the portable `onnx` format instead.")
    with forced_ops("trace"):
        yield


# --- export ----------------------------------------------------------------------------------------

def _quiet_export(*args, **kwargs):
    """torch.onnx.export with its progress prints and the exporter's chatty warnings kept out of the
    way; the messages come back inside the ExportError when it fails."""
    buffer = io.StringIO()
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo",
                                                    "torch.fx.experimental.symbolic_shapes")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(buffer):
            warnings.simplefilter("ignore")
            return torch.onnx.export(*args, **kwargs)
    except Exception as err:  # the exporter raises many kinds; all mean "cannot export as asked"
        raise ExportError(f"ONNX export failed: {type(err).__name__}: {err}\n{buffer.getvalue()[-4000:]}") from err
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _tidy(model, spec: ExportSpec, flavour: str) -> None:
    """Strip the exporter's per-node provenance (stack traces with local paths), name the symbolic
    dimensions of inputs and outputs, and record what the graph is."""
    import onnx

    def strip(container):
        for item in container:
            del item.metadata_props[:]

    graph = model.graph
    strip(graph.node)
    strip(graph.input)
    strip(graph.output)
    strip(graph.value_info)
    strip(graph.initializer)
    for vi in list(graph.input) + list(graph.output):
        dims = vi.type.tensor_type.shape.dim
        for axis, dim in enumerate(dims):
            if not dim.HasField("dim_param"):
                continue
            if axis == 0 and spec.dynamic_batch:
                dim.dim_param = "batch"
            elif vi.name in INPUT_NAMES:
                dim.dim_param = "T"
            elif axis == 1:
                dim.dim_param = "N"
    del model.metadata_props[:]
    for key, value in {"asl_edge.flavour": flavour, "asl_edge.precision": spec.precision,
                       "asl_edge.postprocess": str(bool(spec.postprocess)).lower()}.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "asl-edge"
    model.doc_string = (f"asl-edge {flavour} ONNX graph: inputs features[B, C, T] ({spec.precision}), "
                        f"mask[B, T] bool; outputs {', '.join(spec.output_names)}")


def _ensure_custom_value_info(model) -> None:
    """Every output of a custom node has a value_info entry (type and rank), so that shape
    inference, which cannot see inside the custom ops, knows them."""
    import onnx

    known = {vi.name for vi in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input)}
    types = {vi.name: vi.type.tensor_type for vi in list(model.graph.value_info) + list(model.graph.input)}
    for node in model.graph.node:
        if node.domain != DOMAIN:
            continue
        if node.op_type == TCA_OP:
            data = types.get(node.input[0])
            wanted = [(node.output[0], data.elem_type if data else onnx.TensorProto.FLOAT,
                       [d.dim_value or d.dim_param or None for d in data.shape.dim] if data else None)]
        else:
            data = types.get(node.input[0])
            elem = data.elem_type if data else onnx.TensorProto.FLOAT
            max_out = next(a.i for a in node.attribute if a.name == "max_out")
            wanted = [(node.output[0], elem, [max_out, 2]), (node.output[1], elem, [max_out]),
                      (node.output[2], onnx.TensorProto.INT32, [max_out]), (node.output[3], onnx.TensorProto.INT32, [1])]
        for name, elem, shape in wanted:
            if name and name not in known:
                model.graph.value_info.append(onnx.helper.make_tensor_value_info(name, elem, shape))
                known.add(name)


def _custom_ops(model) -> List[str]:
    return sorted({f"{n.domain}::{n.op_type}" for n in model.graph.node if n.domain == DOMAIN})


def export_onnx(module: torch.nn.Module, example: Tuple[Tensor, Tensor], out_path: Path, spec: ExportSpec,
                flavour: str) -> Exported:
    """Export ``module`` (NetworkOutputs or NetworkWithDetections) to ``out_path`` as an ONNX graph of
    the given flavour (``portable`` or ``trt``); inputs ``features``, ``mask``; outputs
    ``spec.output_names``. With ``spec.precision == "fp16"`` weights, features and floating outputs
    are FP16. Raises ExportError when the export cannot be done as asked."""
    _require_onnx()
    import onnx

    if flavour not in FLAVOURS:
        raise ExportError(f"unknown ONNX flavour {flavour!r}; choose one of {', '.join(FLAVOURS)}")
    if spec.postprocess and flavour == "portable":
        raise ExportError("the portable ONNX graph stops at the network outputs (cls_logits, offsets): NMS runs "
                          "outside it. For post-processing inside the graph export onnx-trt (AslNms1d node) or "
                          "torchscript.")
    if spec.postprocess and (spec.dynamic_length or spec.dynamic_batch):
        raise ExportError("post-processing in the graph needs a fixed window and batch (decode depends on T and "
                          "runs per video): drop the dynamic length/batch")
    if spec.precision not in ("fp32", "fp16"):
        raise ExportError(f"precision must be fp32 or fp16, got {spec.precision!r}")
    out_path = Path(out_path)
    features, mask = example
    dtype = torch.float16 if spec.precision == "fp16" else torch.float32
    module = copy.deepcopy(module).eval().to("cpu", dtype)
    features = features.detach().to("cpu", dtype)
    mask = mask.detach().to("cpu", torch.bool)
    if spec.dynamic_batch and features.shape[0] == 1:
        # a dynamic dimension traced at size 1 gets specialised: trace with two rows
        features, mask = features.repeat(2, 1, 1), mask.repeat(2, 1)

    with _ops_for(flavour):
        program = _quiet_export(
            module, (features, mask), dynamo=True, input_names=list(INPUT_NAMES),
            output_names=list(spec.output_names), opset_version=spec.opset,
            dynamic_shapes=dynamic_shapes(spec),
            custom_translation_table=_translation_table(flavour), optimize=True, verify=False, verbose=False)
    model = program.model_proto
    custom = _custom_ops(model)
    if flavour == "trt" and f"{DOMAIN}::{TCA_OP}" not in custom and _has_attention(module):
        raise ExportError("the onnx-trt graph has no AslTcaAttention node: the native op was not traced")
    if flavour == "portable" and custom:
        raise ExportError(f"the portable graph contains custom nodes {custom}")
    _ensure_custom_value_info(model)
    _tidy(model, spec, flavour)
    try:
        onnx.checker.check_model(model)
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise ExportError(f"the exported ONNX graph does not validate: {err}") from err
    with atomic_output(out_path) as tmp:
        onnx.save_model(model, str(tmp))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return Exported(out_path, metadata={"onnx_opset": int(opset), "onnx_flavour": flavour, "custom_ops": custom,
                                        "onnx_ir_version": int(model.ir_version)})


def _has_attention(module: torch.nn.Module) -> bool:
    from asl_edge.model import TemporalChannelAttention

    return any(isinstance(m, TemporalChannelAttention) for m in module.modules())
