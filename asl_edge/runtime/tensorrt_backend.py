"""The TensorRT backend: runs a serialized engine (``asl-edge export --format engine``).

TensorRT is optional and imported on first use only. Device buffers are torch CUDA tensors
(no pycuda): inputs and outputs are torch tensors whose ``data_ptr()`` is handed to TensorRT
through its name-based I/O API (TensorRT 10+: ``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``), and the engine runs on the current torch CUDA stream, so it is ordered
with the surrounding torch work and the caching allocator.

The engine's plugin layers (``AslTcaAttention``/``AslNms1d``, namespace ``asl_edge``, version 1)
come from ``libasl_edge_trt_plugins.so``, which is loaded before deserialization.

The helpers at the top (version parsing, plugin library loading, dtype mapping) are shared with
the engine builder in ``asl_edge.export.tensorrt_engine``.
"""

from __future__ import annotations

import ctypes
import importlib
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .backend import ArtifactError, Backend

SUPPORTED_MAJORS = (10, 11)
# (name, version, namespace) of the plugins in libasl_edge_trt_plugins.so
PLUGINS: Tuple[Tuple[str, str, str], ...] = (("AslTcaAttention", "1", "asl_edge"), ("AslNms1d", "1", "asl_edge"))
PLUGIN_NAMESPACE = "asl_edge"
PLUGIN_VERSION = "1"

# TensorRT DataType member names -> torch dtypes
_TORCH_DTYPES = {
    "FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32,
    "INT64": torch.int64, "INT8": torch.int8, "UINT8": torch.uint8, "BOOL": torch.bool,
}

_loaded_libraries: Dict[str, object] = {}   # keeps the ctypes handles alive


class TensorRTUnavailable(ArtifactError):
    """TensorRT (or what it needs: a CUDA device, the plugin library) is not available here."""


class PluginLibraryError(RuntimeError):
    """The asl-edge TensorRT plugin library is missing or did not register its plugins."""


# --- TensorRT import and version --------------------------------------------------------------

def import_tensorrt():
    """The ``tensorrt`` module, or None when it cannot be imported (see :func:`tensorrt_import_error`)."""
    try:
        return importlib.import_module("tensorrt")
    except Exception:  # ImportError, or a broken install failing to load libnvinfer (OSError)
        return None


def tensorrt_import_error() -> str:
    """Why ``import tensorrt`` fails here ('' when it works)."""
    try:
        importlib.import_module("tensorrt")
    except Exception as err:  # noqa: BLE001 - reported, not handled
        return f"{type(err).__name__}: {err}"
    return ""


def parse_version(text: str) -> Tuple[int, int, int]:
    """``"10.3.0.30"`` -> (10, 3, 0); ``"11.1"`` -> (11, 1, 0). ValueError when unparseable."""
    match = re.match(r"\s*(\d+)\.(\d+)(?:\.(\d+))?", str(text))
    if not match:
        raise ValueError(f"cannot parse a TensorRT version from {text!r}")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def version_support(text: str) -> Tuple[int, str]:
    """(major, problem) for a TensorRT version string. problem is '' for 10.x and 11.x, a warning
    text for later majors (the public API used here may have changed), and raises ValueError for
    majors before 10, which lack the IPluginV3 plugins and the name-based I/O used here."""
    major = parse_version(text)[0]
    if major < SUPPORTED_MAJORS[0]:
        raise ValueError(f"TensorRT {text} is too old: asl-edge needs TensorRT 10.x (JetPack 6 ships 10.3) "
                         "or 11.x (its plugins are IPluginV3 and its I/O is name-based, both from 10.0)")
    if major not in SUPPORTED_MAJORS:
        return major, (f"TensorRT {text} is newer than the versions asl-edge was written for "
                       f"({', '.join(f'{m}.x' for m in SUPPORTED_MAJORS)}); treating it like 11.x "
                       "(strongly typed networks)")
    return major, ""


def torch_dtype(trt_dtype) -> torch.dtype:
    """The torch dtype of a TensorRT DataType (by member name, so any TensorRT version maps)."""
    name = getattr(trt_dtype, "name", str(trt_dtype).rsplit(".", 1)[-1])
    try:
        return _TORCH_DTYPES[name]
    except KeyError:
        raise TypeError(f"TensorRT data type {name} has no torch equivalent here") from None


# --- plugin library ---------------------------------------------------------------------------

def default_plugin_library() -> Path:
    """Where ``asl-edge build-ext --cuda --tensorrt DIR`` installs the plugin library."""
    from ..ops.library import TRT_PLUGIN_LIBRARY, native_dir
    return native_dir() / TRT_PLUGIN_LIBRARY


def _missing_creators(trt, plugins: Sequence[Tuple[str, str, str]]) -> List[Tuple[str, str, str]]:
    registry = trt.get_plugin_registry()
    missing = []
    for name, version, namespace in plugins:
        if hasattr(registry, "get_creator"):
            creator = registry.get_creator(name, version, namespace)
        else:  # fall back to the creator list
            creator = next((c for c in getattr(registry, "all_creators", [])
                            if (c.name, c.plugin_version, c.plugin_namespace) == (name, version, namespace)), None)
        if creator is None:
            missing.append((name, version, namespace))
    return missing


def load_plugin_library(trt, path: Union[str, Path],
                        plugins: Sequence[Tuple[str, str, str]] = PLUGINS) -> str:
    """Load the plugin library so that ``plugins`` are in TensorRT's global registry; returns how
    they got there.

    The library registers its creators statically when it is loaded (``REGISTER_TENSORRT_PLUGIN``),
    so ``ctypes.CDLL`` is enough, provided ``tensorrt`` was imported first: the library's
    ``libnvinfer`` dependency then resolves (by soname) to the copy the Python module loaded, and
    the creators land in the registry that the builder, the ONNX parser and the runtime use.

    ``IPluginRegistry.load_library`` is tried only when that did not register them: a library
    configured with ``ASL_TENSORRT_STATIC_REGISTRATION=OFF`` (creators offered only through its
    ``getCreators`` entry point), or one whose ``libnvinfer`` resolved to another copy than the
    Python module's (static registration then went to that copy's registry). Calling it
    unconditionally is avoided: after static registration ``getCreators`` offers nothing, and a
    second registration of the same creators would be an error.
    """
    path = Path(path)
    missing = _missing_creators(trt, plugins)
    if not missing:
        return "already registered"
    if not path.is_file():
        raise PluginLibraryError(
            f"TensorRT plugin library {path} not found: build it on this machine with "
            "`asl-edge build-ext --cuda --tensorrt <TensorRT include dir>` (see export/TENSORRT.md) or pass "
            "its path")
    key = str(path.resolve())
    if key not in _loaded_libraries:
        try:
            _loaded_libraries[key] = ctypes.CDLL(key)
        except OSError as err:
            raise PluginLibraryError(
                f"cannot load the TensorRT plugin library {path}: {err}. It must be built against the "
                f"TensorRT that runs here ({getattr(trt, '__version__', '?')}) and find libnvinfer and the "
                "CUDA runtime (LD_LIBRARY_PATH)") from err
    missing = _missing_creators(trt, missing)
    if not missing:
        return "static registration (ctypes.CDLL)"
    registry = trt.get_plugin_registry()
    handle = registry.load_library(str(path)) if hasattr(registry, "load_library") else None
    missing = _missing_creators(trt, missing)
    if not missing and handle is not None:
        _loaded_libraries[key + "#registry"] = handle
        return "IPluginRegistry.load_library (getCreators)"
    names = ", ".join(f"{ns}::{name} v{ver}" for name, ver, ns in missing)
    raise PluginLibraryError(
        f"{path} loaded, but TensorRT {getattr(trt, '__version__', '?')} does not list {names} in its plugin "
        "registry (neither by static registration nor through IPluginRegistry.load_library). Rebuild the "
        "library against this TensorRT's headers (asl-edge build-ext --cuda --tensorrt DIR)")


def find_plugin_library(metadata: Dict, artifact: Path, override: Optional[Union[str, Path]] = None) -> Optional[Path]:
    """The plugin library for an engine: ``override``, else the library named in the metadata
    beside the artifact, else the installed one; None when the engine uses no plugins."""
    if override is not None:
        return Path(override)
    name = metadata.get("plugin_library", "libasl_edge_trt_plugins.so")
    if not name:
        return None
    beside = Path(artifact).parent / Path(name).name
    return beside if beside.is_file() else default_plugin_library()


def missing_tensorrt_message(what: str) -> str:
    reason = tensorrt_import_error() or "not importable"
    return (f"TensorRT is not installed here ({reason}): {what} needs TensorRT 10.x or 11.x and a CUDA GPU. "
            "Without TensorRT the same model runs from its onnx-trt export in ONNX Runtime "
            "(asl-edge export --format onnx-trt, then asl_edge.runtime.load(<that folder>)), or from the "
            "onnx, torchscript, exported or aoti exports. Building and running engines on a desktop GPU or a "
            "Jetson: export/TENSORRT.md")


# --- backend ----------------------------------------------------------------------------------

class TensorRTBackend(Backend):
    """A serialized TensorRT engine on a CUDA device. Option: ``plugin_library`` (path of
    ``libasl_edge_trt_plugins.so``; default: the library named in the metadata beside the engine,
    else the one ``asl-edge build-ext`` installed)."""

    format = "engine"

    def __init__(self, metadata: Dict, artifact: Path, device: Union[str, torch.device] = "cuda",
                 plugin_library: Optional[Union[str, Path]] = None, cuda_graphs: bool = False, **options):
        trt = import_tensorrt()
        if trt is None:
            raise TensorRTUnavailable(missing_tensorrt_message(f"the TensorRT engine {artifact}"))
        if cuda_graphs:
            raise ValueError("cuda_graphs is for the eager and TorchScript backends; a TensorRT engine runs "
                             "without it here")
        if options:
            raise ValueError(f"TensorRTBackend takes no option {', '.join(sorted(options))} "
                             "(it takes plugin_library)")
        device = torch.device(device)
        if device.type != "cuda":
            raise ArtifactError(f"a TensorRT engine runs on a CUDA device, not {device}: "
                                "load it with asl_edge.runtime.load(path, device='cuda')")
        if not torch.cuda.is_available():
            raise TensorRTUnavailable(f"a TensorRT engine needs a CUDA device, and torch sees none "
                                      f"(torch {torch.__version__}, CUDA build: {torch.version.cuda})")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        super().__init__(metadata, artifact, device)
        self.trt = trt
        try:
            major, warning = version_support(trt.__version__)
        except ValueError as err:
            raise TensorRTUnavailable(str(err)) from err
        built = metadata.get("tensorrt")
        if built and parse_version(str(built))[:2] != parse_version(trt.__version__)[:2]:
            raise ArtifactError(f"{artifact} was built with TensorRT {built}; this is TensorRT {trt.__version__}: "
                                "engines are specific to the TensorRT version (and GPU): rebuild it here "
                                "(asl-edge export --format engine, or trtexec; export/TENSORRT.md)")
        self.tensorrt_warning = warning
        library = find_plugin_library(metadata, artifact, plugin_library)
        if library is not None:
            try:
                self.plugin_registration = load_plugin_library(trt, library)
            except PluginLibraryError as err:
                raise TensorRTUnavailable(str(err)) from err
        self.logger = trt.Logger(trt.Logger.WARNING)
        with torch.cuda.device(self.device):
            torch.cuda.init()
            self.runtime = trt.Runtime(self.logger)
            self.engine = self.runtime.deserialize_cuda_engine(Path(artifact).read_bytes())
            if self.engine is None:
                raise ArtifactError(f"TensorRT {trt.__version__} could not deserialize {artifact}: corrupt, built "
                                    "by another TensorRT version or for another GPU, or its plugins are not "
                                    "registered (see the TensorRT log above)")
            self.context = self.engine.create_execution_context()
            if self.context is None:
                raise ArtifactError(f"could not create an execution context for {artifact} (GPU memory?)")
        self.input_names, self.output_names = self._io_names()
        self.tensor_dtypes = {name: torch_dtype(self.engine.get_tensor_dtype(name))
                              for name in self.input_names + self.output_names}

    def _io_names(self) -> Tuple[List[str], List[str]]:
        trt = self.trt
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        expected_in = [spec["name"] for spec in self.metadata["inputs"]]
        if sorted(inputs) != sorted(expected_in):
            raise ArtifactError(f"{self.artifact}: engine inputs {inputs} do not match the metadata's {expected_in}")
        expected_out = [spec["name"] for spec in self.metadata["outputs"]]
        if sorted(outputs) != sorted(expected_out):
            raise ArtifactError(f"{self.artifact}: engine outputs {outputs} do not match the metadata's "
                                f"{expected_out}")
        return expected_in, expected_out

    def _run(self, features: Tensor, mask: Tensor) -> Tuple[Tensor, ...]:
        context = self.context
        keep: List[Tensor] = []
        with torch.cuda.device(self.device):
            stream = torch.cuda.current_stream(self.device)
            for name, tensor in zip(self.input_names, (features, mask)):
                tensor = tensor.to(self.device, self.tensor_dtypes[name]).contiguous()
                if not context.set_input_shape(name, tuple(tensor.shape)):
                    raise ValueError(f"input {name} of shape {tuple(tensor.shape)} is outside the engine's "
                                     f"optimization profile ({self.metadata.get('profile', {}).get(name)})")
                context.set_tensor_address(name, _address(tensor, keep))
            outputs = []
            for name in self.output_names:
                shape = tuple(context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise ArtifactError(f"output {name} has a data-dependent shape {shape}; this backend "
                                        "allocates outputs from the engine's shapes")
                out = torch.empty(shape, dtype=self.tensor_dtypes[name], device=self.device)
                context.set_tensor_address(name, _address(out, keep))
                outputs.append(out)
            if not context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError(f"TensorRT execute_async_v3 failed for {self.artifact} (see the TensorRT log)")
        return tuple(outputs)


def _address(tensor: Tensor, keep: List[Tensor]) -> int:
    """A device address for ``tensor``; empty tensors get a one-element buffer (TensorRT rejects
    null addresses)."""
    if tensor.numel() == 0:
        tensor = torch.empty(1, dtype=tensor.dtype, device=tensor.device)
    keep.append(tensor)
    return tensor.data_ptr()
