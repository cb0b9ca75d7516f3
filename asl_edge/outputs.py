"""Writing results: files replaced atomically, and the ActivityNet detection format."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Dict, Iterator, List, Union

import asl_edge


@contextlib.contextmanager
def atomic_output(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, for writers that check it); on
    success it replaces ``path``, on failure it is removed, so an existing file is never left
    half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.partial{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
