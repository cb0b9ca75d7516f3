"""ONNX Runtime implementations of the TensorRT-flavour nodes ``asl_edge::AslTcaAttention`` and
``asl_edge::AslNms1d``, so that an ``onnx-trt`` graph runs end to end without TensorRT.

They are onnxruntime-extensions Python custom ops calling :func:`asl_edge.ops.tca_attention` and
:func:`asl_edge.ops.nms1d` (native kernels when the library is loaded, pure PyTorch otherwise).
onnxruntime-extensions registers Python ops in its own domain (``ai.onnx.contrib``) with one
float32 signature per op type, so :func:`prepare_model` rewrites an in-memory copy of the graph:
custom nodes move to that domain, and the floating inputs and outputs of FP16 nodes are cast to
and from FP32 around them (the plugins accumulate in FP32 too). The file on disk is never changed.

Usage::

    session = inference_session("model_trt.onnx")            # or:
    session = onnxruntime.InferenceSession(prepare_model(onnx.load(path)).SerializeToString(),
                                           session_options())
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
import torch

try:
    import onnxruntime
except ImportError as _err:  # pragma: no cover - depends on the environment
    raise ImportError(f"ONNX Runtime is not installed ({_err}); running ONNX artifacts needs it: "
                      "pip install 'asl-edge[export]'") from _err
try:
    import onnxruntime_extensions
    from onnxruntime_extensions import PyOp, onnx_op
except ImportError as _err:  # pragma: no cover - depends on the environment
    raise ImportError(f"onnxruntime-extensions is not installed ({_err}); the onnx-trt graph's asl_edge nodes "
                      "run in ONNX Runtime through it: pip install onnxruntime-extensions "
                      "(or run the portable `onnx` export, which needs no custom ops)") from _err

from ..ops import nms1d, tca_attention

DOMAIN = "asl_edge"
ORT_DOMAIN = onnxruntime_extensions.default_opset_domain()      # "ai.onnx.contrib"
TCA_OP = "AslTcaAttention"
NMS_OP = "AslNms1d"

_TCA_ATTRS = {"num_heads": PyOp.dt_int64, "window": PyOp.dt_int64, "theta": PyOp.dt_float,
              "channel_scale": PyOp.dt_string, "plugin_version": PyOp.dt_string,
              "plugin_namespace": PyOp.dt_string}
_NMS_ATTRS = {"method": PyOp.dt_string, "iou_threshold": PyOp.dt_float, "sigma": PyOp.dt_float,
              "min_score": PyOp.dt_float, "max_out": PyOp.dt_int64, "multiclass": PyOp.dt_int64,
              "voting_threshold": PyOp.dt_float, "num_classes": PyOp.dt_int64,
              "plugin_version": PyOp.dt_string, "plugin_namespace": PyOp.dt_string}


def _check_plugin(op: str, plugin_version: str, plugin_namespace: str) -> None:
    if plugin_version not in ("", "1") or plugin_namespace not in ("", DOMAIN):
        raise RuntimeError(f"{op}: plugin version {plugin_version!r} / namespace {plugin_namespace!r} is not "
                           f"one this asl-edge implements (1 / {DOMAIN})")


def _attention(q, k, v, mask, num_heads=1, window=1, theta=0.0, channel_scale="time", plugin_version="1",
               plugin_namespace=DOMAIN):
    _check_plugin(TCA_OP, plugin_version, plugin_namespace)
    dtype = q.dtype
    # FP16 nodes compute in FP32 (as the plugin accumulates in FP32); the CPU kernels take FP32
    qt, kt, vt = (torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in (q, k, v))
    out = tca_attention(qt, kt, vt, torch.from_numpy(np.ascontiguousarray(mask, dtype=np.bool_)), int(num_heads),
                        int(window), float(theta), str(channel_scale))
    return out.numpy().astype(dtype, copy=False)


def _nms(segments, scores, labels, method="soft", iou_threshold=0.1, sigma=0.5, min_score=0.001, max_out=200,
         multiclass=1, voting_threshold=0.0, num_classes=1, plugin_version="1", plugin_namespace=DOMAIN):
    _check_plugin(NMS_OP, plugin_version, plugin_namespace)
    dtype = segments.dtype
    segs = torch.from_numpy(np.ascontiguousarray(segments, dtype=np.float32).reshape(-1, 2))
    sc = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32).reshape(-1))
    lb = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64).reshape(-1))
    out_segs, out_scores, out_labels, count = nms1d(segs, sc, lb, str(method), float(iou_threshold), float(sigma),
                                                    float(min_score), int(max_out), bool(multiclass),
                                                    float(voting_threshold), int(num_classes))
    return (out_segs.numpy().astype(dtype, copy=False), out_scores.numpy().astype(dtype, copy=False),
            out_labels.numpy().astype(np.int32), count.numpy().astype(np.int32))


def _register() -> None:
    # the Python custom-op API takes float32 only: FP16 nodes are wrapped in Casts (prepare_model)
    data = PyOp.dt_float
    onnx_op(op_type=TCA_OP, inputs=[data, data, data, PyOp.dt_bool], outputs=[data], attrs=_TCA_ATTRS)(_attention)
    onnx_op(op_type=NMS_OP, inputs=[data, data, PyOp.dt_int32], outputs=[data, data, PyOp.dt_int32, PyOp.dt_int32],
            attrs=_NMS_ATTRS)(_nms)


_register()


def session_options(options: Optional[onnxruntime.SessionOptions] = None) -> onnxruntime.SessionOptions:
    """Session options with the custom-op library (and so the Python ops above) registered; models
    must first go through :func:`prepare_model`."""
    options = options if options is not None else onnxruntime.SessionOptions()
    options.register_custom_ops_library(onnxruntime_extensions.get_library_path())
    return options


def _is_fp16(model, name: str) -> bool:
    import onnx

    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        if vi.name == name:
            return vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    for init in model.graph.initializer:
        if init.name == name:
            return init.data_type == onnx.TensorProto.FLOAT16
    return False


def prepare_model(model):
    """A copy of ``model`` (onnx.ModelProto) whose ``asl_edge`` nodes are in the domain
    onnxruntime-extensions serves, FP16 ones between Casts to and from FP32; the original is
    untouched."""
    import onnx

    model = copy.deepcopy(model)
    graph = model.graph
    nodes = []
    found = False
    for node in graph.node:
        if node.domain != DOMAIN:
            nodes.append(node)
            continue
        if node.op_type not in (TCA_OP, NMS_OP):
            raise ValueError(f"unknown {DOMAIN} node type {node.op_type!r} (known: {TCA_OP}, {NMS_OP})")
        found = True
        node.domain = ORT_DOMAIN
        if not _is_fp16(model, node.input[0]):
            nodes.append(node)
            continue
        # float inputs: q, k, v / segments, scores; float outputs: f / segments, scores
        float_inputs = 3 if node.op_type == TCA_OP else 2
        float_outputs = 1 if node.op_type == TCA_OP else 2
        for i in range(float_inputs):
            name = f"{node.input[i]}__asl_fp32_{node.name or len(nodes)}"
            nodes.append(onnx.helper.make_node("Cast", [node.input[i]], [name], to=onnx.TensorProto.FLOAT))
            node.input[i] = name
        casts = []
        for i in range(float_outputs):
            name = f"{node.output[i]}__asl_fp32"
            casts.append(onnx.helper.make_node("Cast", [name], [node.output[i]], to=onnx.TensorProto.FLOAT16))
            node.output[i] = name
        nodes.append(node)
        nodes.extend(casts)
    if found:
        del graph.node[:]
        graph.node.extend(nodes)
        imports = [o for o in model.opset_import if o.domain != DOMAIN]
        del model.opset_import[:]
        model.opset_import.extend(imports)
        if not any(o.domain == ORT_DOMAIN for o in model.opset_import):
            model.opset_import.add(domain=ORT_DOMAIN, version=1)
    return model


def inference_session(model: Union[str, Path, "object"], providers: Optional[Sequence[str]] = None,
                      options: Optional[onnxruntime.SessionOptions] = None) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session for an onnx-trt graph (a path or an onnx.ModelProto)."""
    import onnx

    proto = onnx.load(str(model)) if isinstance(model, (str, Path)) else model
    providers: List[str] = list(providers) if providers else ["CPUExecutionProvider"]
    return onnxruntime.InferenceSession(prepare_model(proto).SerializeToString(), session_options(options),
                                        providers=providers)


__all__ = ["DOMAIN", "ORT_DOMAIN", "inference_session", "prepare_model", "session_options"]
