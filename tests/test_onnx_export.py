"""ONNX export (portable and TensorRT flavours), the ONNX Runtime custom ops for the TensorRT-flavour
nodes, and the ONNX Runtime backend."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")          # import onnx/onnxruntime early (DESIGN §6)
onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import torch  # noqa: E402

from asl_edge.config import config_to_dict, load_config  # noqa: E402
from asl_edge.model import build_model, level_lengths, level_strides, padding_unit  # noqa: E402
from asl_edge.ops import native_state  # noqa: E402
from asl_edge.runtime import ArtifactError, load  # noqa: E402
from asl_edge.export.inference import NetworkOutputs, NetworkWithDetections  # noqa: E402
from asl_edge.export.onnx_export import export_onnx  # noqa: E402
from asl_edge.export.spec import ExportError, ExportSpec  # noqa: E402
from helpers import randomize_, small_config, valid_mask  # noqa: E402

WINDOW = 64
BATCH = 2


def _native_reason() -> str:
    state = native_state()
    if not state.loaded:
        return f"native ops not available: {state.reason}"
    return ""


def _trt_reason() -> str:
    """Why the TensorRT-flavour graph cannot be exported and run here, or ''."""
    try:
        import onnxruntime_extensions  # noqa: F401
    except ImportError:
        return "onnxruntime-extensions is not installed (the ORT custom ops need it)"
    return _native_reason()


needs_native = pytest.mark.skipif(bool(_trt_reason()), reason=_trt_reason() or "ok")


def tiny_config():
    """small_config with two encoder levels (exports take seconds per block on 2 cores)."""
    config = small_config()
    config.model.backbone_arch = [1, 1, 1]
    config.model.regression_range = [[0, 4], [4, 10000]]
    return config


@pytest.fixture(scope="module")
def tiny():
    config = tiny_config()
    torch.manual_seed(0)
    return config, randomize_(build_model(config)).eval()


def _example(config, window=WINDOW, batch=BATCH):
    return (torch.zeros(batch, config.dataset.input_dim, window),
            torch.ones(batch, window, dtype=torch.bool))


def _inputs(config, window, lengths, seed=1):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(len(lengths), config.dataset.input_dim, window, generator=g)
    return features, valid_mask(lengths, window)


def _spec(config, fmt, **kw) -> ExportSpec:
    kw.setdefault("window", WINDOW)
    kw.setdefault("batch", BATCH)
    return ExportSpec(format=fmt, length_multiple=padding_unit(config), max_length=kw.pop("max_length", 256), **kw)


def _check_graph(path: Path, spec: ExportSpec):
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    assert [i.name for i in model.graph.input] == ["features", "mask"]
    assert model.graph.input[1].type.tensor_type.elem_type == onnx.TensorProto.BOOL
    assert [o.name for o in model.graph.output] == list(spec.output_names)
    length_dim = model.graph.input[0].type.tensor_type.shape.dim[2]
    if spec.dynamic_length:
        assert length_dim.dim_param == "T"
    else:
        assert length_dim.dim_value == spec.window
    return model


def _write_metadata(path: Path, config, spec: ExportSpec, fmt: str):
    """metadata.json beside the artifact, as Backend expects it."""
    batch = "B" if spec.dynamic_batch else spec.batch
    length = "T" if spec.dynamic_length else spec.window
    if spec.postprocess:
        outputs = [{"name": n, "dtype": d, "shape": s} for n, d, s in (
            ("segments", "float32", [batch, config.test_cfg.max_seg_num, 2]),
            ("scores", "float32", [batch, config.test_cfg.max_seg_num]),
            ("labels", "int64", [batch, config.test_cfg.max_seg_num]), ("count", "int32", [batch]))]
    else:
        outputs = [{"name": "cls_logits", "dtype": "float32", "shape": [batch, "N", config.dataset.num_classes]},
                   {"name": "offsets", "dtype": "float32", "shape": [batch, "N", 2]}]
    meta = {"format": fmt, "artifact": path.name, "config": config_to_dict(config), "window": spec.window,
            "batch": spec.batch, "precision": spec.precision,
            "inputs": [{"name": "features", "dtype": "float32", "shape": [batch, config.dataset.input_dim, length]},
                       {"name": "mask", "dtype": "bool", "shape": [batch, length]}],
            "outputs": outputs, "dynamic_length": spec.dynamic_length, "length_multiple": spec.length_multiple,
            "max_length": spec.max_length, "dynamic_batch": spec.dynamic_batch, "postprocess": spec.postprocess}
    (path.parent / "metadata.json").write_text(json.dumps(meta))


def _assert_close(got, want, tol=1e-4):
    assert got.shape == want.shape and got.dtype == want.dtype
    assert float((got - want).abs().max()) <= tol


def test_portable_static(tiny, tmp_path):
    config, net = tiny
    spec = _spec(config, "onnx")
    out = export_onnx(NetworkOutputs(net), _example(config), tmp_path / "model.onnx", spec, "portable")
    assert out.metadata == {"onnx_opset": 18, "onnx_flavour": "portable", "custom_ops": [],
                            "onnx_ir_version": out.metadata["onnx_ir_version"]}
    model = _check_graph(out.path, spec)
    assert all(node.domain in ("", "ai.onnx") for node in model.graph.node)
    _write_metadata(out.path, config, spec, "onnx")
    backend = load(tmp_path, threads=1)
    features, mask = _inputs(config, WINDOW, [50, WINDOW])
    with torch.no_grad():
        want = net(features, mask)
    for got, ref in zip(backend.run(features, mask), want):
        _assert_close(got, ref)
    # a smaller batch than the artifact's is padded and cut back by the Backend
    logits, _ = backend.run(features[:1], mask[:1])
    _assert_close(logits, want[0][:1])


def _assert_session_matches(session, net, config, windows, padding):
    """The ONNX Runtime session equals eager PyTorch at each window (first row padded)."""
    for window in windows:
        features, mask = _inputs(config, window, [window - padding, window])
        got = session.run(None, {"features": features.numpy(), "mask": mask.numpy()})
        with torch.no_grad():
            want = net(features, mask)
        for g, w in zip(got, want):
            _assert_close(torch.from_numpy(g), w)


def test_portable_dynamic_length(tiny, tmp_path):
    config, net = tiny
    spec = _spec(config, "onnx", dynamic_length=True)
    out = export_onnx(NetworkOutputs(net), _example(config), tmp_path / "model.onnx", spec, "portable")
    _check_graph(out.path, spec)
    session = onnxruntime.InferenceSession(str(out.path), providers=["CPUExecutionProvider"])
    _assert_session_matches(session, net, config, (WINDOW, 12 * spec.length_multiple), padding=5)


@needs_native
def test_trt_dynamic_length_runs_through_custom_ops(tiny, tmp_path):
    from asl_edge.runtime.ort_custom_ops import inference_session

    config, net = tiny
    spec = _spec(config, "onnx-trt", dynamic_length=True)
    out = export_onnx(NetworkOutputs(net), _example(config), tmp_path / "model_trt.onnx", spec, "trt")
    assert out.metadata["onnx_flavour"] == "trt" and out.metadata["custom_ops"] == ["asl_edge::AslTcaAttention"]
    model = _check_graph(out.path, spec)
    nodes = [n for n in model.graph.node if n.domain == "asl_edge"]
    assert len(nodes) == sum(config.model.backbone_arch[1:])     # one per encoder block
    assert {n.op_type for n in nodes} == {"AslTcaAttention"}
    assert any(o.domain == "asl_edge" and o.version == 1 for o in model.opset_import)
    for node in nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["num_heads"] == config.model.n_head and attrs["window"] == config.model.n_mha_win_size
        assert attrs["theta"] in (pytest.approx(config.model.tca.theta), 0.0)
        assert attrs["channel_scale"] == b"time"
        assert attrs["plugin_version"] == b"1" and attrs["plugin_namespace"] == b"asl_edge"
        kinds = {a.name: a.type for a in node.attribute}
        assert kinds["num_heads"] == kinds["window"] == onnx.AttributeProto.INT
        assert kinds["theta"] == onnx.AttributeProto.FLOAT
        assert len(node.input) == 4 and len(node.output) == 1
    session = inference_session(out.path)
    assert onnx.load(str(out.path)).graph.node[0].domain == model.graph.node[0].domain   # file untouched
    _assert_session_matches(session, net, config, (WINDOW, 12 * spec.length_multiple), padding=9)


@needs_native
def test_trt_postprocess_detections_match_eager(tiny, tmp_path):
    config, net = tiny
    spec = _spec(config, "onnx-trt", postprocess=True)
    module = NetworkWithDetections(net, config, WINDOW)
    out = export_onnx(module, _example(config), tmp_path / "model_trt.onnx", spec, "trt")
    assert out.metadata["custom_ops"] == ["asl_edge::AslNms1d", "asl_edge::AslTcaAttention"]
    model = _check_graph(out.path, spec)
    nms = [n for n in model.graph.node if n.op_type == "AslNms1d"]
    assert len(nms) == BATCH and all(n.domain == "asl_edge" for n in nms)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nms[0].attribute}
    assert attrs["method"] == module.method.encode() and attrs["max_out"] == config.test_cfg.max_seg_num
    assert attrs["num_classes"] == config.dataset.num_classes and attrs["multiclass"] in (0, 1)
    assert attrs["plugin_version"] == b"1" and attrs["plugin_namespace"] == b"asl_edge"
    assert set(attrs) == {"method", "iou_threshold", "sigma", "min_score", "max_out", "multiclass",
                          "voting_threshold", "num_classes", "plugin_version", "plugin_namespace"}
    types = {vi.name: vi.type.tensor_type.elem_type for vi in list(model.graph.value_info) + list(model.graph.output)}
    assert types[nms[0].input[2]] == onnx.TensorProto.INT32
    assert [types[o] for o in nms[0].output] == [onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT,
                                                 onnx.TensorProto.INT32, onnx.TensorProto.INT32]
    _write_metadata(out.path, config, spec, "onnx-trt")
    backend = load(out.path, threads=1)
    features, mask = _inputs(config, WINDOW, [50, WINDOW], seed=3)
    with torch.no_grad():
        want = module(features, mask)
    got = backend.run(features, mask)
    segments, scores, labels, count = got
    assert labels.dtype == torch.int64 and count.dtype == torch.int32 and count.shape == (BATCH,)
    assert torch.equal(count, want[3]) and int(count.min()) > 0
    assert torch.equal(labels, want[2])
    assert float((scores - want[1]).abs().max()) <= 1e-5
    assert float((segments - want[0]).abs().max()) <= 1e-4
    with pytest.raises(ArtifactError, match="detections"):
        backend.network(features, mask)


@pytest.mark.parametrize("flavour", ["portable", "trt"])
def test_fp16(tiny, tmp_path, flavour):
    if flavour == "trt" and _trt_reason():
        pytest.skip(_trt_reason())
    config, net = tiny
    fmt = "onnx-trt" if flavour == "trt" else "onnx"
    # the portable case also checks a dynamic batch
    spec = _spec(config, fmt, precision="fp16", dynamic_batch=flavour == "portable")
    out = export_onnx(NetworkOutputs(net), _example(config), tmp_path / "model.onnx", spec, flavour)
    model = _check_graph(out.path, spec)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 for o in model.graph.output)
    assert all(i.data_type != onnx.TensorProto.FLOAT or i.dims == [] for i in model.graph.initializer)
    if spec.dynamic_batch:
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    _write_metadata(out.path, config, spec, fmt)
    backend = load(tmp_path, threads=1)
    rows = 3 if spec.dynamic_batch else BATCH
    features, mask = _inputs(config, WINDOW, [40, WINDOW, 57][:rows])
    with torch.no_grad():
        want = net(features, mask)
    for got, ref in zip(backend.run(features, mask), want):
        assert got.dtype == torch.float32            # Backend.run hands back float32
        assert float((got - ref).abs().max()) <= 2e-2 * max(1.0, float(ref.abs().max()))


def test_portable_refuses_postprocess(tiny, tmp_path):
    config, net = tiny
    spec = _spec(config, "onnx", postprocess=True)
    with pytest.raises(ExportError, match="NMS runs outside"):
        export_onnx(NetworkWithDetections(net, config, WINDOW), _example(config), tmp_path / "m.onnx", spec,
                    "portable")
    with pytest.raises(ExportError, match="flavour"):
        export_onnx(NetworkOutputs(net), _example(config), tmp_path / "m.onnx", _spec(config, "onnx"), "tflite")


def test_trt_without_native_ops_is_a_clear_error(tiny, tmp_path, monkeypatch):
    import asl_edge.ops.library as library

    config, net = tiny
    state = library.NativeState(path=Path("/nowhere/libasl_edge_torch_ops.so"), reason="not built here")
    monkeypatch.setattr(library, "_state", state)
    with pytest.raises(ExportError, match="build-ext"):
        export_onnx(NetworkOutputs(net), _example(config), tmp_path / "m.onnx", _spec(config, "onnx-trt"), "trt")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("fmt", ["onnx", "onnx-trt"])
def test_corrupt_onnx_is_an_artifact_error(tmp_path, fmt):
    config = tiny_config()
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07this is not a protobuf model\xff\xfe")
    _write_metadata(path, config, _spec(config, fmt), fmt)
    with pytest.raises(ArtifactError, match="model.onnx"):
        load(tmp_path)


@needs_native
def test_custom_ops_rewrite_only_a_copy(tmp_path):
    from asl_edge.runtime.ort_custom_ops import ORT_DOMAIN, prepare_model

    node = onnx.helper.make_node("AslTcaAttention", ["q", "k", "v", "m"], ["f"], domain="asl_edge", num_heads=1,
                                 window=3, theta=0.5, channel_scale="time", plugin_version="1",
                                 plugin_namespace="asl_edge")
    graph = onnx.helper.make_graph(
        [node], "g",
        [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1, 4, 6]) for n in "qkv"]
        + [onnx.helper.make_tensor_value_info("m", onnx.TensorProto.BOOL, [1, 6])],
        [onnx.helper.make_tensor_value_info("f", onnx.TensorProto.FLOAT, [1, 4, 6])])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18),
                                                         onnx.helper.make_opsetid("asl_edge", 1)])
    prepared = prepare_model(model)
    assert model.graph.node[0].domain == "asl_edge"
    assert prepared.graph.node[0].domain == ORT_DOMAIN
    from asl_edge.runtime.ort_custom_ops import inference_session

    session = inference_session(model)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 4, 6, generator=g) for _ in range(3))
    m = valid_mask([5], 6)
    (got,) = session.run(None, {"q": q.numpy(), "k": k.numpy(), "v": v.numpy(), "m": m.numpy()})
    from asl_edge.ops import tca_attention_reference

    _assert_close(torch.from_numpy(got), tca_attention_reference(q, k, v, m, 1, 3, 0.5, "time"), 1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("flavour", ["portable", "trt"])
def test_thumos_size(tmp_path, flavour):
    if flavour == "trt" and _trt_reason():
        pytest.skip(_trt_reason())
    config = load_config("thumos_i3d")
    net = build_model(config).eval()
    window = config.dataset.max_seq_len                     # 2304
    spec = ExportSpec(format="onnx" if flavour == "portable" else "onnx-trt", window=window, batch=1)
    start = time.perf_counter()
    out = export_onnx(NetworkOutputs(net), _example(config, window, 1), tmp_path / "model.onnx", spec, flavour)
    seconds = time.perf_counter() - start
    _check_graph(out.path, spec)
    size = out.path.stat().st_size
    weights = sum(p.numel() for p in net.parameters()) * 4
    assert weights * 0.95 < size < weights * 1.2, (size, weights)
    features, mask = _inputs(config, window, [2000])
    _write_metadata(out.path, config, spec, spec.format)
    got = load(tmp_path).run(features, mask)
    with torch.no_grad():
        want = net(features, mask)
    points = sum(level_lengths(window, len(level_strides(config)), config.model.scale_factor,
                               config.model.fpn_start_level))
    assert got[0].shape == (1, points, config.dataset.num_classes)
    for g, w in zip(got, want):
        _assert_close(g, w)
    print(f"THUMOS {flavour} ONNX: {size / 2**20:.1f} MiB, exported in {seconds:.1f} s")
