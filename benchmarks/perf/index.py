"""Compact code index: bytes per item, build and query rates, and Recall@10 against exact float search.

Shared embeddings come from a model: a CodeBind shared head (``ProjectionHead``: LayerNorm + Linear, 768 -> 1024)
with random weights over clustered 768-d "tower" features (``--clusters`` centres, items and queries are noisy
members), L2-normalised as ``get_features(..., quantize=False)`` returns them. The shared codebook (K = 1024,
d* = 8, so m = 128 codes of 10 bits) is k-means-initialised on (the first ``--kmeans-items`` of) the items
(``CompositionalQuantizer.kmeans_init_``), as CodeBind training starts. Measured for the torch backend and
(when installed) the faiss backend:

- bytes/item of the packed codes (in memory and in ``codes.safetensors``) against a float32 vector (4096 B);
- build rate (float embeddings encoded and added per second; the same for both backends, faiss takes the codes as
  they are) and query rate (queries per second, k = 10), next to exact float search (one matmul + top-k over the
  float32 embeddings) measured in the same run;
- Recall@10 = |top-10 of code search ∩ top-10 of exact search over the unquantised float embeddings| / 10,
  averaged over queries; also the fraction of queries whose exact nearest neighbour is in the code top-10
  ("1-recall@10"), and Recall@10 against brute force over the decoded vectors, which must be 1.0.

Run: ``python benchmarks/perf/index.py [--items 20000]``; the last line is ``RESULT {json}`` with
``compression_vs_float32`` and ``recall_at_10`` (against exact float search, torch backend).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from codebind_hf import CompositionalQuantizer
from codebind_hf.modules.heads import ProjectionHead
from codebind_hf.index.core import CodeBindIndex
from codebind_hf.index.backends import faiss_available

EMBED_DIM = 1024
FEATURE_DIM = 768


def make_embeddings(items: int, queries: int, clusters: int, noise: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit shared embeddings `(items, 1024)` and `(queries, 1024)` from a random shared head over clustered features."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, FEATURE_DIM, generator=generator)
    labels = torch.randint(clusters, (items + queries,), generator=generator)
    features = centres[labels] + noise * torch.randn(items + queries, FEATURE_DIM, generator=generator)
    head = ProjectionHead(FEATURE_DIM, EMBED_DIM)
    torch.nn.init.normal_(head.proj.weight, std=FEATURE_DIM**-0.5, generator=generator)
    with torch.no_grad():
        shared = F.normalize(head(features), dim=-1)
    return shared[:items], shared[items:]


def recall_at_k(found: list[list[str]], truth: torch.Tensor) -> float:
    """Mean over queries of |found ∩ truth| / |truth| (ids are row numbers as strings)."""
    hits = sum(len(set(row) & {str(t) for t in true.tolist()}) for row, true in zip(found, truth))
    return hits / truth.numel()


def _timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--noise", type=float, default=0.5, help="per-dim noise of members around their centre")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--kmeans-iters", type=int, default=10)
    parser.add_argument("--kmeans-items", type=int, default=5000, help="items the codebook's k-means sees")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    items, queries = make_embeddings(args.items, args.queries, args.clusters, args.noise)
    quantizer = CompositionalQuantizer(1024, codevector_dim=8)
    quantizer.kmeans_init_(items[: args.kmeans_items], iters=args.kmeans_iters)
    float_s, exact = _timed(lambda: (queries @ items.t()).topk(args.k).indices)
    float_rate = args.queries / float_s
    print(f"exact float search: {float_rate:,.0f} queries/s over {args.items:,} float32 items")

    # Encoding (the build) does not depend on the backend: done once, the faiss index takes the same codes.
    index = CodeBindIndex.from_quantizer(quantizer, EMBED_DIM, backend="torch")
    build_s, _ = _timed(lambda: index.add(items))
    build_rate = args.items / build_s
    print(f"build: {build_rate:,.0f} items/s (encode {args.items:,} float embeddings into codes and add them)")
    backends = ["torch"] + (["faiss"] if faiss_available() else [])
    rows, found_by = {}, {}
    for backend in backends:
        coded = index if backend == "torch" else CodeBindIndex.from_quantizer(quantizer, EMBED_DIM, backend=backend)
        if coded is not index:
            coded.add_codes(index.codes, index.ids)
        setup_s, _ = _timed(lambda: coded.search(queries[:1], args.k))  # faiss fills its IndexPQ on the first search
        query_s, (_, found) = _timed(lambda: coded.search(queries, args.k))
        decoded_truth = (queries @ coded.decode().t()).topk(args.k).indices
        found_by[backend] = found
        rows[backend] = {
            "build_items_per_s": build_rate,
            "first_search_s": setup_s,
            "queries_per_s": args.queries / query_s,
            "query_rate_vs_float_search": (args.queries / query_s) / float_rate,
            "recall_at_10_vs_float": recall_at_k(found, exact),
            "recall_1_at_10_vs_float": recall_at_k(found, exact[:, :1]),
            "recall_at_10_vs_decoded": recall_at_k(found, decoded_truth),
        }
        row = rows[backend]
        print(
            f"{backend:5s}: {row['queries_per_s']:,.0f} queries/s ({row['query_rate_vs_float_search']:.2f}x exact float "
            f"search; first search {setup_s * 1e3:.0f} ms), Recall@{args.k} vs float search {row['recall_at_10_vs_float']:.3f} "
            f"(nearest neighbour in top {args.k}: {row['recall_1_at_10_vs_float']:.3f}), vs decoded brute force "
            f"{row['recall_at_10_vs_decoded']:.3f}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        index.save(Path(tmp) / "index")
        disk_per_item = (Path(tmp) / "index" / "codes.safetensors").stat().st_size / args.items
    fidelity = (items * index.decode()).sum(-1).mean().item()
    float_bytes = EMBED_DIM * 4
    compression = float_bytes / index.bytes_per_item
    print(
        f"bytes/item: {index.bytes_per_item} ({index.num_subvectors} codes x {index.bits_per_code} bits; in memory "
        f"{index.nbytes / args.items:.1f}, codes.safetensors {disk_per_item:.1f}) vs {float_bytes} float32 -> "
        f"{compression:.1f}x smaller; mean cos(float, decoded) {fidelity:.4f}"
    )
    result = {
        "items": args.items,
        "queries": args.queries,
        "bytes_per_item": index.bytes_per_item,
        "disk_bytes_per_item": disk_per_item,
        "float32_bytes_per_item": float_bytes,
        "compression_vs_float32": compression,
        "recall_at_10": rows["torch"]["recall_at_10_vs_float"],
        "recall_at_10_vs_decoded": rows["torch"]["recall_at_10_vs_decoded"],
        "mean_cosine_float_vs_decoded": fidelity,
        "build_items_per_s": build_rate,
        "float_search_queries_per_s": float_rate,
        "threads": torch.get_num_threads(),
        "backends": rows,
    }
    if len(found_by) == 2:
        result["backends_same_neighbours"] = sum(a == b for a, b in zip(*found_by.values())) / args.queries
        print(f"torch and faiss return the same top-{args.k} lists for {result['backends_same_neighbours']:.1%} of queries")
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
