"""Progress bars (tqdm when it is installed and wanted, a plain iterator otherwise) and a watch on
iteration times."""

from __future__ import annotations

import statistics
from typing import Iterable, List, Optional, TypeVar

import torch

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


class SlowIterationWatch:
    """Notices iterations far slower than the run's warm-up (another busy process competing for the
    CPU threads torch spins on makes them 100x slower on a small machine).

    The warm-up is the median of iterations 2 to ``1 + warmup`` of the run (the first pays for lazy
    initialisation). :meth:`observe` returns a warning for an iteration slower than ``factor`` times
    the warm-up (and by at least ``min_excess_s``), at most once per ``quiet`` iterations.
    """

    def __init__(self, warmup: int = 3, factor: float = 10.0, min_excess_s: float = 0.5, quiet: int = 100):
        self.warmup, self.factor, self.min_excess_s, self.quiet = warmup, factor, min_excess_s, quiet
        self.seen: List[float] = []
        self.baseline: Optional[float] = None
        self.last_warning: Optional[int] = None

    def observe(self, iteration: int, seconds: float) -> Optional[str]:
        if self.baseline is None:
            self.seen.append(seconds)
            if len(self.seen) == self.warmup + 1:
                self.baseline = statistics.median(self.seen[1:])
            return None
        if seconds < self.factor * self.baseline or seconds - self.baseline < self.min_excess_s:
            return None
        if self.last_warning is not None and iteration - self.last_warning < self.quiet:
            return None
        self.last_warning = iteration
        return (f"iteration {iteration} took {seconds:.1f} s, {seconds / self.baseline:.0f}x the "
                f"{self.baseline:.2f} s of the warm-up: another busy process may be competing for the "
                f"{torch.get_num_threads()} CPU thread(s) torch uses here; OMP_NUM_THREADS=1 (or "
                "OMP_WAIT_POLICY=passive) usually fixes it")
