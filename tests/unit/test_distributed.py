"""NCCL's device rule, tested on CPU: collectives of host values must not need a device.

A default process group registered only for the ``cuda`` device type (``backend="cuda:gloo"``)
refuses CPU tensors exactly as NCCL does ("No backend type associated with device type cpu"),
so a 2-process spawn with that group is a stand-in for a multi-GPU run: the helpers that reduce
metrics and gather predictions must pass on it, and a plain CPU ``all_reduce`` must fail.
"""
from __future__ import annotations

import ast
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _init(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("cuda:gloo", rank=rank, world_size=world)


def _platform_helpers(rank: int, world: int, port: int, out: str) -> None:
    from pipelines import distributed
    from pipelines.evaluation import Predictions, gather_predictions

    _init(rank, world, port)
    try:
        mean = distributed.mean_over_ranks([float(rank), 2.0 * rank + 1])
        total = distributed.sum_over_ranks([rank + 1])
        objects = distributed.all_gather_objects({"rank": rank})
        local = Predictions((f"video-{rank}",), np.array([rank], dtype=np.int64),
                            np.eye(2, dtype=np.float32)[[rank]])
        merged = gather_predictions(local, num_classes=2)
        distributed.barrier()
        torch.save({"mean": mean, "total": total, "objects": objects,
                    "keys": list(merged.keys)}, f"{out}/rank{rank}.pt")
    finally:
        distributed.destroy()


def _plain_cpu_all_reduce(rank: int, world: int, port: int, out: str) -> None:
    """What the training loop did before: a CPU tensor all-reduced on the default group."""
    _init(rank, world, port)
    try:
        tensor = torch.tensor([1.0, 2.0], dtype=torch.float64)
        torch.distributed.all_reduce(tensor)
    except RuntimeError as exc:
        Path(out, f"rank{rank}.err").write_text(str(exc))
    finally:
        torch.distributed.destroy_process_group()


def test_host_value_collectives_pass_under_the_nccl_stand_in(tmp_path):
    mp.spawn(_platform_helpers, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["mean"] == [0.5, 2.0]
        assert got["total"] == [3]
        assert got["objects"] == [{"rank": 0}, {"rank": 1}]
        assert got["keys"] == ["video-0", "video-1"]


def test_the_stand_in_refuses_a_cpu_tensor_like_nccl(tmp_path):
    mp.spawn(_plain_cpu_all_reduce, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    errors = [(tmp_path / f"rank{r}.err").read_text() for r in range(2)
              if (tmp_path / f"rank{r}.err").exists()]
    assert errors and all("device type cpu" in e for e in errors), errors


def _calls_torch_distributed(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.startswith("torch.distributed")
                                                 for a in node.names):
            found.append(f"line {node.lineno}: import torch.distributed")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "torch.distributed") or (isinstance(node, ast.ImportFrom)
                                         and node.module == "torch"
                                         and any(a.name == "distributed" for a in node.names)):
            found.append(f"line {node.lineno}: from {node.module} import ...")
        elif (isinstance(node, ast.Attribute) and node.attr == "distributed"
              and isinstance(node.value, ast.Name) and node.value.id == "torch"):
            found.append(f"line {node.lineno}: torch.distributed")
    return found


@pytest.mark.parametrize("package", ["pipelines", "jobs", "tsi_model"])
def test_one_module_owns_every_torch_distributed_call(package):
    owner = REPO / "pipelines" / "distributed.py"
    problems = [f"{p.relative_to(REPO)} {hit}"
                for p in sorted((REPO / package).rglob("*.py")) if p != owner
                for hit in _calls_torch_distributed(p)]
    assert not problems, "torch.distributed outside pipelines/distributed.py:\n" + "\n".join(
        problems)
