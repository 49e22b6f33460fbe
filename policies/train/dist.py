"""Data-parallel training across processes started by `torchrun` (one process per CPU slot or GPU).

`start_processes` joins the process group torchrun describes in the environment (gloo on the CPU, NCCL on CUDA)
or, run alone, is a one-process stand-in, so the training code has one path. Rank 0 is the one that writes.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from twin_kit import InputError

TIMEOUT = datetime.timedelta(hours=2)  # rank 0 may decode videos for a long while before the others go on


@dataclass
class Processes:
    """This process's place among the training processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.parallel:
            dist.barrier()

    def broadcast(self, obj):
        """Rank 0's `obj`, on every rank."""
        if not self.parallel:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list:
        """Every rank's `obj`, in rank order, on every rank."""
        if not self.parallel:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def share_buffers(self, module: torch.nn.Module) -> None:
        """Give every rank rank 0's buffers (batch-norm statistics), as DistributedDataParallel does at each
        forward: after the last step each rank still holds the statistics of its own last batch."""
        if self.parallel:
            for b in module.buffers():
                dist.broadcast(b, src=0)

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over the ranks."""
        if not self.parallel:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """auto: CUDA when present, else the CPU; cuda without a GPU is refused."""
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise InputError("--device cuda: no CUDA device is available (this torch build or machine has none)")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def start_processes(device: str) -> Processes:
    """Join torchrun's process group when WORLD_SIZE > 1 (gloo on the CPU, NCCL on CUDA), else run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local)
    if world <= 1:
        return Processes(device=dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=TIMEOUT,
                                **({"device_id": dev} if dev.type == "cuda" else {}))
    return Processes(rank=rank, world=world, local_rank=local, device=dev)


def stop_processes(procs: Processes) -> None:
    if procs.parallel and dist.is_initialized():
        dist.destroy_process_group()
