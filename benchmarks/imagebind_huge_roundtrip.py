"""imagebind_huge at full size: parameter counts per tower, and a random checkpoint through the converter and back.

1. builds the imagebind_huge CodeBind model (random weights, CPU) and prints parameters per tower;
2. writes its tower/head/scale weights as a random ``.pth`` in the original ImageBind key layout;
3. converts that file with ``convert_imagebind_checkpoint``, saves it with ``save_pretrained`` (sharded
   safetensors), loads it with ``from_pretrained`` (strict) and checks that embeddings of every modality
   are identical to the converted model's.

Needs about 20 GB of RAM and 10 GB of disk; takes a few minutes on 2 cores. Not part of the test suite.
Run: ``python benchmarks/imagebind_huge_roundtrip.py [--workdir DIR]``; last line ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from codebind_hf import CodeBindModel
from codebind_hf.convert.imagebind import codebind_key_to_imagebind, convert_imagebind_checkpoint, imagebind_codebind_config

INPUTS = {
    "vision": lambda: torch.randn(1, 3, 224, 224),
    "text": lambda: torch.cat([torch.tensor([[49406, 320, 1929, 49407]]), torch.zeros(1, 73, dtype=torch.long)], 1),
    "audio": lambda: torch.randn(1, 1, 128, 204),
    "depth": lambda: torch.randn(1, 1, 224, 224),
    "thermal": lambda: torch.randn(1, 1, 224, 224),
    "imu": lambda: torch.randn(1, 6, 2000),
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="imagebind-huge-"))
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    torch.manual_seed(0)
    model = CodeBindModel(imagebind_codebind_config())
    counts = {m: sum(p.numel() for p in tower.parameters()) for m, tower in model.towers.items()}
    for m, n in counts.items():
        print(f"{m:8s} tower {n:>13,} parameters")
    print(f"total    model {sum(p.numel() for p in model.parameters()):>13,} parameters")
    reference = {
        codebind_key_to_imagebind(k): v
        for k, v in model.state_dict().items()
        if k.startswith(("towers.", "shared_heads.", "logit_scales.")) and k != "logit_scales.vision.log_logit_scale"
    }
    torch.save(reference, workdir / "imagebind_huge_random.pth")
    del model, reference
    converted = convert_imagebind_checkpoint(workdir / "imagebind_huge_random.pth")
    converted.save_pretrained(workdir / "converted", max_shard_size="2GB")
    shards = sorted(p.name for p in (workdir / "converted").glob("*.safetensors"))
    loaded = CodeBindModel.from_pretrained(workdir / "converted").eval()
    identical = {}
    with torch.no_grad():
        for modality, make in INPUTS.items():
            x = make()
            # bridges: ImageBind's embedding; targets: also shared ⊕ specific through their path's codebooks
            parts = [("shared", False)] + ([("concat", True)] if modality in converted.quantizers else [])
            identical[modality] = all(
                torch.equal(converted.get_features(modality, x, part=p, quantize=q), loaded.get_features(modality, x, part=p, quantize=q))
                for p, q in parts
            )
    seconds = time.perf_counter() - start
    result = {"tower_parameters": counts, "shards": len(shards), "identical_after_round_trip": identical, "seconds": round(seconds, 1)}
    print(f"{len(shards)} safetensors shards; embeddings identical after the round trip: {identical}; {seconds:.0f} s")
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
