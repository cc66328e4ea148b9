"""Cost of the base-model fingerprint (`codebind_hf.adapters.fingerprint`) on imagebind_huge, on this machine.

Building all of imagebind_huge needs ~20 GB of RAM, so this builds one full-size tower (``--tower``, default the
632M-parameter vision tower, ~2.5 GB in float32), times the fingerprint on it — recording it (both digests), checking
it on the float32 tower (bf16 digest) and on float16 and bfloat16 copies (one digest each, no cast needed) — and
extrapolates per parameter to the frozen set of a path (text + vision towers and their heads, plus the target tower)
and to the whole model, whose tower sizes are counted on the meta device (no memory).

Run: ``python benchmarks/perf/fingerprint.py [--tower vision] [--target audio] [--threads N]``; last line ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from codebind_hf.adapters.fingerprint import WeightsFingerprint
from codebind_hf.convert.imagebind import imagebind_codebind_config
from codebind_hf.encoders import build_tower


def _timed(call, cpu: dict | None = None, name: str = "") -> tuple[float, object]:
    """Wall seconds of ``call()`` and its result; its CPU seconds go to ``cpu[name]`` (on a machine shared with
    other work, CPU time is what the same call costs on an idle core, when single-threaded)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    out = call()
    if cpu is not None:
        cpu[name] = round(time.process_time() - start_cpu, 2)
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tower", default="vision", help="the full-size tower to time (default: vision, the largest)")
    parser.add_argument("--target", default="audio", help="the path target for the per-path extrapolation")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's); 1 avoids thread wake-ups on a busy machine")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = imagebind_codebind_config()
    with torch.device("meta"):
        sizes = {m: sum(p.numel() for p in build_tower(m, c).parameters()) for m, c in config.modalities.items()}
    tower = build_tower(args.tower, config.modalities[args.tower]).eval()
    named = [(f"towers.{args.tower}.{k}", v) for k, v in tower.state_dict().items()]
    params = sum(v.numel() for _, v in named)
    cpu: dict[str, float] = {}
    record_s, recorded = _timed(lambda: WeightsFingerprint(named).record(), cpu, "record")
    check_s, ok = _timed(lambda: WeightsFingerprint(named).matches(recorded), cpu, "check_fp32")
    assert ok
    casts = {}
    for dtype in (torch.float16, torch.bfloat16):
        half = [(k, v.to(dtype) if v.is_floating_point() else v) for k, v in named]
        seconds, ok = _timed(lambda: WeightsFingerprint(half).matches(recorded), cpu, f"check_{dtype}".replace("torch.", ""))
        assert ok, f"the {dtype} copy was not recognised"
        casts[str(dtype).replace("torch.", "")] = seconds
        del half
    per_param = check_s / params
    path_params = sizes["text"] + sizes["vision"] + sizes[args.target]
    result = {
        "tower": args.tower,
        "tower_params": params,
        "threads": torch.get_num_threads(),
        "record_s": round(record_s, 2),
        "check_fp32_s": round(check_s, 2),
        "check_fp16_copy_s": round(casts["float16"], 2),
        "check_bf16_copy_s": round(casts["bfloat16"], 2),
        "check_ns_per_param": round(per_param * 1e9, 2),
        "cpu_s": cpu,
        "path_check_fp32_cpu_s_extrapolated": round(cpu["check_fp32"] / params * path_params, 1),
        "params_per_tower": sizes,
        "path_target": args.target,
        "path_frozen_params": path_params,
        "path_check_fp32_s_extrapolated": round(per_param * path_params, 1),
        "path_record_s_extrapolated": round(record_s / params * path_params, 1),
        "whole_model_check_s_extrapolated": round(per_param * sum(sizes.values()), 1),
    }
    print(f"{args.tower} tower ({params / 1e6:.0f}M params, {torch.get_num_threads()} threads): record {record_s:.2f} s, "
          f"check {check_s:.2f} s (fp32), {casts['float16']:.2f} s (fp16 copy), {casts['bfloat16']:.2f} s (bf16 copy); "
          f"a {args.target} path's frozen set ({path_params / 1e6:.0f}M params): check ~{result['path_check_fp32_s_extrapolated']} s, "
          f"record ~{result['path_record_s_extrapolated']} s")
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
