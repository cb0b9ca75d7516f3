"""One rule to split work over processes and machines (DESIGN §7), and what ``torchrun`` tells a process.

A share is ``K/N`` (``0 <= K < N``): shard K takes the items whose id is K-th, (K + N)-th, ... in
the sorted list of ids. The split depends on the ids alone (not on the order they are given in),
sends every item to exactly one shard and gives shards sizes that differ by one at most; adding or
removing an item can move others, so every shard must be given the same list.

Under ``torchrun`` the shard of a process is its rank (``RANK``/``WORLD_SIZE``); ``--shard K/N``
says it where there is no torchrun (a batch scheduler's array job, one command per box).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Callable, List, Mapping, Optional, Sequence, TypeVar

Item = TypeVar("Item")

# the variables torchrun sets for every process it starts (torch.distributed's env:// rendezvous)
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class ShardError(ValueError):
    """A malformed ``--shard``, or one given under torchrun (whose rank already says it)."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (``index`` counts from 0, as torchrun's ranks do)."""

    index: int = 0
    count: int = 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def take(self, items: Sequence[Item], key: Callable[[Item], str]) -> List[Item]:
        """This shard's items of ``items`` (in their given order): those whose ``key`` has a
        position ``≡ index (mod count)`` in the sorted keys. Keys must be unique."""
        order = {k: position for position, k in enumerate(sorted(key(item) for item in items))}
        return [item for item in items if order[key(item)] % self.count == self.index]


def parse_shard(text: str) -> Shard:
    """``K/N`` as a Shard; ShardError saying what is wrong otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ShardError(f"--shard {text!r}: expected K/N, e.g. 0/4 (shard K of N, K counting from 0)")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise ShardError(f"--shard {text}: K must be in 0..N-1 and N at least 1 (the shards of 4 are 0/4 ... 3/4)")
    return Shard(index, count)


def launched_by_torchrun(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process was started by torchrun (or anything that sets its variables)."""
    return all(name in environ for name in TORCHRUN_VARIABLES)


def choose_shard(option: Optional[str], environ: Mapping[str, str] = os.environ) -> Shard:
    """The share of this process: ``--shard`` (``option``), else its torchrun rank, else the whole
    list (0/1). ``--shard`` under a torchrun of several processes is a ShardError."""
    torchrun = Shard(int(environ["RANK"]), int(environ["WORLD_SIZE"])) if launched_by_torchrun(environ) else None
    if option is None:
        return torchrun or Shard()
    if torchrun is not None and torchrun.count > 1:
        raise ShardError(f"--shard {option} under torchrun: each of its {torchrun.count} processes takes the share of "
                         "its rank; leave --shard out, or run without torchrun")
    return parse_shard(option)


def rank_device(device: str, environ: Mapping[str, str] = os.environ) -> str:
    """``device`` for this process: under torchrun a bare ``cuda`` is ``cuda:LOCAL_RANK`` (one GPU
    per process); anything else as given."""
    if device == "cuda" and launched_by_torchrun(environ):
        return f"cuda:{int(environ['LOCAL_RANK'])}"
    return device
