"""Inference cost of CodeBind's additions: heads + quantizers as a fraction of the tower forward.

For the imagebind_huge audio and vision towers (random weights, CPU, batch 4, fp32, no grad) in one model with an
audio path bridged to vision: the tower forward is timed, then what CodeBind runs on the tower's pooled token —
the shared head, the path's specific head, the shared and the specific quantizer and the normalisations
(``get_features(..., part="concat")`` minus the tower). Also the parameter + buffer bytes of those additions
against the tower's, and the process' peak resident memory. All figures are ratios measured in the same run.

Run: ``python benchmarks/perf/inference.py [--repeats 3]``; the last line is ``RESULT {json}`` with
``overhead_fraction_audio`` and ``overhead_fraction_vision``.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch
import torch.nn.functional as F
from torch import nn

from codebind_hf import CodeBindConfig, CodeBindModel
from codebind_hf.encoders.imagebind import IMAGEBIND_HUGE, imagebind_modality_configs

INPUTS = {"audio": (1, 128, 204), "vision": (3, 224, 224)}


def _best_seconds(fn, repeats: int) -> float:
    """Fastest of ``repeats`` calls: the least disturbed by other processes on a shared machine."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _nbytes(*modules: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for m in modules for t in [*m.parameters(), *m.buffers()])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1, help="timed tower forwards per modality, after one warm-up")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    modalities = imagebind_modality_configs(("vision", "audio"), **IMAGEBIND_HUGE)
    config = CodeBindConfig(
        modalities=modalities, bridges=["vision"], paths={"audio": {"bridges": ["vision"]}},
        embed_dim=1024, specific_dim=1024, decoder={"enabled": False},
    )
    model = CodeBindModel(config).eval()
    books = model.quantizers["audio"]
    result = {"batch": args.batch, "threads": torch.get_num_threads()}
    with torch.no_grad():
        for modality, shape in INPUTS.items():
            x = torch.randn(args.batch, *shape)
            tower = model.towers[modality]
            out = tower(x)  # warm-up; its pooled token feeds the additions
            pooled = out.last_hidden_state[torch.arange(args.batch), out.pooled_index]
            shared_head, specific_head = model.shared_heads[modality], model.specific_heads["audio"][modality]
            specific_book = books.specific_for(modality)

            def additions():
                shared = F.normalize(books.shared(shared_head(pooled)).quantized, dim=-1)
                specific = F.normalize(specific_book(specific_head(pooled)).quantized, dim=-1)
                return F.normalize(torch.cat([shared, specific], -1), dim=-1)

            tower_s = _best_seconds(lambda: tower(x), args.repeats)
            additions()
            extra_s = _best_seconds(additions, max(args.repeats, 20))
            extra_bytes = _nbytes(shared_head, specific_head, books.shared, specific_book)
            result[f"tower_seconds_{modality}"] = tower_s
            result[f"heads_quantizers_seconds_{modality}"] = extra_s
            result[f"overhead_fraction_{modality}"] = extra_s / tower_s
            result[f"memory_fraction_{modality}"] = extra_bytes / _nbytes(tower)
            print(
                f"{modality:6s}: tower {tower_s * 1e3:9.1f} ms, heads + quantizers {extra_s * 1e3:7.3f} ms -> "
                f"{extra_s / tower_s:.4%} of the tower; their weights {extra_bytes / 2**20:.1f} MiB = "
                f"{result[f'memory_fraction_{modality}']:.2%} of the tower's"
            )
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak resident memory {result['peak_rss_gib']:.2f} GiB (both huge towers in fp32)")
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
