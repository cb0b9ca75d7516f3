"""OpenVINO IR export (``model.xml`` + ``model.bin``) for the CPU, in fp32, bf16 or int8.

The network goes through the portable ONNX graph (standard ops only) into OpenVINO. (The graph that
OpenVINO 2026.4's PyTorch frontend makes of the THUMOS-size network does not compile on its CPU
plugin: "not enough registers" in a fused subgraph.) fp32 and bf16 share the same fp32 IR: bf16 is
how the runtime compiles it (OpenVINO's CPU plugin runs convolutions and matrix products in bf16 on
CPUs that have it, AVX512-BF16 or AMX). int8 quantizes the IR with NNCF post-training quantization,
calibrated on real clip features (:mod:`.calibration`); what NNCF leaves unquantized runs in bf16 too
(measured 0.26x of eager fp32 at B1 T2304 on 2 Zen 4 cores, against 0.32x with it in fp32).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Optional, Tuple

import torch
from torch import Tensor

from asl_edge.config import Config
from asl_edge.outputs import atomic_output

from .calibration import RealFeatures, calibration_inputs
from .onnx_export import export_onnx
from .spec import INPUT_NAMES, ExportError, ExportSpec, Exported


def _require_openvino(precision: str):
    try:
        import openvino
        if precision == "int8":
            import nncf  # noqa: F401
    except ImportError as err:
        raise ExportError(f"the openvino format needs openvino (and nncf for int8) ({err}): "
                          "pip install 'asl-edge[openvino]'") from err
    return openvino


def _quantize(model, samples):
    """NNCF post-training int8 quantization of the OpenVINO model on calibration inputs."""
    import nncf

    dataset = nncf.Dataset([dict(zip(INPUT_NAMES, sample)) for sample in samples])
    try:
        return nncf.quantize(model, dataset, subset_size=len(samples), preset=nncf.QuantizationPreset.MIXED,
                             model_type=nncf.ModelType.TRANSFORMER)
    except Exception as err:  # noqa: BLE001 - NNCF raises many kinds; all mean "cannot quantize as asked"
        raise ExportError(f"NNCF int8 quantization failed: {type(err).__name__}: {err}") from err


def export_openvino(module: torch.nn.Module, example: Tuple[Tensor, Tensor], out_path: Path, spec: ExportSpec,
                    config: Config, calibration: Optional[RealFeatures] = None) -> Exported:
    """Export ``module`` (network outputs only) to an OpenVINO IR at ``out_path`` (``.xml``, weights in
    the ``.bin`` beside it) for ``spec.precision`` fp32, bf16 or int8 (calibrated on ``calibration``,
    else on what ``spec.calibration`` names). The pair replaces an earlier one only once both files are
    written. Raises ExportError when the export cannot be done as asked."""
    ov = _require_openvino(spec.precision)
    if spec.postprocess:
        raise ExportError("the openvino format stops at the network outputs (cls_logits, offsets): NMS runs "
                          "outside it; drop --postprocess")
    if spec.dynamic_batch:
        raise ExportError("the openvino format takes a fixed batch (OpenVINO 2026.4 does not run the converted "
                          "graph at another batch): drop --dynamic-batch; the artifact still runs any batch, in "
                          "calls of its --batch")
    out_path = Path(out_path)
    if spec.precision == "int8":                 # read the calibration data first: a bad --calibration fails fast
        samples, origin = calibration_inputs(spec, config, calibration)
    with tempfile.TemporaryDirectory() as tmp:
        graph = export_onnx(module, example, Path(tmp) / "model.onnx", replace(spec, precision="fp32"),
                            flavour="portable")
        model = ov.convert_model(str(graph.path))
    metadata = {"onnx_opset": graph.metadata["onnx_opset"], "weights_file": out_path.with_suffix(".bin").name,
                "openvino_inference_precision": "f32" if spec.precision == "fp32" else "bf16"}
    if spec.precision == "int8":
        model = _quantize(model, samples)
        metadata["calibration"] = origin
    weights = out_path.with_suffix(".bin")
    with atomic_output(out_path) as tmp_xml, atomic_output(weights) as tmp_bin:
        assert tmp_bin == tmp_xml.with_suffix(".bin")     # where OpenVINO writes the weights of tmp_xml
        ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
    return Exported(out_path, metadata)
