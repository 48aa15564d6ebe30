"""The GPU measurements, as one script that fits in ten minutes on one H100-class GPU.

Two figures, each written with the device it ran on:

1. encode throughput of the bundled all-MiniLM-L6-v2 through kshot's encoder (half precision on
   CUDA, as kshot uses it) over ``--sentences`` real and spliced sentences of the speed
   benchmark's corpus, for several batch sizes; beside it fp32 at the best batch size, and the
   top-10 neighbour agreement of fp16 against fp32 on 200 held-out queries (so the speed does
   not hide a quality loss). Goal: at least 20k sentences/s.
2. the end-to-end build of a ``--build-rows`` index (1M by default): texts in, encoding on the
   GPU, storing, the default FAISS factory with its recall tuning, saved to disk; each phase
   timed, with the process's peak resident memory.

Usage (on the GPU machine, from the repository root)::

    OMP_NUM_THREADS=8 python benchmarks/gpu.py [--out benchmarks/results/gpu]

Without a GPU the script refuses unless ``--allow-cpu`` (a small smoke run of the same code:
``python benchmarks/gpu.py --allow-cpu --sentences 512 --build-rows 2000 --out /tmp/gpu``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from kshot.bench.environment import capture_environment
from kshot.bench.speed.corpus import corpus_texts
from kshot.bench.speed.timing import peak_rss_mb
from kshot.index import ExampleIndex, SentenceTransformerEncoder, resolve_device
from kshot.types import Example

logger = logging.getLogger("benchmarks.gpu")

GOAL_SENTENCES_PER_S = 20_000
BATCH_SIZES = (128, 256, 512, 1024)
HELD_OUT = 200


def _encode_rate(encoder: SentenceTransformerEncoder, texts: list[str], batch: int) -> float:
    encoder.encode(texts[: batch * 2], batch_size=batch, show_progress=False)  # warm-up
    _sync(encoder.device)
    start = time.perf_counter()
    encoder.encode(texts, batch_size=batch, show_progress=False)
    _sync(encoder.device)
    return len(texts) / (time.perf_counter() - start)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _top10(queries: np.ndarray, corpus: np.ndarray) -> np.ndarray:
    return np.argsort(-(queries @ corpus.T), axis=1, kind="stable")[:, :10]


def encode_throughput(device: str, sentences: int, seed: int) -> dict[str, Any]:
    """Sentences/s of MiniLM at each batch size (fp16 on CUDA), fp32 beside, top-10 agreement."""
    texts, queries = corpus_texts(sentences, HELD_OUT, seed)
    half = SentenceTransformerEncoder(device=device)
    rates = {str(b): _encode_rate(half, texts, b) for b in BATCH_SIZES}
    best_batch = int(max(rates, key=lambda b: rates[b]))
    full = SentenceTransformerEncoder(device=device, half_precision=False)
    fp32_rate = _encode_rate(full, texts, best_batch)
    sample = texts[:20_000]
    agreement = _top10(
        half.encode(queries, batch_size=best_batch), half.encode(sample, batch_size=best_batch)
    )
    reference = _top10(
        full.encode(queries, batch_size=best_batch), full.encode(sample, batch_size=best_batch)
    )
    overlap = np.mean(
        [len(set(a) & set(b)) / 10 for a, b in zip(agreement, reference, strict=True)]
    )
    best = rates[str(best_batch)]
    return {
        "sentences": len(texts),
        "half_precision": device.startswith("cuda"),
        "sentences_per_s_by_batch": rates,
        "best_batch_size": best_batch,
        "best_sentences_per_s": best,
        "fp32_sentences_per_s": fp32_rate,
        "speedup_vs_fp32": best / fp32_rate,
        "top10_agreement_vs_fp32": float(overlap),
        "top10_setup": f"{len(queries)} held-out queries against {len(sample)} corpus sentences",
        "goal_sentences_per_s": GOAL_SENTENCES_PER_S,
        "goal_met": best >= GOAL_SENTENCES_PER_S,
    }


def build_end_to_end(device: str, rows: int, seed: int, batch_size: int) -> dict[str, Any]:
    """Time a ``rows``-example build from texts: encode on ``device``, store, index, save."""
    texts, _ = corpus_texts(rows, HELD_OUT, seed)
    examples = [Example(id=str(i), input=t, label=None) for i, t in enumerate(texts)]
    encoder = SentenceTransformerEncoder(device=device)
    start = time.perf_counter()
    vectors = encoder.encode(texts, batch_size=batch_size, show_progress=True)
    _sync(device)
    encoded = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        index = ExampleIndex.build(
            examples, encoder, embeddings=vectors, path=Path(tmp) / "index", seed=seed
        )
        built = time.perf_counter()
        info = index.info()
        index.close()
    return {
        "rows": rows,
        "batch_size": batch_size,
        "encode_s": encoded - start,
        "store_and_index_s": built - encoded,
        "total_s": built - start,
        "rows_per_s": rows / (built - start),
        "factory": info.get("factory"),
        "recall_at_10": info.get("recall_at_10"),
        "peak_rss_mb": peak_rss_mb(),
    }


def _markdown(result: dict[str, Any]) -> str:
    enc, build = result["encode"], result["build"]
    gpu = result["environment"]["machine"].get("gpu", result["device"])
    lines = [
        f"# GPU measurements ({gpu})",
        "",
        f"Command: `{result['command']}`",
        "",
        "## MiniLM encode throughput",
        "",
        "| batch size | sentences/s |",
        "|---:|---:|",
        *(f"| {b} | {r:,.0f} |" for b, r in enc["sentences_per_s_by_batch"].items()),
        "",
        f"Best {enc['best_sentences_per_s']:,.0f} sentences/s at batch {enc['best_batch_size']} "
        f"({'half' if enc['half_precision'] else 'full'} precision); fp32 "
        f"{enc['fp32_sentences_per_s']:,.0f} ({enc['speedup_vs_fp32']:.2f}x); top-10 agreement "
        f"with fp32 {enc['top10_agreement_vs_fp32']:.3f} ({enc['top10_setup']}). Goal "
        f"{GOAL_SENTENCES_PER_S:,} sentences/s: {'met' if enc['goal_met'] else 'missed'}.",
        "",
        f"## Build of {build['rows']:,} examples from text",
        "",
        f"Encode {build['encode_s']:.1f} s, store and index {build['store_and_index_s']:.1f} s, "
        f"total {build['total_s']:.1f} s ({build['rows_per_s']:,.0f} rows/s); factory "
        f"`{build['factory']}`, recall@10 {build['recall_at_10']}; peak resident "
        f"{build['peak_rss_mb']:,.0f} MiB.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run both measurements and write ``results.json`` / ``results.md`` under ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cuda, cuda:1, ...")
    parser.add_argument("--sentences", type=int, default=200_000)
    parser.add_argument("--build-rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu"))
    parser.add_argument("--allow-cpu", action="store_true", help="a smoke run without a GPU")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    device = resolve_device(args.device)
    if not device.startswith("cuda") and not args.allow_cpu:
        sys.stderr.write(f"error: no CUDA device (resolved {device!r}); pass --allow-cpu\n")
        return 2
    config = {k: str(v) for k, v in vars(args).items()}
    encode = encode_throughput(device, args.sentences, args.seed)
    build = build_end_to_end(device, args.build_rows, args.seed, encode["best_batch_size"])
    result = {
        "command": "python benchmarks/gpu.py " + " ".join(argv or sys.argv[1:]),
        "device": device,
        "encode": encode,
        "build": build,
        "environment": capture_environment(config, device),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "results.md").write_text(_markdown(result))
    logger.info("results in %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
