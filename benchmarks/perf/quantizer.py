"""Throughput of the compositional quantizer vs vector-quantize-pytorch, and its FLOP ceiling.

Measures, for d = 1024 and d = 512 (m = d / 8 sub-vectors), K = 1024:
- assignment: vectors/s of the nearest-code search on unit sub-vectors (on CPU the register-blocked C++
  kernel when it builds, else the chunked torch path; the fused Triton kernel on CUDA), and of the chunked
  torch path alone (the reference the kernels must equal; on at most 2**20 sub-vectors) in the same run;
- forward: vectors/s of ``CompositionalQuantizer.forward`` (checks, normalisation, search, gather, commitment);
- training step: vectors/s of forward + ``update_ema_`` (what one training step costs the codebook);
- vector-quantize-pytorch ``VectorQuantize(heads=m, separate_codebook_per_head=False, codebook_dim=8,
  use_cosine_sim=True, decay=0.99)`` training step (train-mode forward: assignment + EMA) in the same run;
- the FLOP ceiling ``2·N·m·K·8`` at the matmul peak measured on a large square matmul.

vector-quantize-pytorch materialises an `(m, N, K)` distance tensor, so it runs on fewer vectors
(``--vqp-vectors``) to fit in memory; throughputs are per vector and therefore comparable.

Run: ``python benchmarks/perf/quantizer.py [--vectors 65536] [--device cpu|cuda]``.
The last line is ``RESULT {json}`` with ``train_step_speedup_vs_vqp``, ``assign_fraction_of_ceiling``,
``assign_speedup_vs_torch_path`` (all for d = 1024) and ``assign_path`` (which search ran).
The fraction is a ratio of two rates measured moments apart; on a shared machine repeat the run and keep the best,
or use ``--threads 1``, which times CPU time of the one working thread.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from codebind_hf import CompositionalQuantizer
from codebind_hf.quantization import quantizer as quantizer_module
from codebind_hf.quantization.cpu_kernel import cpu_nearest_code_available
from codebind_hf.quantization.kernels import fused_nearest_code_available


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# Wall clock by default; ``--threads 1`` on CPU switches to the calling thread's CPU time (everything then runs
# in that thread), which other processes' load does not inflate.
_clock = time.perf_counter


def _timed(fn, device: str, repeats: int) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs after one warm-up."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = _clock()
        fn()
        _sync(device)
        times.append(_clock() - start)
    return sorted(times)[len(times) // 2]


def matmul_peak_flops(device: str, size: int = 2048, repeats: int = 5) -> float:
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    seconds = _timed(lambda: a @ b, device, repeats)
    return 2 * size**3 / seconds


def bench_ours(dim: int, vectors: int, codebook_size: int, device: str, repeats: int) -> dict:
    quantizer = CompositionalQuantizer(codebook_size, codevector_dim=8).to(device)
    z = torch.randn(vectors, dim, device=device)
    quantizer.kmeans_init_(z[:4096], iters=2)
    quantizer.eval()
    rows = torch.nn.functional.normalize(z.reshape(-1, 8), dim=-1)
    with torch.no_grad():
        # assignment: the nearest-code search on unit sub-vectors; forward adds normalisation,
        # input checks, the gather of codevectors and the commitment loss.
        assign = _timed(lambda: quantizer._assign(rows), device, repeats)
        # The torch path is slow: timed on a slice of the rows (<= 2**20) and scaled to the whole batch.
        sample = rows[: 1 << 20]
        torch_path = _timed(lambda: quantizer_module._nearest_codes_torch(sample, quantizer.codebook), device, repeats)
        torch_path *= rows.shape[0] / sample.shape[0]
        forward = _timed(lambda: quantizer(z), device, repeats)

        def train_step():
            out = quantizer(z)
            quantizer.update_ema_(z, out.indices)

        step = _timed(train_step, device, repeats)
    return {
        "assign_vectors_per_s": vectors / assign,
        "assign_torch_path_vectors_per_s": vectors / torch_path,
        "assign_speedup_vs_torch_path": torch_path / assign,
        "assign_path": _assign_path(rows, quantizer.codebook),
        "forward_vectors_per_s": vectors / forward,
        "train_step_vectors_per_s": vectors / step,
    }


def _assign_path(rows: torch.Tensor, codebook: torch.Tensor) -> str:
    if fused_nearest_code_available(rows, codebook):
        return "triton"
    return "cpu_kernel" if cpu_nearest_code_available(rows, codebook) else "torch"


def bench_vqp(dim: int, vectors: int, codebook_size: int, device: str, repeats: int) -> dict | None:
    try:
        from vector_quantize_pytorch import VectorQuantize
    except ImportError as err:
        print(f"vector-quantize-pytorch unavailable ({err}); skipping the comparison")
        return None
    vq = VectorQuantize(
        dim=dim,
        codebook_size=codebook_size,
        heads=dim // 8,
        separate_codebook_per_head=False,
        codebook_dim=8,
        use_cosine_sim=True,
        decay=0.99,
    ).to(device)
    vq.train()
    z = torch.randn(1, vectors, dim, device=device)
    with torch.no_grad():
        step = _timed(lambda: vq(z), device, repeats)
    return {"train_step_vectors_per_s": vectors / step}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=65536)
    parser.add_argument("--vqp-vectors", type=int, default=2048)
    parser.add_argument("--codebook-size", type=int, default=1024)
    parser.add_argument("--dims", type=int, nargs="+", default=[1024, 512])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1 on CPU: timed in CPU time)")
    args = parser.parse_args(argv)
    global _clock
    if args.threads:
        torch.set_num_threads(args.threads)  # this script's process only
    _clock = time.thread_time if args.threads == 1 and args.device == "cpu" else time.perf_counter
    torch.manual_seed(0)
    peak = matmul_peak_flops(args.device)
    clock = "thread CPU time" if _clock is time.thread_time else "wall clock"
    print(f"device={args.device} threads={torch.get_num_threads()} ({clock}) matmul peak={peak / 1e9:.1f} GFLOP/s")
    rows = {}
    for dim in args.dims:
        m = dim // 8
        ours = bench_ours(dim, args.vectors, args.codebook_size, args.device, args.repeats)
        vqp = bench_vqp(dim, args.vqp_vectors, args.codebook_size, args.device, args.repeats)
        ceiling = peak / (2 * m * args.codebook_size * 8)
        row = {
            **ours,
            "ceiling_vectors_per_s": ceiling,
            "assign_fraction_of_ceiling": ours["assign_vectors_per_s"] / ceiling,
            "vqp_train_step_vectors_per_s": vqp["train_step_vectors_per_s"] if vqp else None,
            "train_step_speedup_vs_vqp": ours["train_step_vectors_per_s"] / vqp["train_step_vectors_per_s"] if vqp else None,
        }
        rows[dim] = row
        print(
            f"d={dim:5d} m={m:4d} K={args.codebook_size}: assign {row['assign_vectors_per_s']:,.0f} vec/s "
            f"({row['assign_fraction_of_ceiling']:.1%} of ceiling {ceiling:,.0f}; {row['assign_path']}, "
            f"{row['assign_speedup_vs_torch_path']:.1f}x the torch path); forward "
            f"{row['forward_vectors_per_s']:,.0f} vec/s; train step "
            f"{row['train_step_vectors_per_s']:,.0f} vec/s; vqp train step "
            + (f"{row['vqp_train_step_vectors_per_s']:,.0f} vec/s -> {row['train_step_speedup_vs_vqp']:.1f}x" if vqp else "n/a")
        )
    headline = rows[max(rows)]
    result = {
        "device": args.device,
        "vectors": args.vectors,
        "matmul_peak_gflops": peak / 1e9,
        "threads": torch.get_num_threads(),
        "clock": clock,
        "per_dim": {str(k): v for k, v in rows.items()},
        "train_step_speedup_vs_vqp": headline["train_step_speedup_vs_vqp"],
        "assign_fraction_of_ceiling": headline["assign_fraction_of_ceiling"],
        "assign_speedup_vs_torch_path": headline["assign_speedup_vs_torch_path"],
        "assign_path": headline["assign_path"],
    }
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
