"""The ``engine`` format (export/tensorrt_engine.py) and the TensorRT backend
(asl_edge/runtime/tensorrt_backend.py).

TensorRT cannot be installed on the development machines: these tests cover what runs without
it (profile shapes, trtexec command lines, version and precision decisions, ONNX checks, the
errors where TensorRT or CUDA is missing) and drive build_engine's control flow through a stand-in
``tensorrt`` module that records the calls, for both TensorRT generations. The stand-in checks
the order and arguments of the calls, not TensorRT's behaviour. The last tests need real
TensorRT, a CUDA GPU and the plugin library, and are skipped otherwise.
"""

from __future__ import annotations

import ctypes.util
import json
import shlex
import sys
import types
from pathlib import Path

import pytest
import torch

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from asl_edge.export import tensorrt_engine as te  # noqa: E402
from asl_edge.export.spec import ExportError, ExportSpec  # noqa: E402
from asl_edge.runtime import ArtifactError, load  # noqa: E402
from asl_edge.runtime import tensorrt_backend as tb  # noqa: E402

C = 32


# --- a small onnx-trt graph -------------------------------------------------------------------

def write_graph(path: Path, batch="B", length="T", channels=C, fp16=False, op="AslTcaAttention",
                namespace="asl_edge", version="1", inputs=("features", "mask")) -> Path:
    """features (B, C, T), mask (B, T) -> AslTcaAttention(q=k=v=features) as cls_logits, and the
    features again as offsets (a stand-in for the network's contract)."""
    data = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    graph_inputs = [helper.make_tensor_value_info(inputs[0], data, [batch, channels, length]),
                    helper.make_tensor_value_info(inputs[1], TensorProto.BOOL, [batch, length])]
    attrs = {"num_heads": 2, "window": 5, "theta": 0.2, "channel_scale": "time"}
    if namespace is not None:
        attrs["plugin_namespace"] = namespace
    if version is not None:
        attrs["plugin_version"] = version
    nodes = [helper.make_node(op, [inputs[0]] * 3 + [inputs[1]], ["cls_logits"], name="tca0", domain="asl_edge",
                              **attrs),
             helper.make_node("Identity", [inputs[0]], ["offsets"], name="id0")]
    outputs = [helper.make_tensor_value_info("cls_logits", data, [batch, channels, length]),
               helper.make_tensor_value_info("offsets", data, [batch, channels, length])]
    model = helper.make_model(helper.make_graph(nodes, "tiny", graph_inputs, outputs),
                              opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("asl_edge", 1)])
    onnx.save(model, str(path))
    return path


def dynamic_spec(**kw) -> ExportSpec:
    base = dict(format="engine", window=256, batch=2, dynamic_length=True, dynamic_batch=True, length_multiple=32,
                max_length=1000)
    base.update(kw)
    return ExportSpec(**base)


def static_spec(**kw) -> ExportSpec:
    base = dict(format="engine", window=128, batch=1)
    base.update(kw)
    return ExportSpec(**base)


@pytest.fixture
def no_tensorrt(monkeypatch):
    """``import tensorrt`` fails, whether or not TensorRT is installed."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


# --- pure logic -------------------------------------------------------------------------------

def test_profile_static():
    p = te.profile_shapes(static_spec(batch=4), C)
    assert p["features"] == {"min": (4, C, 128), "opt": (4, C, 128), "max": (4, C, 128)}
    assert p["mask"] == {"min": (4, 128), "opt": (4, 128), "max": (4, 128)}


def test_profile_dynamic():
    p = te.profile_shapes(dynamic_spec(), C)
    top = te.DYNAMIC_MAX_BATCH
    assert p["features"] == {"min": (1, C, 32), "opt": (2, C, 256), "max": (top, C, 992)}  # 1000 rounded down
    assert p["mask"] == {"min": (1, 32), "opt": (2, 256), "max": (top, 992)}
    only_length = te.profile_shapes(dynamic_spec(dynamic_batch=False), C)
    assert {s[0] for s in only_length["features"].values()} == {2}
    assert te.profile_metadata(p)["mask"]["max"] == [top, 992]


@pytest.mark.parametrize("kw, words", [
    (dict(window=250), "multiple of 32"),
    (dict(window=2048), "max_length 1000"),
    (dict(postprocess=True), "static length"),
])
def test_profile_rejects_bad_dynamic_specs(kw, words):
    with pytest.raises(ExportError, match=words):
        te.profile_shapes(dynamic_spec(**kw), C)


def test_shapes_argument_and_placeholder():
    p = te.profile_shapes(static_spec(batch=1, window=64), 1)
    assert te.shapes_argument(p, "min") == "features:1x1x64,mask:1x64"
    assert te.shapes_argument(p, "max", "<C>") == "features:1x<C>x64,mask:1x64"


def test_trtexec_command_static_and_dynamic():
    lib = Path("/opt/asl edge/libasl_edge_trt_plugins.so")
    cmd = te.trtexec_command("m.onnx", "m.engine", static_spec(), 2048, lib)
    args = shlex.split(cmd)
    assert args[:3] == ["trtexec", "--onnx=m.onnx", "--saveEngine=m.engine"]
    assert f"--staticPlugins={lib}" in args                       # quoted, so the space survives
    for which in ("min", "opt", "max"):
        assert f"--{which}Shapes=features:1x2048x128,mask:1x128" in args
    assert "--fp16" not in args and "--stronglyTyped" not in args

    args = shlex.split(te.trtexec_command("m.onnx", "m.engine", dynamic_spec(precision="fp16"), 2048, lib,
                                          timing_cache="t.cache", workspace_mb=2048))
    assert "--minShapes=features:1x2048x32,mask:1x32" in args
    assert "--optShapes=features:2x2048x256,mask:2x256" in args
    assert f"--maxShapes=features:{te.DYNAMIC_MAX_BATCH}x2048x992,mask:{te.DYNAMIC_MAX_BATCH}x992" in args
    assert "--fp16" in args and "--timingCacheFile=t.cache" in args and "--memPoolSize=workspace:2048M" in args

    eleven = shlex.split(te.trtexec_command("m.onnx", "m.engine", dynamic_spec(precision="fp16"), 2048, lib,
                                            tensorrt_major=11))
    assert "--stronglyTyped" in eleven and "--fp16" not in eleven


@pytest.mark.parametrize("major, precision, graph, strong, flag", [
    (10, "fp32", "fp32", False, False),
    (10, "fp16", "fp32", False, True),
    (10, "fp16", "fp16", False, True),
    (10, "fp16", None, False, True),
    (11, "fp32", "fp32", True, False),
    (11, "fp16", "fp16", True, False),
    (12, "fp16", "fp16", True, False),
])
def test_precision_plan(major, precision, graph, strong, flag):
    assert te.precision_plan(major, precision, graph) == te.PrecisionPlan(strongly_typed=strong, fp16_flag=flag)


def test_precision_plan_errors():
    with pytest.raises(ExportError, match="--precision fp16"):
        te.precision_plan(11, "fp16", "fp32")
    with pytest.raises(ExportError, match="--precision fp16"):
        te.precision_plan(11, "fp16", None)
    with pytest.raises(ExportError, match="FP16 tensors but an fp32"):
        te.precision_plan(10, "fp32", "fp16")
    with pytest.raises(ExportError, match="fp32 or fp16"):
        te.precision_plan(10, "int8", "fp32")


def test_versions():
    assert tb.parse_version("10.3.0.30") == (10, 3, 0)
    assert tb.parse_version("11.1") == (11, 1, 0)
    assert tb.version_support("10.3.0") == (10, "")
    assert tb.version_support("11.1.0.post1") == (11, "")
    major, warning = tb.version_support("12.0.0")
    assert major == 12 and "newer" in warning
    with pytest.raises(ValueError, match="too old"):
        tb.version_support("8.6.1")
    with pytest.raises(ValueError):
        tb.parse_version("unknown")


def test_torch_dtype_by_member_name():
    def member(name):
        return types.SimpleNamespace(name=name)
    assert tb.torch_dtype(member("HALF")) is torch.float16
    assert tb.torch_dtype(member("BOOL")) is torch.bool
    assert tb.torch_dtype(member("INT64")) is torch.int64
    with pytest.raises(TypeError, match="FP8"):
        tb.torch_dtype(member("FP8"))


def test_describe_onnx(tmp_path):
    info = te.inspect_onnx(write_graph(tmp_path / "g.onnx"))
    assert info.channels == C and info.precision == "fp32" and info.plugin_ops == ["AslTcaAttention"]
    assert info.problems == [] and info.input_dims["features"] == [None, C, None]
    assert te.inspect_onnx(write_graph(tmp_path / "h.onnx", fp16=True)).precision == "fp16"


@pytest.mark.parametrize("kw, words", [
    (dict(namespace=None), "plugin_namespace is None"),
    (dict(namespace=""), "plugin_namespace is ''"),
    (dict(version="2"), "plugin_version is '2'"),
    (dict(op="tca_attention"), "op type"),
    (dict(inputs=("x", "m")), "graph inputs"),
])
def test_build_engine_rejects_graphs_tensorrt_would_misread(tmp_path, no_tensorrt, kw, words):
    path = write_graph(tmp_path / "g.onnx", **kw)
    with pytest.raises(ExportError, match=words):
        te.build_engine(path, tmp_path / "m.engine", dynamic_spec(), None)


def test_build_engine_rejects_static_graph_for_other_shapes(tmp_path, no_tensorrt):
    path = write_graph(tmp_path / "g.onnx", batch=1, length=128)
    with pytest.raises(ExportError, match="fixed to 128"):
        te.build_engine(path, tmp_path / "m.engine", dynamic_spec(), None)
    with pytest.raises(ExportError, match="not found"):
        te.build_engine(tmp_path / "missing.onnx", tmp_path / "m.engine", static_spec(), None)


# --- without TensorRT -------------------------------------------------------------------------

def _commands(message: str):
    return [shlex.split(line.strip()) for line in message.splitlines() if "trtexec" in line and "--onnx=" in line]


def test_build_engine_without_tensorrt_static(tmp_path, no_tensorrt):
    onnx_path = write_graph(tmp_path / "model.onnx", batch=1, length=128)
    lib = tmp_path / "libasl_edge_trt_plugins.so"
    with pytest.raises(ExportError) as err:
        te.build_engine(onnx_path, tmp_path / "model.engine", static_spec(), lib, timing_cache=tmp_path / "t.cache")
    message = str(err.value)
    assert "TensorRT is not installed" in message and f"has been written: {onnx_path}" in message
    commands = _commands(message)
    assert len(commands) == 3                                  # desktop 10.x, Jetson 10.3, 11.x
    assert commands[1][0] == te.JETSON_TRTEXEC
    for args in commands:
        assert f"--onnx={onnx_path}" in args and f"--saveEngine={tmp_path / 'model.engine'}" in args
        assert f"--staticPlugins={lib}" in args
        assert "--minShapes=features:1x32x128,mask:1x128" in args
        assert "--maxShapes=features:1x32x128,mask:1x128" in args
        assert f"--timingCacheFile={tmp_path / 't.cache'}" in args
        assert "--fp16" not in args
    assert not (tmp_path / "model.engine").exists()


def test_build_engine_without_tensorrt_dynamic_fp16(tmp_path, no_tensorrt):
    onnx_path = write_graph(tmp_path / "model.onnx")
    with pytest.raises(ExportError) as err:
        te.build_engine(onnx_path, tmp_path / "model.engine", dynamic_spec(precision="fp16"), None)
    message = str(err.value)
    desktop, jetson, eleven = _commands(message)
    default_lib = tb.default_plugin_library()
    for args in (desktop, jetson, eleven):
        assert f"--staticPlugins={default_lib}" in args
        assert "--minShapes=features:1x32x32,mask:1x32" in args
        assert "--optShapes=features:2x32x256,mask:2x256" in args
        assert f"--maxShapes=features:{te.DYNAMIC_MAX_BATCH}x32x992,mask:{te.DYNAMIC_MAX_BATCH}x992" in args
    assert "--fp16" in desktop and "--fp16" in jetson
    assert "--stronglyTyped" in eleven and "--fp16" not in eleven
    assert "this graph is FP32: export the onnx-trt graph with --precision fp16" in message
    assert "runs here in ONNX Runtime" not in message
    (tmp_path / "metadata.json").write_text("{}")     # the exporter writes the onnx-trt metadata first
    with pytest.raises(ExportError, match="runs here in ONNX Runtime"):
        te.build_engine(onnx_path, tmp_path / "model.engine", dynamic_spec(precision="fp16"), None)


def test_backend_without_tensorrt(tmp_path, no_tensorrt):
    with pytest.raises(ArtifactError) as err:
        tb.TensorRTBackend({"format": "engine"}, tmp_path / "model.engine", device="cuda")
    assert isinstance(err.value, tb.TensorRTUnavailable)
    message = str(err.value)
    assert "TensorRT is not installed" in message and "onnx-trt" in message and "ONNX Runtime" in message


def test_load_engine_folder_without_tensorrt(tmp_path, no_tensorrt):
    (tmp_path / "model.engine").write_bytes(b"not an engine")
    meta = {"format": "engine", "artifact": "model.engine", "config": {}, "window": 128, "batch": 1,
            "precision": "fp32", "inputs": [], "outputs": []}
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(tb.TensorRTUnavailable, match="TensorRT is not installed"):
        load(tmp_path, device="cuda")


# --- a stand-in tensorrt module: build_engine's control flow per generation ------------------

class _Enum:
    def __init__(self, name, value):
        self.name, self.value = name, value

    def __int__(self):
        return self.value

    def __repr__(self):
        return f"<{self.name}>"


class FakeTensorRT(types.ModuleType):
    """Just the part of the tensorrt module build_engine uses, recording what it is asked."""

    def __init__(self, version="10.3.0", registered=True, register_on_load_library=False):
        super().__init__("tensorrt")
        self.__version__ = version
        self.calls = []
        self.creators = set(tb.PLUGINS) if registered else set()
        self.register_on_load_library = register_on_load_library
        self.float32, self.float16, self.bool = _Enum("FLOAT", 0), _Enum("HALF", 1), _Enum("BOOL", 9)
        fake = self

        class Severity:
            INTERNAL_ERROR, ERROR, WARNING, INFO = (_Enum(n, i) for i, n in
                                                    enumerate(("INTERNAL_ERROR", "ERROR", "WARNING", "INFO")))

        class ILogger:
            pass
        ILogger.Severity = Severity
        self.ILogger = ILogger
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
        flags = {"STRONGLY_TYPED": 1} if tb.parse_version(version)[0] >= 11 else {"FP16": "FP16"}
        self.BuilderFlag = types.SimpleNamespace(**{k: v for k, v in flags.items() if k == "FP16"})

        class Registry:
            def get_creator(self, name, version, namespace):
                return object() if (name, version, namespace) in fake.creators else None

            def load_library(self, path):
                fake.calls.append(("load_library", path))
                if fake.register_on_load_library:
                    fake.creators |= set(tb.PLUGINS)
                return object()
        self._registry = Registry()

        class Tensor:
            def __init__(self, name, shape, dtype):
                self.name, self.shape, self.dtype = name, shape, dtype

        class Network:
            def __init__(self):
                self.inputs = []
                self.num_layers = 0

            @property
            def num_inputs(self):
                return len(self.inputs)

            def get_input(self, i):
                return self.inputs[i]

        class Parser:
            num_errors = 0

            def __init__(self, network, logger):
                self.network = network

            def parse_from_file(self, path):
                fake.calls.append(("parse_from_file", path))
                model = onnx.load(path)
                types_ = {TensorProto.FLOAT: fake.float32, TensorProto.FLOAT16: fake.float16,
                          TensorProto.BOOL: fake.bool}
                for value in model.graph.input:
                    t = value.type.tensor_type
                    shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
                    self.network.inputs.append(Tensor(value.name, shape, types_[t.elem_type]))
                return True

        class Profile:
            def __init__(self):
                self.shapes = {}

            def set_shape(self, name, lo, opt, hi):
                self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

        class Cache:
            def __init__(self, data):
                self.data = bytes(data)

            def serialize(self):
                return self.data + b"+tuned"

        class Config:
            def __init__(self):
                self.flags, self.profiles, self.pool, self.cache = [], [], {}, None

            def set_memory_pool_limit(self, pool, size):
                self.pool[pool] = size

            def set_flag(self, flag):
                self.flags.append(flag)

            def add_optimization_profile(self, profile):
                self.profiles.append(profile)

            def create_timing_cache(self, data):
                return Cache(data)

            def set_timing_cache(self, cache, ignore_mismatch):
                self.cache = cache
                return True

            def get_timing_cache(self):
                return self.cache

        class Builder:
            platform_has_fast_fp16 = True

            def __init__(self, logger):
                fake.calls.append(("Builder", fake.creators >= set(tb.PLUGINS)))  # plugins registered first?

            def create_network(self, flags=0):
                fake.calls.append(("create_network", flags))
                fake.network = Network()
                return fake.network

            def create_builder_config(self):
                fake.config = Config()
                return fake.config

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                fake.calls.append(("build", list(config.flags)))
                return b"ENGINE"

        self.Builder, self.OnnxParser = Builder, Parser

    def get_plugin_registry(self):
        return self._registry


def _install(monkeypatch, fake):
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(te, "_make_logger", lambda trt: types.SimpleNamespace(errors=[]))
    return fake


def _plugin_file(tmp_path):
    lib = tmp_path / "libasl_edge_trt_plugins.so"
    lib.write_bytes(b"")      # the stand-in registry has the creators already: never dlopened
    return lib


def test_build_engine_tensorrt10_fp16_weak_typing(tmp_path, monkeypatch):
    fake = _install(monkeypatch, FakeTensorRT("10.3.0.30"))
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"old")
    out = tmp_path / "sub" / "model.engine"
    exported = te.build_engine(write_graph(tmp_path / "g.onnx"), out, dynamic_spec(precision="fp16"),
                               _plugin_file(tmp_path), timing_cache=cache, workspace_mb=512)
    assert out.read_bytes() == b"ENGINE" and exported.path == out
    assert cache.read_bytes() == b"old+tuned"
    assert ("Builder", True) in fake.calls and ("create_network", 0) in fake.calls
    assert ("build", ["FP16"]) in fake.calls
    assert fake.config.pool == {"WORKSPACE": 512 << 20}
    (profile,) = fake.config.profiles
    assert profile.shapes["features"] == ((1, C, 32), (2, C, 256), (te.DYNAMIC_MAX_BATCH, C, 992))
    meta = exported.metadata
    assert meta["tensorrt"] == "10.3.0.30" and meta["plugin_library"] == "libasl_edge_trt_plugins.so"
    assert meta["profile"]["mask"] == {"min": [1, 32], "opt": [2, 256], "max": [te.DYNAMIC_MAX_BATCH, 992]}
    assert meta["tensorrt_build"]["typing"] == "weak" and meta["tensorrt_build"]["fp16_flag"] is True
    assert not list(out.parent.glob(".*.tmp"))


def test_build_engine_tensorrt11_strong_typing(tmp_path, monkeypatch):
    fake = _install(monkeypatch, FakeTensorRT("11.1.0"))
    lib = _plugin_file(tmp_path)
    with pytest.raises(ExportError, match="--precision fp16"):     # FP32 graph, fp16 asked
        te.build_engine(write_graph(tmp_path / "g.onnx"), tmp_path / "a.engine", dynamic_spec(precision="fp16"), lib)
    exported = te.build_engine(write_graph(tmp_path / "h.onnx", fp16=True), tmp_path / "b.engine",
                               dynamic_spec(precision="fp16"), lib)
    assert ("build", []) in fake.calls                            # no FP16 flag: the graph's types decide
    assert exported.metadata["tensorrt_build"]["typing"] == "strong"


def test_build_engine_static_graph_needs_no_profile(tmp_path, monkeypatch):
    fake = _install(monkeypatch, FakeTensorRT("10.8.0"))
    te.build_engine(write_graph(tmp_path / "g.onnx", batch=1, length=128), tmp_path / "m.engine", static_spec(),
                    _plugin_file(tmp_path))
    assert fake.config.profiles == [] and fake.config.flags == []


def test_build_engine_version_checks(tmp_path, monkeypatch):
    lib = _plugin_file(tmp_path)
    _install(monkeypatch, FakeTensorRT("8.6.1"))
    with pytest.raises(ExportError, match="too old"):
        te.build_engine(write_graph(tmp_path / "g.onnx"), tmp_path / "m.engine", dynamic_spec(), lib)
    _install(monkeypatch, FakeTensorRT("12.0.0"))
    with pytest.warns(RuntimeWarning, match="newer"):
        te.build_engine(write_graph(tmp_path / "g.onnx"), tmp_path / "m.engine", dynamic_spec(), lib)


def test_build_engine_missing_plugin_library(tmp_path, monkeypatch):
    _install(monkeypatch, FakeTensorRT("10.3.0", registered=False))
    with pytest.raises(ExportError, match="build-ext --cuda --tensorrt"):
        te.build_engine(write_graph(tmp_path / "g.onnx"), tmp_path / "m.engine", dynamic_spec(),
                        tmp_path / "nowhere.so")


def _some_shared_library():
    name = ctypes.util.find_library("m")
    for folder in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
                   "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"):
        if name and (Path(folder) / name).is_file():
            return Path(folder) / name
    pytest.skip("no libm found to stand in for the plugin library")


def test_plugin_loading_falls_back_to_load_library(monkeypatch):
    lib = _some_shared_library()   # loads, registers nothing: as a library built without static registration
    fake = FakeTensorRT("10.3.0", registered=False, register_on_load_library=True)
    assert tb.load_plugin_library(fake, lib) == "IPluginRegistry.load_library (getCreators)"
    assert ("load_library", str(lib)) in fake.calls
    assert tb.load_plugin_library(fake, lib) == "already registered"

    nothing = FakeTensorRT("10.3.0", registered=False)
    with pytest.raises(tb.PluginLibraryError, match="asl_edge::AslTcaAttention v1"):
        tb.load_plugin_library(nothing, lib)


def test_backend_needs_cuda_device(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT("10.3.0"))
    with pytest.raises(ArtifactError, match="CUDA device"):
        tb.TensorRTBackend({"format": "engine"}, tmp_path / "model.engine", device="cpu")


# --- real TensorRT ----------------------------------------------------------------------------

def _real_tensorrt_reason() -> str:
    if sys.modules.get("tensorrt", False) is None:
        return "tensorrt import blocked"
    if tb.import_tensorrt() is None:
        return f"TensorRT is not installed ({tb.tensorrt_import_error()})"
    if not torch.cuda.is_available():
        return "no CUDA device"
    if not tb.default_plugin_library().is_file():
        return f"{tb.default_plugin_library()} not built (asl-edge build-ext --cuda --tensorrt DIR)"
    return ""


needs_tensorrt = pytest.mark.skipif(bool(_real_tensorrt_reason()), reason=_real_tensorrt_reason() or "ok")


def _engine_metadata(exported, spec):
    from asl_edge.config import config_to_dict
    from helpers import small_config
    shape = ["B" if spec.dynamic_batch else spec.batch, C, "T" if spec.dynamic_length else spec.window]
    return {"format": "engine", "artifact": exported.path.name, "config": config_to_dict(small_config()),
            "window": spec.window, "batch": spec.batch, "precision": spec.precision,
            "dynamic_length": spec.dynamic_length, "dynamic_batch": spec.dynamic_batch,
            "length_multiple": spec.length_multiple, "max_length": spec.max_length,
            "inputs": [{"name": "features", "shape": shape}, {"name": "mask", "shape": shape[::2]}],
            "outputs": [{"name": "cls_logits"}, {"name": "offsets"}], **exported.metadata}


@needs_tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_real_engine_build_and_run(tmp_path, precision):
    from asl_edge.ops import tca_attention_reference
    trt = tb.import_tensorrt()
    major = tb.parse_version(trt.__version__)[0]
    spec = dynamic_spec(precision=precision)
    graph = write_graph(tmp_path / "g.onnx", fp16=precision == "fp16" and major >= 11)
    exported = te.build_engine(graph, tmp_path / "model.engine", spec, None, timing_cache=tmp_path / "t.cache")
    assert exported.path.stat().st_size > 0 and (tmp_path / "t.cache").stat().st_size > 0
    (tmp_path / "metadata.json").write_text(json.dumps(_engine_metadata(exported, spec)))
    backend = load(tmp_path, device="cuda")
    g = torch.Generator().manual_seed(0)
    for batch, length in ((2, 256), (1, 96), (3, 992)):
        features = torch.randn(batch, C, length, generator=g)
        mask = torch.arange(length)[None] < torch.randint(length // 2, length + 1, (batch, 1), generator=g)
        logits, offsets = backend.run(features, mask)
        want = tca_attention_reference(features, features, features, mask, 2, 5, 0.2, "time")
        tol = 1e-4 if precision == "fp32" else 3e-2
        assert torch.allclose(logits.cpu(), want, atol=tol, rtol=tol), (batch, length)
        assert torch.allclose(offsets.cpu(), features, atol=tol, rtol=tol)
    with pytest.raises(ValueError):
        backend.run(torch.zeros(1, C, 1024), torch.ones(1, 1024, dtype=torch.bool))   # beyond max_length


@needs_tensorrt
def test_real_engine_corrupt_file(tmp_path):
    spec = static_spec()
    exported = te.build_engine(write_graph(tmp_path / "g.onnx", batch=1, length=128), tmp_path / "model.engine",
                               spec, None)
    (tmp_path / "metadata.json").write_text(json.dumps(_engine_metadata(exported, spec)))
    exported.path.write_bytes(exported.path.read_bytes()[:100])
    with pytest.raises(ArtifactError, match="could not deserialize"):
        load(tmp_path, device="cuda")
