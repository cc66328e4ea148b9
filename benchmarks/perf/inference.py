"""Inference cost of CodeBind's additions: heads + codebooks as a fraction of the tower forward.

For the imagebind_huge audio and vision towers (random weights, CPU, batch 4, no grad): time the tower
forward, then the shared head, the path's specific head and both quantizers on the pooled token — what
``get_features(..., part="concat")`` adds on top of ImageBind — and the peak resident memory of the process.
All figures are ratios measured in the same run.
Run: ``python benchmarks/perf/inference.py [--repeats 2]``; last line ``RESULT {json}`` with
``overhead_fraction_audio`` and ``overhead_fraction_vision``.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch
import torch.nn.functional as F

from codebind_hf import CodeBindConfig, CodeBindModel
from codebind_hf.encoders.imagebind import IMAGEBIND_HUGE, imagebind_modality_configs

INPUTS = {"audio": (1, 128, 204), "vision": (3, 224, 224)}


def _median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    modalities = imagebind_modality_configs(("vision", "audio"), **IMAGEBIND_HUGE)
    config = CodeBindConfig(modalities=modalities, bridges=["vision"], paths={"audio": {"bridges": ["vision"]}},
                            embed_dim=1024, specific_dim=1024, decoder={"enabled": False})
    model = CodeBindModel(config).eval()
    result = {"batch": args.batch, "threads": torch.get_num_threads()}
    with torch.no_grad():
        for modality, shape in INPUTS.items():
            x = torch.randn(args.batch, *shape)
            tower = model.towers[modality]
            out = tower(x)
            pooled = out.last_hidden_state[torch.arange(args.batch), out.pooled_index]
            books = model.quantizers["audio"]

            def additions():
                shared = books.shared(model.shared_heads[modality](pooled)).quantized
                specific = books.specific_for(modality)(model.specific_heads["audio"][modality](pooled)).quantized
                return F.normalize(torch.cat([F.normalize(shared, dim=-1), F.normalize(specific, dim=-1)], -1), dim=-1)

            tower_s = _median_seconds(lambda: tower(x), args.repeats)
            extra_s = _median_seconds(additions, max(args.repeats, 20))
            fraction = extra_s / tower_s
            result[f"tower_seconds_{modality}"] = tower_s
            result[f"heads_quantizers_seconds_{modality}"] = extra_s
            result[f"overhead_fraction_{modality}"] = fraction
            print(f"{modality:6s}: tower {tower_s * 1e3:9.1f} ms, heads + quantizers {extra_s * 1e3:7.3f} ms -> {fraction:.4%} of the tower")
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak resident memory {result['peak_rss_gib']:.2f} GiB (both huge towers in fp32)")
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
