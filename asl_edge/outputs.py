"""Writing results: files replaced atomically, and the ActivityNet detection format."""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Union

import asl_edge

from .errors import UserError


# suffixes that name a file, never an output folder
FILE_SUFFIXES = (".json", ".jsonl", ".yaml", ".yml", ".pt", ".pth", ".pt2", ".ts", ".onnx", ".xml", ".engine",
                 ".npy", ".npz", ".png", ".txt", ".csv")


class OutputError(UserError, OSError):
    """An output path that cannot be written, or may not be written without ``--overwrite``; the
    message names the path the user gave."""


@contextlib.contextmanager
def atomic_output(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, for writers that check it); on
    success it replaces ``path``, on failure it is removed, so an existing file is never left
    half-written. An OSError on the temporary file or the replacement is an OutputError naming
    ``path``."""
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.partial{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OutputError:
        raise
    except OSError as err:
        if err.filename is not None and Path(err.filename) not in (tmp, path, *path.parents):
            raise
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from err
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def check_output_file(path: Union[str, Path], inputs: Sequence[Union[str, Path]] = ()) -> Path:
    """``path`` as a file this process can create or replace (its folder may still have to be
    made) and that is none of the command's ``inputs``; OutputError naming it otherwise. For checks
    before the work whose result goes there."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name")
    same = [str(source) for source in inputs if path.exists() and Path(source).exists()
            and os.path.samefile(path, source)]
    if same:
        raise OutputError(f"{path} is the input {same[0]}: writing there would replace it; give another output file")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"cannot write {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: no permission to write in {folder}")
    return path


def claim_output_folder(path: Union[str, Path], own: Sequence[str], overwrite: bool, command: str,
                        overwrite_flag: Optional[str] = "--overwrite") -> Path:
    """Check that ``command`` may write its files into folder ``path`` before it does any work.

    ``own`` names (or glob patterns) the entries the command writes there; its first entry is the
    one every finished or interrupted output of the command holds. A new or empty folder is fine,
    and so is one holding only the command's own output (a re-run replaces it). A folder holding
    anything else (another command's output, a training run, the user's files) is refused unless
    ``overwrite``; the command then replaces its own entries and leaves the others alone (the
    refusal names ``overwrite_flag``, the option that asks for it; None: the command has none). A path
    that is not a folder, or cannot be written, is always refused. Returns ``path``; nothing is created.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        names = ", ".join(name for name in own if "*" not in name)
        raise OutputError(f"{path} is a file; {command} --out is a folder (it writes {names})")
    if not path.exists():
        if path.suffix.lower() in FILE_SUFFIXES:
            raise OutputError(f"{path} looks like a file name, and {command} --out is a folder (it writes "
                              f"{', '.join(name for name in own if '*' not in name)}): give a folder name")
        check_output_file(path / own[0])
        return path
    entries = sorted(entry.name for entry in path.iterdir())
    foreign = [name for name in entries if not any(fnmatch.fnmatch(name, pattern) for pattern in own)]
    if entries and (foreign or own[0] not in entries) and not overwrite:
        shown = ", ".join((foreign or entries)[:5]) + (" ..." if len(foreign or entries) > 5 else "")
        remedy = "choose a new or empty folder" + (
            f", or pass {overwrite_flag} to write {command}'s files into it (other files are left alone)"
            if overwrite_flag else "")
        raise OutputError(f"{path} is not empty and not an earlier {command} output (it holds {shown}): {remedy}")
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write in {path}: no permission")
    return path


def write_json(data, path: Union[str, Path]) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as fd:
        json.dump(data, fd, indent=1)
        fd.write("\n")


def activitynet_results(detections: Dict[str, List[Dict]]) -> Dict:
    """ActivityNet result JSON: ``{"results": {video: [{label, label_id, score, segment}]}}``."""
    return {
        "version": f"asl-edge {asl_edge.__version__}",
        "results": {
            video: [{"label": d["label"], "label_id": d["label_id"], "score": d["score"],
                     "segment": [d["start"], d["end"]]} for d in dets]
            for video, dets in detections.items()
        },
        "external_data": {"used": False, "details": ""},
    }
