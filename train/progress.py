"""Progress bars: tqdm when it is installed and wanted, a plain iterator otherwise."""

from __future__ import annotations

from typing import Iterable, TypeVar

T = TypeVar("T")


def progress_bar(items: Iterable[T], enabled: bool = True, **kwargs) -> Iterable[T]:
    """``tqdm(items, **kwargs)`` on stderr when ``enabled`` and tqdm is importable, else ``items``."""
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, dynamic_ncols=True, leave=False, **kwargs)
