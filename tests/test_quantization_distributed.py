"""Two CPU processes (gloo): codebooks end bit-identical, also when one rank has no samples."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from codebind_hf import CompositionalQuantizer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_dir: str, empty_rank: int | None) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        q = CompositionalQuantizer(codebook_size=16, codevector_dim=4)
        torch.manual_seed(100 + rank)  # every rank sees different data and draws different random numbers
        n = 0 if rank == empty_rank else 24 + 8 * rank
        data = torch.randn(n, 16)
        q.kmeans_init_(data, iters=4)
        for _ in range(3):
            out = q(data)
            q.update_ema_(data, out.indices)
            q.reinit_dead_codes_(data)
        torch.save({k: v.clone() for k, v in q.state_dict().items()}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("empty_rank", [None, 1, 0])
def test_two_ranks_end_with_identical_codebooks(tmp_path, empty_rank):
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path), empty_rank), nprocs=2, join=True, start_method="spawn")
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for name in ("codebook", "ema_count", "ema_sum", "usage_ema", "code_counts"):
        assert torch.equal(states[0][name], states[1][name]), name
    assert bool(states[0]["initialized"])
    # the step really used both ranks' data: counts add up to all sub-vectors of both ranks, 3 steps
    sizes = [0 if r == empty_rank else 24 + 8 * r for r in range(2)]
    assert int(states[0]["code_counts"].sum()) == 3 * 4 * sum(sizes)
