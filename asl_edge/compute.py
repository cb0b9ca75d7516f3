"""Where the computation runs: the torch device a command asked for, and the CPU threads torch uses.

On a small machine shared with other work, torch's OpenMP threads spin while they wait: with a second
busy process, two threads on two cores can make an iteration 100x slower than one thread. The CLI
therefore sets torch's intra-op threads deliberately (:func:`configure_threads`), and the trainer
warns when an iteration is far slower than its warm-up.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Optional, Union

import torch

from .errors import UserError


class DeviceError(UserError, ValueError):
    """A device name torch does not know, or a GPU this torch cannot use."""


def resolve_device(device: Union[str, torch.device]) -> torch.device:
    """``device`` as a torch.device; DeviceError when torch does not know the name or it names a
    CUDA GPU this torch build or machine does not have."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {str(device)!r}: use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {str(device)!r} asked for, but torch {torch.__version__} sees no CUDA GPU")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceError(f"device {str(device)!r} asked for, but torch sees {torch.cuda.device_count()} CUDA GPU(s)")
    if dev.type not in ("cpu", "cuda"):
        raise DeviceError(f"device {str(device)!r}: asl-edge runs on cpu or cuda")
    return dev


def _cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> Optional[float]:
    """CPUs the process's cgroup may use (its CFS quota over its period), None when unlimited."""
    for quota_file, period_file in ((root / "cpu.max", None),
                                    (root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us")):
        try:
            if period_file is None:
                quota, period = quota_file.read_text().split()[:2]
            else:
                quota, period = quota_file.read_text().strip(), period_file.read_text().strip()
        except (OSError, ValueError):
            continue
        if quota in ("max", "-1"):
            return None
        return int(quota) / int(period)
    return None


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity, bounded by its cgroup's CPU quota."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = _cgroup_cpu_limit()
    if limit is not None:
        cpus = min(cpus, max(1, math.ceil(limit)))
    return max(1, cpus)


def configure_threads(environ: Mapping[str, str] = os.environ) -> str:
    """Set torch's intra-op threads: ``OMP_NUM_THREADS`` when it is set to a positive integer,
    otherwise the CPUs this process may use (:func:`usable_cpus`, not the host's core count),
    shared among the ``LOCAL_WORLD_SIZE`` processes torchrun started on this machine. torchrun
    itself sets ``OMP_NUM_THREADS=1`` for several processes when it was not set; that value is
    taken as unset. Returns a short description of the choice."""
    explicit = environ.get("OMP_NUM_THREADS", "").strip()
    local_processes = int(environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    if explicit.isdigit() and int(explicit) > 0 and not (local_processes > 1 and explicit == "1"):
        threads, why = int(explicit), f"OMP_NUM_THREADS={explicit}"
    elif local_processes > 1:
        threads = max(1, usable_cpus() // local_processes)
        why = f"the {usable_cpus()} CPUs this process may use, shared by torchrun's {local_processes} local processes"
    else:
        threads, why = usable_cpus(), "the CPUs this process may use"
    torch.set_num_threads(threads)
    return f"{threads} intra-op thread{'s' if threads != 1 else ''} ({why})"
