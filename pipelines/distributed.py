"""Every ``torch.distributed`` call of the project, so NCCL's device rule holds by construction.

NCCL collectives accept only CUDA tensors, while gloo accepts anything: a metric reduced as a
CPU tensor passes every CPU test and crashes the first multi-GPU run. So there are two kinds of
collective here, and nothing else in the project calls ``torch.distributed`` (a test checks):

- **host values** (metrics, counts, key hashes, gathered predictions, any Python object) go
  through a gloo group created next to the default group (:func:`host_group`), whatever the
  default group's backend is;
- **model tensors** (BatchNorm buffers) use the default group on the rank's own device
  (:func:`broadcast_buffers`).

Outside a process group (one process, ``num_workers=0``) every helper is the identity.
"""
from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

_HOST: dict[str, Any] = {"for": None, "group": None}


def is_active() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the group's size, ``(0, 1)`` outside a process group."""
    if not is_active():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def ensure_process_group() -> bool:
    """A one-process gloo group when none exists (the driver itself runs the loop).

    Returns True when it created the group (a new group: callers drop state cached for an
    earlier one, e.g. DeepSpeed's group handles).
    """
    if is_active():
        os.environ.setdefault("LOCAL_RANK", "0")
        return False
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(sock.getsockname()[1])
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    dist.init_process_group("gloo", rank=0, world_size=1)
    return True


def host_group() -> Any:
    """The gloo group for host-side values, made once per default group (a collective call:
    every rank reaches it in the same order, since every rank runs the same helpers)."""
    world = dist.group.WORLD
    if _HOST["for"] is not world:
        _HOST["group"] = dist.new_group(backend="gloo")
        _HOST["for"] = world
    return _HOST["group"]


def mean_over_ranks(values: Sequence[float]) -> list[float]:
    """The mean of each value over all ranks (host floats, reduced on the gloo group)."""
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64)
    if is_active() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, group=host_group())
        tensor /= dist.get_world_size()
    return tensor.tolist()


def sum_over_ranks(values: Sequence[int]) -> list[int]:
    """The sum of each integer over all ranks (host counts, on the gloo group)."""
    tensor = torch.tensor([int(v) for v in values], dtype=torch.int64)
    if is_active() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, group=host_group())
    return [int(v) for v in tensor.tolist()]


def all_gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value`` (picklable), in rank order, on every rank."""
    if not is_active() or dist.get_world_size() == 1:
        return [value]
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, value, group=host_group())
    return parts


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Rank ``src``'s buffers (BatchNorm statistics) on every rank: evaluation and export see one
    model. The buffers stay on the rank's device, which the default group (NCCL on GPUs) needs."""
    if is_active() and dist.get_world_size() > 1:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=src)


def barrier() -> None:
    """Wait for every rank (on the gloo group: no device is needed for it)."""
    if is_active() and dist.get_world_size() > 1:
        dist.barrier(group=host_group())


def destroy() -> None:
    """Tear the process group down (after a test's spawn, or an in-process run)."""
    if is_active():
        dist.destroy_process_group()
    _HOST.update({"for": None, "group": None})


__all__ = ["all_gather_objects", "barrier", "broadcast_buffers", "destroy",
           "ensure_process_group", "host_group", "is_active", "mean_over_ranks",
           "rank_and_world", "sum_over_ranks"]
