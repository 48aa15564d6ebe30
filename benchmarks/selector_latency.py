"""Selection latency (p50/p99 per query) and batch throughput of every registered selector.

Corpora:

- ``banking77``: the BANKING77 train split (9,003 examples) embedded with the real
  all-MiniLM-L6-v2 model; queries from the test split.
- ``synthetic``: ``--size`` examples (100,000 by default) of text drawn from a seeded Zipf
  vocabulary with 100 labels, embedded with ``HashingEncoder(384)``; queries drawn the same way.

For each selector the program times ``select(query, k)`` one query at a time, twice: with the
query encoding included (the encoder's query cache off, every query encoded afresh) and with the
query vectors looked up from a table (selection alone). It times the encoder alone too, and
``select_batch`` over a batch of ``--batch`` queries (encoding included), as queries per second.

    python benchmarks/selector_latency.py --corpus all --k 4 --repeat 200 --out results.json

Prints a markdown table; ``--out`` writes the numbers and the configuration (sizes, seeds,
machine, library versions) as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kshot.bench.environment import capture_environment
from kshot.bench.lookup import LookupEncoder
from kshot.index.encoder import Encoder, HashingEncoder, SentenceTransformerEncoder
from kshot.index.example_index import ExampleIndex
from kshot.selector import available_selectors, build_selector
from kshot.types import Example

log = logging.getLogger("selector_latency")


# -- corpora --------------------------------------------------------------------------------
def banking77(size: int | None, n_queries: int, seed: int) -> tuple[list[Example], list[str]]:
    from kshot.data import load_dataset

    train = load_dataset("banking77", "train")
    test = load_dataset("banking77", "test")
    corpus = train[:size] if size else train
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(test), size=min(n_queries, len(test)), replace=False)
    return corpus, [test[i].input for i in picks]


def synthetic(size: int, n_queries: int, seed: int) -> tuple[list[Example], list[str]]:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = sorted({"".join(rng.choice(letters, size=rng.integers(3, 9))) for _ in range(6000)})
    vocab_arr = np.array(vocab)
    zipf = 1.0 / np.arange(1, len(vocab) + 1) ** 1.1
    zipf /= zipf.sum()
    n_labels = 100
    topics = [rng.choice(len(vocab), size=40, replace=False) for _ in range(n_labels)]

    def text(label: int) -> str:
        n = int(rng.integers(5, 16))
        common = rng.choice(len(vocab), size=n, p=zipf)
        topical = rng.choice(topics[label], size=max(1, n // 3))
        words = np.concatenate([common, topical])
        rng.shuffle(words)
        return " ".join(vocab_arr[words])

    labels = rng.integers(0, n_labels, size=size + n_queries)
    corpus = [
        Example(
            input=text(int(labels[i])),
            output=f"label {labels[i]}",
            label=f"L{labels[i]:03d}",
            metadata={"bucket": i % 10},
            id=f"s{i}",
        )
        for i in range(size)
    ]
    queries = [text(int(labels[size + i])) for i in range(n_queries)]
    return corpus, queries


def cached_embeddings(
    cache: Path | None, key: str, corpus: list[Example], encoder: Encoder
) -> np.ndarray:
    """Corpus embeddings, from ``cache`` when present there (they depend on key and encoder)."""
    path = None if cache is None else cache / f"{key}-{encoder.name.replace('/', '_')}.npy"
    if path is not None and path.is_file():
        array = np.load(path)
        if array.shape == (len(corpus), encoder.dim):
            log.info("corpus embeddings from %s", path)
            return array
    vectors = encoder.encode([ex.input for ex in corpus], batch_size=256, show_progress=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
    return vectors


# -- timing ---------------------------------------------------------------------------------
def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
    }


def time_single(fn: Any, queries: list[str], repeat: int, warmup: int = 5) -> list[float]:
    for query in queries[-warmup:]:
        fn(query)
    times = []
    for i in range(repeat):
        query = queries[i % len(queries)]
        start = time.perf_counter()
        fn(query)
        times.append(time.perf_counter() - start)
    return times


def run_corpus(
    name: str,
    corpus: list[Example],
    queries: list[str],
    encoder: LookupEncoder,
    args: argparse.Namespace,
) -> dict[str, Any]:
    start = time.perf_counter()
    key = f"{name}-{len(corpus)}-seed{args.seed}"
    embeddings = cached_embeddings(args.cache, key, corpus, encoder.inner)
    embed_s = time.perf_counter() - start
    start = time.perf_counter()
    index = ExampleIndex.build(corpus, encoder, embeddings=embeddings)
    build_s = time.perf_counter() - start
    log.info(
        "%s: %d examples, embedded in %.1fs, indexed in %.1fs", name, len(index), embed_s, build_s
    )

    single_queries = queries[: args.repeat]
    batch_queries = queries[-args.batch :]
    encoder.remember(queries)
    encoder.lookup = False
    encode_one = time_single(lambda q: encoder.encode([q]), single_queries, args.repeat)
    encode_batch = []
    for _ in range(args.batch_repeat):
        t0 = time.perf_counter()
        encoder.encode(batch_queries)
        encode_batch.append(time.perf_counter() - t0)
    rows: list[dict[str, Any]] = [
        {
            "selector": "(encoder only)",
            "with_encoding": percentiles(encode_one),
            "selection_only": None,
            "batch_qps": args.batch / float(np.median(encode_batch)),
        }
    ]
    for selector_name in available_selectors():
        selector = build_selector(index, selector_name)
        encoder.lookup = True
        selector.select_batch(queries[:8], args.k)  # lazy structures (BM25, IDF) built here
        only = time_single(lambda q, s=selector: s.select(q, args.k), single_queries, args.repeat)
        encoder.lookup = False
        full = time_single(lambda q, s=selector: s.select(q, args.k), single_queries, args.repeat)
        batch_times = []
        for _ in range(args.batch_repeat):
            t0 = time.perf_counter()
            selector.select_batch(batch_queries, args.k)
            batch_times.append(time.perf_counter() - t0)
        row = {
            "selector": selector_name,
            "params": selector.params.to_dict(),
            "with_encoding": percentiles(full),
            "selection_only": percentiles(only),
            "batch_qps": args.batch / float(np.median(batch_times)),
        }
        log.info("%s %s: p50 %.2f ms", name, selector_name, row["with_encoding"]["p50_ms"])
        rows.append(row)
    return {
        "corpus": name,
        "size": len(index),
        "encoder": encoder.name,
        "factory": index.factory,
        "embed_seconds": embed_s,
        "build_seconds": build_s,
        "n_queries": len(queries),
        "results": rows,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"k = {report['config']['k']}, {report['config']['repeat']} single queries, batch of "
        f"{report['config']['batch']}; times in ms",
        "",
        "| corpus | n | selector | p50 | p99 | p50 selection only | p99 selection only "
        "| batch queries/s |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for block in report["corpora"]:
        for row in block["results"]:
            full, only = row["with_encoding"], row["selection_only"]
            only50 = "-" if only is None else f"{only['p50_ms']:.2f}"
            only99 = "-" if only is None else f"{only['p99_ms']:.2f}"
            lines.append(
                f"| {block['corpus']} | {block['size']:,} | {row['selector']} "
                f"| {full['p50_ms']:.2f} | {full['p99_ms']:.2f} | {only50} | {only99} "
                f"| {row['batch_qps']:,.0f} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=["banking77", "synthetic", "all"], default="all")
    parser.add_argument(
        "--size", type=int, default=None, help="corpus size (default: 9,003 / 100,000)"
    )
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=200, help="single queries timed per selector")
    parser.add_argument("--batch", type=int, default=256, help="queries in a select_batch call")
    parser.add_argument("--batch-repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="device of the MiniLM encoder")
    parser.add_argument(
        "--faiss-threads", type=int, default=0, help="OpenMP threads for FAISS (0: its default)"
    )
    parser.add_argument(
        "--torch-threads", type=int, default=0, help="intra-op threads for torch (0: its default)"
    )
    parser.add_argument("--cache", type=Path, default=None, help="directory to cache embeddings")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import faiss

    if args.faiss_threads:
        faiss.omp_set_num_threads(args.faiss_threads)
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    n_queries = max(args.repeat, args.batch) + 8
    corpora = ["banking77", "synthetic"] if args.corpus == "all" else [args.corpus]
    blocks = []
    for name in corpora:
        if name == "banking77":
            corpus, queries = banking77(args.size, n_queries, args.seed)
            inner: Encoder = SentenceTransformerEncoder(device=args.device, query_cache_size=0)
        else:
            corpus, queries = synthetic(args.size or 100_000, n_queries, args.seed)
            inner = HashingEncoder(384)
        encoder = LookupEncoder(inner)
        encoder.lookup = False  # timed calls run the model; run_corpus switches to the table
        blocks.append(run_corpus(name, corpus, queries, encoder, args))
    environment = capture_environment({}, args.device)
    report = {
        "config": {
            "k": args.k,
            "repeat": args.repeat,
            "batch": args.batch,
            "batch_repeat": args.batch_repeat,
            "seed": args.seed,
            "faiss_threads": faiss.omp_get_max_threads(),
            "torch_threads": args.torch_threads or "default",
            "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
            "machine": environment["machine"],
            "versions": environment["versions"],
        },
        "corpora": blocks,
    }
    table = markdown(report)
    log.info("results\n%s", table)
    if args.out is not None:
        args.out.write_text(json.dumps({**report, "markdown": table}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
