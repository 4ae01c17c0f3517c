"""Several processes through torch.distributed: `--processes N` on one machine, or `torchrun` across machines.

A run started by `torchrun` (or by `distill run --processes N`, which hands itself to torchrun)
finds RANK / WORLD_SIZE / LOCAL_RANK in its environment and joins one process group: gloo on
the CPU, nccl on CUDA. Everything else asks `group()` who it is. A run without those variables
is a group of one, and every helper here is then a no-op.

Who does what:
  - rank 0 alone reads the corpus into the cache, computes the vocabulary vectors, joins the
    target chunks and writes checkpoints, metrics, students and the summary;
  - target chunks are shared out by rank (chunk k belongs to rank k mod world);
  - training runs under DistributedDataParallel, each rank on its share of every batch;
  - validation is shared out by rank and summed, so it runs once per epoch, not once per rank.
"""

from __future__ import annotations

import datetime
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from distill.errors import DistillError

logger = logging.getLogger(__name__)

T = TypeVar("T")
# NOTE: rank 0 may read a large corpus or build vocabulary vectors while the others wait at a
# barrier; a crashed rank ends the whole group through torchrun anyway, so the wait may be long.
TIMEOUT = datetime.timedelta(hours=6)
_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class Group:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def group() -> Group:
    """This process's place in the group (a group of one when not started by torchrun)."""
    if not dist.is_available() or not dist.is_initialized():
        return Group()
    return Group(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def launched() -> bool:
    """Whether torchrun (or `--processes`) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device_type: str) -> Group:
    """Join the process group torchrun described (gloo on CPU, nccl on CUDA); quiet the logs of ranks > 0."""
    if not launched() or dist.is_initialized():
        return group()
    missing = [name for name in _ENV if name not in os.environ]
    if missing:
        raise DistillError(f"WORLD_SIZE is set but {', '.join(missing)} is not; start several processes with "
                           "`distill run --processes N` or torchrun")  # fmt: skip
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend=backend, timeout=TIMEOUT)
    here = group()
    if not here.is_main:
        logging.getLogger().setLevel(logging.WARNING)  # NOTE: one log for the run, from rank 0
    logger.info("process group: %d processes (%s)", here.world, backend)
    return here


def close() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if group().active:
        dist.barrier()


def broadcast(value: T) -> T:
    """Rank 0's `value` on every rank (any picklable object)."""
    if not group().active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sums of `values` over the ranks (float64 on the CPU, so gloo and nccl alike)."""
    if not group().active:
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def shard(items: Sequence[T] | Any, here: Group | None = None) -> Any:
    """Every world-th item, starting at this rank's (a slice of a list or an array)."""
    here = here or group()
    return items[here.rank :: here.world]


def relaunch(processes: int, argv: Sequence[str]) -> int:
    """Run this same command as `processes` processes through torchrun on this machine; its exit status.

    NOTE: torchrun, not a home-made pool: it gives each process its rank, sets up the
    rendezvous on a free port and ends every process when one fails.
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", "distill.cli", *argv]  # fmt: skip
    logger.info("starting %d processes: %s", processes, " ".join(command[1:]))
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(_threads_each(processes)))}
    return subprocess.call(command, env=env)


def _threads_each(processes: int) -> int:
    """Cores per process, so N processes do not fight over the same cores."""
    return max(1, (os.cpu_count() or 1) // processes)
