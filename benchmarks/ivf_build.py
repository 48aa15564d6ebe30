"""What a 1M IVF build's vector work costs, and what each cheaper variant costs in query time.

The corpus is the speed benchmark's (``kshot.bench.speed.corpus``: 10,000 real MiniLM vectors and
noisy copies of them), the queries its 200 held-out real sentences. For each variant the program
trains the index on a 40-per-list sample (seeded), adds every vector, and times single-query
searches at several ``nprobe``, with recall@10 against exact search:

- ``IVF2048,Flat``: FAISS's own training (k-means, 10 iterations as kshot trains it) and add;
- ``IVF2048_HNSW32,Flat``: an HNSW graph over the centroids assigns the vectors;
- ``IVF2048(IVF64,Flat),Flat``: a nested IVF over the centroids assigns them (``--probe-add`` of
  its 64 lists probed when adding, ``--probe-search`` when searching);
- a ``+2level`` suffix: the centroids from two-level k-means (``sqrt(nlist)`` coarse clusters,
  each split into sub-clusters in proportion to its size, spherical), then FAISS's training of
  the rest.

    OMP_NUM_THREADS=1 python benchmarks/ivf_build.py --n 1000000 --out results.json

One thread throughout (``faiss.omp_set_num_threads(1)``); prints a markdown table; ``--out``
writes the figures and the environment (config, versions, machine) as JSON. It measures FAISS
itself, not kshot's build (``python -m kshot.bench.speed.table`` times that).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from kshot.bench.environment import capture_environment
from kshot.bench.speed.config import SpeedConfig
from kshot.bench.speed.data import load_data

Floats = npt.NDArray[np.float32]

VARIANTS = (
    "IVF2048,Flat",
    "IVF2048_HNSW32,Flat",
    "IVF2048(IVF64,Flat),Flat",
    "IVF2048,Flat+2level",
    "IVF1024,Flat",
)
NPROBES = (8, 12, 16, 24, 32)


def two_level_centroids(sample: Floats, nlist: int, niter: int, seed: int) -> Floats:
    """``nlist`` unit centroids: ``sqrt(nlist)`` coarse clusters, each split by its share."""
    dim = sample.shape[1]
    coarse = max(1, round(float(np.sqrt(nlist))))
    # Every sample point trains (FAISS would subsample to 256 a centroid at the coarse level).
    every = len(sample)
    top = faiss.Kmeans(
        dim, coarse, niter=niter, seed=seed, spherical=True, max_points_per_centroid=every
    )
    top.train(sample)
    _, assigned = top.index.search(sample, 1)
    owner = assigned[:, 0]
    cumulative = np.cumsum(np.bincount(owner, minlength=coarse))
    shares = cumulative * nlist // cumulative[-1]
    shares[1:] -= shares[:-1]
    parts: list[Floats] = []
    for cluster in range(coarse):
        points = np.ascontiguousarray(sample[owner == cluster])
        share = int(shares[cluster])
        if share == 0:
            continue
        if share >= len(points):  # a cluster with fewer points than its share keeps them all
            parts.append(points[:share])
            continue
        sub = faiss.Kmeans(
            dim,
            share,
            niter=niter,
            seed=seed + cluster,
            spherical=True,
            max_points_per_centroid=every,
        )
        sub.train(points)
        parts.append(sub.centroids)
    return np.vstack(parts).astype(np.float32)


def measure(
    variant: str, vectors: Floats, queries: Floats, truth: Any, args: argparse.Namespace
) -> dict[str, Any]:
    """Train, add and search one variant; its times and recall / latency per nprobe."""
    factory, _, training = variant.partition("+")
    index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.niter = args.niter
    rng = np.random.default_rng(args.seed)
    size = min(len(vectors), 40 * ivf.nlist)
    sample = vectors[rng.choice(len(vectors), size=size, replace=False)]
    quantizer = faiss.downcast_index(ivf.quantizer)
    start = time.perf_counter()
    if training == "2level":
        centroids = two_level_centroids(sample, ivf.nlist, args.niter, args.seed)
        quantizer.train(centroids)
        quantizer.add(centroids)
    index.train(sample)
    train_s = time.perf_counter() - start
    if isinstance(quantizer, faiss.IndexIVF):
        quantizer.nprobe = args.probe_add
    start = time.perf_counter()
    index.add(vectors)
    add_s = time.perf_counter() - start
    if isinstance(quantizer, faiss.IndexIVF):
        quantizer.nprobe = args.probe_search
    searches = []
    for nprobe in NPROBES:
        ivf.nprobe = nprobe
        start = time.perf_counter()
        found = np.vstack([index.search(queries[i : i + 1], 10)[1] for i in range(len(queries))])
        ms = (time.perf_counter() - start) / len(queries) * 1e3
        hits = sum(len(set(a) & set(b)) for a, b in zip(found, truth, strict=True))
        searches.append({"nprobe": nprobe, "recall_at_10": hits / truth.size, "ms": ms})
    return {"variant": variant, "train_s": train_s, "add_s": add_s, "search": searches}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--variants", default=";".join(VARIANTS), help="';'-separated")
    parser.add_argument("--niter", type=int, default=10, help="k-means iterations")
    parser.add_argument("--probe-add", type=int, default=4)
    parser.add_argument("--probe-search", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    data = load_data(args.n, SpeedConfig(), None)
    queries = np.ascontiguousarray(data.query_vectors[:200])
    exact = faiss.IndexFlatIP(data.vectors.shape[1])
    exact.add(data.vectors)
    _, truth = exact.search(queries, 10)
    del exact
    rows = [measure(v, data.vectors, queries, truth, args) for v in args.variants.split(";")]
    print("| variant | train s | add s | " + " | ".join(f"nprobe {p}" for p in NPROBES) + " |")
    print("|---|---:|---:|" + "---|" * len(NPROBES))
    for row in rows:
        cells = " | ".join(f"{s['recall_at_10']:.3f} / {s['ms']:.2f} ms" for s in row["search"])
        print(f"| `{row['variant']}` | {row['train_s']:.1f} | {row['add_s']:.1f} | {cells} |")
    if args.out:
        environment = capture_environment(vars(args) | {"out": str(args.out)}, "cpu")
        args.out.write_text(json.dumps({"results": rows, **environment}, indent=2) + "\n")


if __name__ == "__main__":
    main()
