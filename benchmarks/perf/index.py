"""Compact code index: bytes per item, build and query rates, and Recall@10 against exact float search.

Shared embeddings come from a model: a `CodeBindModel`-style shared head (LayerNorm + Linear, 1024-d out)
over clustered 768-d "tower" features (``--clusters`` groups, items are noisy members); the shared codebook
(K = 1024, d* = 8) is k-means-initialised on the training half as CodeBind training does. Queries are
held-out noisy members. Measured for the torch and (when installed) faiss backends:
- bytes/item of the bit-packed codes vs 4096 bytes of a float32 1024-d vector;
- build rate (embeddings encoded and added per second) and query rate (queries per second, k = 10);
- Recall@10 of code search against exact search over the *float* shared embeddings, and against brute force
  over the decoded vectors (which must be 1.0).
Run: ``python benchmarks/perf/index.py [--items 20000]``; last line ``RESULT {json}`` with
``compression_vs_float32`` and ``recall_at_10``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time

import torch
import torch.nn.functional as F

from codebind_hf import CompositionalQuantizer
from codebind_hf.heads import ProjectionHead
from codebind_hf.index import CodeBindIndex


def make_embeddings(items: int, queries: int, clusters: int, noise: float, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, 768, generator=generator)
    labels = torch.randint(clusters, (items + queries,), generator=generator)
    features = centres[labels] + noise * torch.randn(items + queries, 768, generator=generator)
    head = ProjectionHead(768, 1024)
    torch.nn.init.normal_(head.proj.weight, std=768**-0.5, generator=generator)
    with torch.no_grad():
        shared = F.normalize(head(features), dim=-1)
    return shared[:items], shared[items:]


def recall_at_k(found: list[list[str]], truth: torch.Tensor) -> float:
    hits = sum(len(set(row) & {str(t) for t in true.tolist()}) for row, true in zip(found, truth))
    return hits / truth.numel()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    items, queries = make_embeddings(args.items, args.queries, args.clusters, args.noise)
    quantizer = CompositionalQuantizer(1024, codevector_dim=8)
    quantizer.kmeans_init_(items[: args.items // 2], iters=10)
    exact = (queries @ items.t()).topk(args.k).indices
    backends = ["torch"] + (["faiss"] if importlib.util.find_spec("faiss") else [])
    rows = {}
    for backend in backends:
        index = CodeBindIndex(quantizer.codebook, 1024, backend=backend)
        start = time.perf_counter()
        index.add(items)
        build = args.items / (time.perf_counter() - start)
        index.search(queries[:2], args.k)  # warm-up (faiss builds its IndexPQ here)
        start = time.perf_counter()
        _, found = index.search(queries, args.k)
        query_rate = args.queries / (time.perf_counter() - start)
        decoded_truth = (queries @ index.decode().t()).topk(args.k).indices
        rows[backend] = {
            "build_items_per_s": build,
            "queries_per_s": query_rate,
            "recall_at_10_vs_float": recall_at_k(found, exact),
            "recall_at_10_vs_decoded": recall_at_k(found, decoded_truth),
        }
        print(
            f"{backend:5s}: build {build:,.0f} items/s, {query_rate:,.0f} queries/s over {args.items:,} items, "
            f"Recall@{args.k} vs float search {rows[backend]['recall_at_10_vs_float']:.3f}, "
            f"vs decoded brute force {rows[backend]['recall_at_10_vs_decoded']:.3f}"
        )
    index = CodeBindIndex(quantizer.codebook, 1024, backend="torch")
    compression = 1024 * 4 / index.bytes_per_item
    print(f"bytes/item: {index.bytes_per_item} (codes, 10 bits x 128) vs 4096 float32 -> {compression:.1f}x smaller")
    result = {
        "items": args.items,
        "bytes_per_item": index.bytes_per_item,
        "compression_vs_float32": compression,
        "recall_at_10": rows["torch"]["recall_at_10_vs_float"],
        "backends": rows,
    }
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
