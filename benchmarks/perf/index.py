"""Code indexes: bytes per item, build and query rates, Recall@10; the IVF index against exhaustive code search.

Shared embeddings come from a model: a CodeBind shared head (``ProjectionHead``: LayerNorm + Linear, 768 -> 1024)
with random weights over clustered 768-d "tower" features (``--clusters`` centres, items and queries are noisy
members), L2-normalised as ``get_features(..., quantize=False)`` returns them, generated in chunks of ``--chunk``
items (a million float32 embeddings would take 4 GB). The shared codebook (K = 1024, d* = 8, so m = 128 codes of
10 bits) is k-means-initialised on the first ``--kmeans-items`` items (``CompositionalQuantizer.kmeans_init_``), as
CodeBind training starts. Items are encoded chunk by chunk into a `CodeBindIVFIndex` (``--lists`` inverted lists,
default the power of two nearest to sqrt(items), trained on the first ``--train-items``), which is saved, dropped
and loaded back memory-mapped before it is searched. Measured in one run:

- exhaustive code search over all items (the flat `CodeBindIndex` search, run on the IVF's codes through
  ``search_exhaustive``: torch, and faiss ``IndexPQ`` when installed, timed on ``--faiss-exhaustive-queries``
  queries as it is slow with 10-bit codes) and exact float search (matmul + top-k over
  the float32 embeddings, timed chunk by chunk): queries/s (k = 10), Recall@10 against exact float search, and
  against brute force over the decoded vectors (must be 1.0);
- IVF search for ``nprobe`` in ``--nprobes`` (torch, and faiss ``IndexIVFPQ``): queries/s and Recall@10 against the
  exhaustive torch code search (faiss' exhaustive search returns the same hits: ``exhaustive_same_hits_as_torch``);
  the headline ``nprobe`` is the smallest whose recall reaches ``--target-recall``, and its speed-up is IVF
  queries/s over exhaustive queries/s;
- bytes per item (packed codes + list offsets, in memory) and ``index_bytes`` (the saved folder: codes, lists,
  centroids, codebook, the ids in ``ids.safetensors``, ``index.json`` and ``checksums.json``); build time (encode
  + list assignment + merge, and the coarse k-means apart);
- memory, as peak RSS growth over a process' RSS before the index existed (sampled every 2 ms), over
  ``index_bytes``: **building** — a fresh process (``--build``) streams the generated chunks, encodes, adds,
  merges and saves, nothing else (``build_peak_rss_growth_vs_index``; its saved files must equal this process':
  ``build_same_index``); **serving** — a fresh process (``--serve``) loads the saved index memory-mapped and
  answers the queries by IVF search at the headline ``nprobe`` (``serve_peak_rss_growth_vs_index``), then also
  runs the exhaustive search (``serve_with_exhaustive_peak_rss_growth_vs_index``); and this process' torch phase —
  build with the generated float chunks and the exact float search beside it, save, load, search —
  (``inprocess_peak_rss_growth_vs_index``; ``peak_rss_bytes`` is its high-water mark), then with faiss' copies.

The default clusters (``--noise 0.5``) are tight: an item's ten nearest neighbours share its list, so nprobe = 1
already reaches Recall@10 = 1.0 against exhaustive search. A larger ``--noise`` spreads the neighbours over lists
and makes ``nprobe`` matter.

Run: ``python benchmarks/perf/index.py [--items 20000]`` (``--items 1000000`` for the README's figures); the last
line is ``RESULT {json}`` with ``compression_vs_float32``, ``recall_at_10`` (exhaustive torch code search against
exact float search), ``ivf_speedup_vs_exhaustive``, ``ivf_recall_at_10_vs_exhaustive``, ``ivf_nprobe`` (torch
backend; the faiss figures under ``faiss``), ``bytes_per_item``, ``index_bytes``, ``peak_rss_bytes``,
``build_peak_rss_growth_bytes``, ``build_peak_rss_growth_vs_index``, ``build_same_index``,
``inprocess_peak_rss_growth_bytes``, ``inprocess_peak_rss_growth_vs_index``, ``serve_peak_rss_growth_bytes``,
``serve_peak_rss_growth_vs_index`` and ``serve_with_exhaustive_peak_rss_growth_vs_index``. ``--threads 1`` gives
steadier ratios on a shared machine (many small parallel ops wait on busy cores).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from codebind_hf import CompositionalQuantizer
from codebind_hf.index.backends import faiss_available, unpack_codes
from codebind_hf.index.ivf import CodeBindIVFIndex
from codebind_hf.modules.heads import ProjectionHead

EMBED_DIM = 1024
FEATURE_DIM = 768


class EmbeddingSource:
    """Clustered unit shared embeddings, reproducible chunk by chunk (chunk ``c`` has its own generator)."""

    def __init__(self, clusters: int, noise: float, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.centres = torch.randn(clusters, FEATURE_DIM, generator=generator)
        self.head = ProjectionHead(FEATURE_DIM, EMBED_DIM)
        torch.nn.init.normal_(self.head.proj.weight, std=FEATURE_DIM**-0.5, generator=generator)
        self.noise, self.seed = noise, seed

    def chunk(self, index: int, size: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index + 1)
        labels = torch.randint(self.centres.shape[0], (size,), generator=generator)
        features = self.centres[labels] + self.noise * torch.randn(size, FEATURE_DIM, generator=generator)
        with torch.no_grad():
            return F.normalize(self.head(features), dim=-1)

    def items(self, total: int, size: int):
        """``(start, embeddings)`` chunks of the ``total`` items."""
        for c, start in enumerate(range(0, total, size)):
            yield start, self.chunk(c, min(size, total - start))

    def queries(self, count: int) -> torch.Tensor:
        return self.chunk(-1, count)


class PeakRSS:
    """Highest resident set size seen while active (a thread samples ``/proc/self/statm`` or psutil every 2 ms)."""

    def __init__(self):
        self.peak = self.start = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _rss() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss


def _high_water_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if os.uname().sysname == "Darwin" else peak * 1024


def merge_topk(best, scores: torch.Tensor, offset: int, k: int):
    """Running top-``k`` (values, global indices) over column chunks of a score matrix."""
    top = scores.topk(min(k, scores.shape[1]), dim=1)
    values, indices = top.values, top.indices + offset
    if best is not None:
        values, picks = torch.cat([best[0], values], 1).topk(k, dim=1)
        indices = torch.cat([best[1], indices], 1).gather(1, picks)
    return values, indices


def recall_at_k(found: list[list], truth: list[list]) -> float:
    """Mean over queries of |found ∩ truth| / |truth|."""
    return sum(len(set(f) & set(t)) for f, t in zip(found, truth)) / sum(len(t) for t in truth)


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def default_lists(items: int) -> int:
    return max(1, 2 ** round(math.log2(max(1.0, math.sqrt(items)))))


def stream_build(args, source: EmbeddingSource, codebook: torch.Tensor, lists: int, observe=None) -> tuple:
    """Stream the generated items into an IVF index: encode each chunk, train the coarse quantizer on the first
    ``train_items`` codes (then add them), add the rest chunk by chunk, merge. ``observe(index, start, embeddings,
    codes)`` sees every chunk (the main process' exact float search and fidelity); the fresh build process passes
    none. Returns the index and timings."""
    index = CodeBindIVFIndex(codebook, EMBED_DIM, num_lists=lists, backend="torch")
    train_items = min(args.items, args.train_items or 64 * lists)
    encode_s, add_s, train_s, sample = 0.0, 0.0, 0.0, None
    for start, embeddings in source.items(args.items, args.chunk):
        seconds, codes = _timed(lambda: index.encode(embeddings))
        encode_s += seconds
        if observe is not None:
            observe(index, start, embeddings, codes)
        del embeddings
        if not index.is_trained:
            if sample is None:  # the training codes, filled in place (int16 holds K = 1024): no concatenated copy
                rows = min(args.items, -(-train_items // args.chunk) * args.chunk)
                sample = torch.empty(rows, codes.shape[1], dtype=torch.int16)
            sample[start : start + len(codes)] = codes
            if start + len(codes) < train_items:
                continue
            train_s, _ = _timed(lambda: index.train_codes(sample[:train_items], iters=args.train_iters))
            pending = [(sample[s : s + args.chunk], s) for s in range(0, start + len(codes), args.chunk)]
        else:
            pending = [(codes, start)]
        for chunk_codes, chunk_start in pending:
            ids = [str(i) for i in range(chunk_start, chunk_start + len(chunk_codes))]
            seconds, _ = _timed(lambda: index.add_codes(chunk_codes, ids))
            add_s += seconds
        pending = sample = None
    merge_s, _ = _timed(lambda: index.list_sizes)  # the buffered adds are merged into the lists here
    return index, {"encode_s": encode_s, "assign_and_add_s": add_s + merge_s, "train_s": train_s}


def build(args, source: EmbeddingSource, quantizer, queries: torch.Tensor, lists: int) -> tuple:
    """The main process' build: exact float search and decoding fidelity are measured on the way."""
    seen = {"truth": None, "float_s": 0.0, "cosine": 0.0}

    def observe(index, start, embeddings, codes):
        seconds, seen["truth"] = _timed(lambda: merge_topk(seen["truth"], queries @ embeddings.t(), start, args.k))
        seen["float_s"] += seconds
        seen["cosine"] += (embeddings * index.decode(codes)).sum().item()

    index, timings = stream_build(args, source, quantizer.codebook, lists, observe)
    return index, seen["truth"][1], {**timings, "float_search_s": seen["float_s"]}, seen["cosine"] / args.items


def decoded_truth(index: CodeBindIVFIndex, queries: torch.Tensor, k: int) -> list[list[str]]:
    """Brute force top-``k`` over the decoded items, streamed over the stored codes."""
    best, step, packed = None, 4096, index.packed_codes
    for start in range(0, len(index), step):
        codes = unpack_codes(packed[start : start + step], index.num_subvectors, index.bits_per_code)
        best = merge_topk(best, queries @ index.decode(codes).t(), start, k)
    ids = index.ids  # one list, not one per hit
    return [[ids[r] for r in row] for row in best[1].tolist()]


def search_figures(index: CodeBindIVFIndex, queries: torch.Tensor, args, float_truth, decoded, reference=None):
    """Exhaustive and IVF search of one backend: rates and recalls.

    With ``reference`` (another backend's exhaustive hits over the same codes) exhaustive search is timed on the
    first ``--faiss-exhaustive-queries`` queries only, and recall is measured against ``reference``.
    """
    timed_queries = queries if reference is None else queries[: args.faiss_exhaustive_queries]
    exhaustive_s, (_, exhaustive) = _timed(lambda: index.search_exhaustive(timed_queries, args.k))
    rate = len(timed_queries) / exhaustive_s
    row = {
        "exhaustive_queries_per_s": rate,
        "exhaustive_recall_at_10_vs_float": recall_at_k(exhaustive, float_truth[: len(timed_queries)]),
        "exhaustive_recall_at_10_vs_decoded": recall_at_k(exhaustive, decoded[: len(timed_queries)]),
        "ivf": {},
    }
    if reference is not None:
        row["exhaustive_same_hits_as_torch"] = recall_at_k(exhaustive, reference[: len(timed_queries)])
        exhaustive = reference
    print(
        f"  exhaustive: {rate:,.2f} queries/s (over {len(timed_queries)} queries), Recall@{args.k} vs float search "
        f"{row['exhaustive_recall_at_10_vs_float']:.3f}, vs decoded brute force {row['exhaustive_recall_at_10_vs_decoded']:.3f}"
    )
    index.search(queries[:1], args.k, nprobe=1)  # faiss fills its IndexIVFPQ on the first search
    for nprobe in [p for p in args.nprobes if p <= index.num_lists]:
        seconds, (_, found) = _timed(lambda: index.search(queries, args.k, nprobe=nprobe))
        entry = {"queries_per_s": args.queries / seconds, "recall_at_10_vs_exhaustive": recall_at_k(found, exhaustive),
                 "recall_at_10_vs_float": recall_at_k(found, float_truth)}  # fmt: skip
        entry["speedup_vs_exhaustive"] = entry["queries_per_s"] / rate
        row["ivf"][str(nprobe)] = entry
        print(
            f"  ivf nprobe={nprobe:4d}: {entry['queries_per_s']:,.1f} queries/s ({entry['speedup_vs_exhaustive']:.1f}x "
            f"exhaustive), Recall@{args.k} vs exhaustive {entry['recall_at_10_vs_exhaustive']:.3f}, vs float "
            f"{entry['recall_at_10_vs_float']:.3f}"
        )
    row["hits"] = exhaustive
    reached = [int(p) for p, e in row["ivf"].items() if e["recall_at_10_vs_exhaustive"] >= args.target_recall]
    row["nprobe"] = min(reached) if reached else max(int(p) for p in row["ivf"])
    headline = row["ivf"][str(row["nprobe"])]
    row["speedup_vs_exhaustive"] = headline["speedup_vs_exhaustive"]
    row["recall_at_10_vs_exhaustive"] = headline["recall_at_10_vs_exhaustive"]
    return row


def build_here(args, folder: Path) -> dict:
    """The fresh build process: stream, encode, add, merge and save into ``folder`` (nothing else runs here); peak
    RSS growth over this process' RSS before the index existed (after loading the codebook and the generator)."""
    from safetensors.torch import load_file

    codebook = load_file(str(folder.parent / "codebook.safetensors"))["codebook"]
    torch.manual_seed(0)  # the main process' generator: same head bias, same items
    source = EmbeddingSource(args.clusters, args.noise)
    lists = args.lists or default_lists(args.items)
    gc.collect()
    phases = {}
    with PeakRSS() as rss:
        seconds, (index, timings) = _timed(lambda: stream_build(args, source, codebook, lists))
        phases["built"] = _rss()
        index.save(folder)
        phases["saved"] = _rss()
    return {"rss_before_bytes": rss.start, "peak_rss_bytes": rss.peak, "peak_rss_growth_bytes": rss.peak - rss.start,
            "rss_after_bytes": phases, "seconds": seconds, **timings}


def build_in_fresh_process(folder: Path, codebook: torch.Tensor, argv: list[str]) -> dict:
    from safetensors.torch import save_file

    save_file({"codebook": codebook.contiguous()}, str(folder.parent / "codebook.safetensors"))
    return _in_fresh_process("build", folder, argv)


def _in_fresh_process(mode: str, folder: Path, args: list[str]) -> dict:
    """Run this script as ``--{mode} folder *args`` in a new interpreter; it prints ``MODE {json}`` last."""
    done = subprocess.run([sys.executable, __file__, f"--{mode}", str(folder), *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the {mode} process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1].removeprefix(f"{mode.upper()} "))


def same_files(first: Path, second: Path) -> bool:
    names = sorted(f.name for f in first.iterdir())
    return names == sorted(f.name for f in second.iterdir()) and all(
        (first / name).read_bytes() == (second / name).read_bytes() for name in names
    )


def serve(folder: Path, queries_file: Path, nprobe: int, k: int) -> dict:
    """The serving phase in this (fresh) process: load memory-mapped, answer the queries; RSS growth over before."""
    from safetensors.torch import load_file

    queries = load_file(str(queries_file))["queries"]
    gc.collect()
    with PeakRSS() as rss:
        index = CodeBindIVFIndex.load(folder, backend="torch")
        index.search(queries, k, nprobe=nprobe)
    with PeakRSS() as exhaustive:
        index.search_exhaustive(queries, k)  # adds its lookup tables (constant in the item count) and every code page
    return {"rss_before_bytes": rss.start, "peak_rss_bytes": rss.peak, "peak_rss_growth_bytes": rss.peak - rss.start,
            "with_exhaustive_peak_rss_growth_bytes": max(rss.peak, exhaustive.peak) - rss.start}


def serve_in_fresh_process(folder: Path, queries: torch.Tensor, nprobe: int, k: int, threads: int | None) -> dict:
    from safetensors.torch import save_file

    save_file({"queries": queries.contiguous()}, str(folder.parent / "queries.safetensors"))
    return _in_fresh_process("serve", folder, ["--nprobes", str(nprobe), "--k", str(k)]
                             + (["--threads", str(threads)] if threads else []))  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)  # the fresh serving process (internal)
    parser.add_argument("--build", default=None, help=argparse.SUPPRESS)  # the fresh build process (internal)
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--noise", type=float, default=0.5, help="per-dim noise of members around their centre")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=1024,
                        help="items generated, encoded and added at a time (their float temporaries sit beside the "
                        "growing index: 1024 keeps them to a few MiB)")  # fmt: skip
    parser.add_argument("--kmeans-iters", type=int, default=10)
    parser.add_argument("--kmeans-items", type=int, default=5000, help="items the codebook's k-means sees")
    parser.add_argument("--lists", type=int, default=None, help="IVF lists (default: power of two nearest sqrt(items))")
    parser.add_argument("--train-items", type=int, default=None, help="items the coarse k-means sees (64 per list)")
    parser.add_argument("--train-iters", type=int, default=10)
    parser.add_argument("--nprobes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--faiss-exhaustive-queries", type=int, default=20,
                        help="queries timing faiss' exhaustive IndexPQ (slow at 10-bit codes); its IVF recall is "
                        "taken against the torch exhaustive hits over the same codes")  # fmt: skip
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)  # this script's process only: a shared machine measures steadier on 1
    if args.serve:
        folder = Path(args.serve)
        print("SERVE " + json.dumps(serve(folder, folder.parent / "queries.safetensors", args.nprobes[0], args.k)))
        return {}
    if args.build:
        print("BUILD " + json.dumps(build_here(args, Path(args.build))))
        return {}
    torch.manual_seed(0)
    source = EmbeddingSource(args.clusters, args.noise)
    queries = source.queries(args.queries)
    quantizer = CompositionalQuantizer(1024, codevector_dim=8)
    first = torch.cat([e for _, e in source.items(min(args.kmeans_items, args.items), args.chunk)])
    quantizer.kmeans_init_(first, iters=args.kmeans_iters)
    del first
    lists = args.lists or default_lists(args.items)
    gc.collect()
    with tempfile.TemporaryDirectory() as tmp:
        with PeakRSS() as torch_rss:
            build_s, (index, float_truth, timings, fidelity) = _timed(lambda: build(args, source, quantizer, queries, lists))
            build_rate = args.items / (timings["encode_s"] + timings["assign_and_add_s"])
            print(
                f"build of {args.items:,} items into {lists} lists: {build_rate:,.0f} items/s (encode "
                f"{timings['encode_s']:.1f} s, assign + add {timings['assign_and_add_s']:.1f} s; coarse k-means "
                f"{timings['train_s']:.1f} s; {build_s:.0f} s with data generation)"
            )
            phases = {"built": _rss()}
            index.save(Path(tmp) / "ivf")
            phases["saved"] = _rss()
            index_bytes = sum(f.stat().st_size for f in (Path(tmp) / "ivf").iterdir())
            bytes_per_item, packed_bytes, list_sizes = index.nbytes / args.items, index.bytes_per_item, index.list_sizes
            del index
            gc.collect()
            index = CodeBindIVFIndex.load(Path(tmp) / "ivf", backend="torch", codebook=quantizer)  # codes mmapped
            phases["loaded"] = _rss()
            float_truth = [[str(r) for r in row] for row in float_truth.tolist()]
            decoded = decoded_truth(index, queries, args.k)
            phases["decoded_truth"] = _rss()
            print("torch backend:")
            torch_row = search_figures(index, queries, args, float_truth, decoded)
            phases["searched"] = _rss()
            del index
        served = serve_in_fresh_process(Path(tmp) / "ivf", queries, torch_row["nprobe"], args.k, args.threads)
        fresh = build_in_fresh_process(Path(tmp) / "ivf_fresh", quantizer.codebook, argv)
        fresh["same_index"] = same_files(Path(tmp) / "ivf", Path(tmp) / "ivf_fresh")
        torch_peak = _high_water_bytes()
        faiss_row = None
        if faiss_available():
            with PeakRSS() as faiss_rss:
                index = CodeBindIVFIndex.load(Path(tmp) / "ivf", backend="faiss")
                print("faiss backend:")
                faiss_row = search_figures(index, queries, args, float_truth, decoded, reference=torch_row["hits"])
                del index
            faiss_row["peak_rss_growth_bytes"] = faiss_rss.peak - torch_rss.start
    growth = torch_rss.peak - torch_rss.start
    for row in (torch_row, faiss_row):
        if row is not None:
            del row["hits"]
    float_bytes = EMBED_DIM * 4
    print(
        f"bytes/item: {bytes_per_item:.1f} in memory (codes {packed_bytes} + list offsets), {index_bytes / args.items:.1f} "
        f"on disk with ids (index {index_bytes / 2**20:.1f} MiB) vs {float_bytes} float32; mean cos(float, decoded) "
        f"{fidelity:.4f}; lists hold {int(list_sizes.min())}..{int(list_sizes.max())} items"
    )
    print(
        f"building (fresh process: stream, encode, add, merge, save; {'same' if fresh['same_index'] else 'NOT the same'}"
        f" index files as this process'): peak RSS growth {fresh['peak_rss_growth_bytes'] / 2**20:.0f} MiB over the "
        f"{fresh['rss_before_bytes'] / 2**20:.0f} MiB before the index = "
        f"{fresh['peak_rss_growth_bytes'] / index_bytes:.2f}x the index; RSS after "
        + ", ".join(f"{name} {value / 2**20:.0f}" for name, value in fresh["rss_after_bytes"].items())
    )
    print(
        f"this process (build with the float chunks and exact float search beside it, save, load, search): peak RSS "
        f"{torch_peak / 2**20:.0f} MiB; growth over the {torch_rss.start / 2**20:.0f} MiB before the index: "
        f"{growth / 2**20:.0f} MiB = {growth / index_bytes:.2f}x the index; RSS after "
        + ", ".join(f"{name} {value / 2**20:.0f}" for name, value in phases.items())
        + (f" (with faiss' copies: {faiss_row['peak_rss_growth_bytes'] / 2**20:.0f} MiB)" if faiss_row else "")
    )
    print(
        f"serving (fresh process: memory-mapped load, IVF search at nprobe={torch_row['nprobe']}): peak RSS growth "
        f"{served['peak_rss_growth_bytes'] / 2**20:.0f} MiB = {served['peak_rss_growth_bytes'] / index_bytes:.2f}x the "
        f"index; with an exhaustive search too: {served['with_exhaustive_peak_rss_growth_bytes'] / index_bytes:.2f}x"
    )
    result = {
        "items": args.items,
        "queries": args.queries,
        "lists": lists,
        "bytes_per_item": bytes_per_item,
        "packed_bytes_per_item": packed_bytes,
        "disk_bytes_per_item": index_bytes / args.items,
        "index_bytes": index_bytes,
        "float32_bytes_per_item": float_bytes,
        "compression_vs_float32": float_bytes / packed_bytes,
        "recall_at_10": torch_row["exhaustive_recall_at_10_vs_float"],
        "recall_at_10_vs_decoded": torch_row["exhaustive_recall_at_10_vs_decoded"],
        "mean_cosine_float_vs_decoded": fidelity,
        "build_items_per_s": build_rate,
        "build_s": timings["encode_s"] + timings["assign_and_add_s"],
        "train_s": timings["train_s"],
        "float_search_queries_per_s": args.queries / timings["float_search_s"],
        "ivf_nprobe": torch_row["nprobe"],
        "ivf_speedup_vs_exhaustive": torch_row["speedup_vs_exhaustive"],
        "ivf_recall_at_10_vs_exhaustive": torch_row["recall_at_10_vs_exhaustive"],
        "peak_rss_bytes": torch_peak,
        "rss_before_index_bytes": torch_rss.start,
        "inprocess_peak_rss_growth_bytes": growth,
        "inprocess_peak_rss_growth_vs_index": growth / index_bytes,
        "build_peak_rss_growth_bytes": fresh["peak_rss_growth_bytes"],
        "build_peak_rss_growth_vs_index": fresh["peak_rss_growth_bytes"] / index_bytes,
        "build_rss_before_bytes": fresh["rss_before_bytes"],
        "build_rss_after_bytes": fresh["rss_after_bytes"],
        "build_same_index": fresh["same_index"],
        "rss_after_bytes": phases,
        "serve_peak_rss_growth_bytes": served["peak_rss_growth_bytes"],
        "serve_peak_rss_growth_vs_index": served["peak_rss_growth_bytes"] / index_bytes,
        "serve_with_exhaustive_peak_rss_growth_vs_index": served["with_exhaustive_peak_rss_growth_bytes"] / index_bytes,
        "threads": torch.get_num_threads(),
        "torch": torch_row,
        "faiss": faiss_row,
    }
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
