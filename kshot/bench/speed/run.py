"""One speed run and its command line (``kshot bench speed``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kshot.bench.environment import capture_environment
from kshot.bench.speed.compare import compare_at, lexical_vs_ngram, mmr_rerank
from kshot.bench.speed.config import SpeedConfig
from kshot.bench.speed.data import load_data, minilm_encoder
from kshot.bench.speed.encoder import encoder_speed
from kshot.bench.speed.http import http_vs_fastapi
from kshot.bench.speed.report import previous_targets
from kshot.bench.speed.scale import at_scale

logger = logging.getLogger(__name__)

_DESCRIPTION = (
    "Speed benchmark: kshot against LangChain's example selectors, and kshot alone at scale."
)

Floats = npt.NDArray[np.float32]


def _set_threads(n: int) -> None:
    import faiss
    import torch

    faiss.omp_set_num_threads(n)
    torch.set_num_threads(n)
    os.environ["KSHOT_BENCH_THREADS"] = str(n)


def run_speed(config: SpeedConfig) -> Path:
    """Run the benchmark, write ``results.json``, ``results.md`` and the plot; return the folder.

    An existing ``results.json`` in ``config.out`` is merged: a scale-only run adds its ``scale``
    section to the comparison results, and the markdown and plot are redrawn from the merged file.
    """
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    previous: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    results: dict[str, Any] = dict(previous)
    # Read before the run, so that a bad file is refused before minutes of measuring.
    before = previous_targets(Path(config.previous)) if config.previous is not None else None
    started = datetime.now(UTC).isoformat(timespec="seconds")
    run_info = {
        **capture_environment(dataclasses.asdict(config), "cpu"),
        "started": started,
    }
    _set_threads(config.threads)
    real_encoder = None
    if config.compare and config.sizes:
        real_encoder = minilm_encoder()
        results["compare"] = {str(n): compare_at(n, config, real_encoder) for n in config.sizes}
        smallest = load_data(min(config.sizes), config, real_encoder.encode)
        results["mmr_rerank"] = mmr_rerank(smallest, config)
        results["lexical_vs_ngram"] = lexical_vs_ngram(config)
        results["compare_run"] = run_info
    if config.encoder:
        results["encoder"] = encoder_speed(config)
        results["encoder_run"] = run_info
    if config.scale:
        results["scale"] = at_scale(config.scale, config)
        results["scale_run"] = run_info
    if config.http:
        results["http"] = http_vs_fastapi(config)
        results["http_run"] = run_info
    if before is not None:
        results["previous"] = before
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=float) + "\n")
    os.replace(tmp, path)
    from kshot.bench.speed.report import write_markdown, write_plot

    write_markdown(results, out / "results.md")
    write_plot(results, out / "latency_vs_size.png")
    return out


def _parse(argv: Sequence[str] | None) -> SpeedConfig:
    p = argparse.ArgumentParser(prog="kshot-bench-speed", description=_DESCRIPTION)
    p.add_argument("--out", default=SpeedConfig.out)
    p.add_argument("--sizes", default="10000,100000", help="comma-separated; '' for none")
    p.add_argument("--scale", type=int, default=None, help="also measure kshot alone at this size")
    p.add_argument("--no-compare", action="store_true", help="skip the LangChain comparison")
    p.add_argument("--no-encoder", action="store_true", help="skip the encoder throughput")
    p.add_argument("--no-http", action="store_true", help="skip kshot serve vs bare FastAPI")
    p.add_argument("--http-requests", type=int, default=SpeedConfig.http_requests)
    p.add_argument("--k", type=int, default=SpeedConfig.k)
    p.add_argument("--fetch-k", type=int, default=SpeedConfig.fetch_k)
    p.add_argument("--queries", type=int, default=SpeedConfig.n_queries)
    p.add_argument("--e2e-queries", type=int, default=SpeedConfig.n_e2e_queries)
    p.add_argument("--batch", type=int, default=SpeedConfig.batch_size)
    p.add_argument("--embed-rows", type=int, default=SpeedConfig.embed_rows)
    p.add_argument("--ngram-size", type=int, default=SpeedConfig.ngram_size)
    p.add_argument("--ngram-queries", type=int, default=SpeedConfig.n_ngram_queries)
    p.add_argument("--onnx-path", default=None)
    p.add_argument("--nltk-path", default=None)
    p.add_argument("--seed", type=int, default=SpeedConfig.seed)
    p.add_argument("--threads", type=int, default=SpeedConfig.threads)
    p.add_argument("--ivf-from", type=int, default=SpeedConfig.ivf_from)
    p.add_argument("--scale-factory", default=None, help="FAISS factory for --scale")
    p.add_argument(
        "--previous",
        default=None,
        help="an earlier run's results.json: the targets table shows its figures beside these",
    )
    a = p.parse_args(argv)
    sizes = tuple(int(s) for s in a.sizes.split(",") if s.strip())
    return SpeedConfig(
        out=a.out,
        sizes=sizes,
        scale=a.scale,
        compare=not a.no_compare,
        encoder=not a.no_encoder,
        http=not a.no_http,
        http_requests=a.http_requests,
        k=a.k,
        fetch_k=a.fetch_k,
        n_queries=a.queries,
        n_e2e_queries=a.e2e_queries,
        batch_size=a.batch,
        embed_rows=a.embed_rows,
        ngram_size=a.ngram_size,
        n_ngram_queries=a.ngram_queries,
        onnx_path=a.onnx_path,
        nltk_path=a.nltk_path,
        seed=a.seed,
        threads=a.threads,
        ivf_from=a.ivf_from,
        scale_factory=a.scale_factory,
        previous=a.previous,
    )


def run_from_argv(argv: Sequence[str] | None = None) -> Path:
    """Parse the options, log at INFO to stderr, run the benchmark; return the results folder."""
    config = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return run_speed(config)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: ``python -m kshot.bench.speed --help``."""
    out = run_from_argv(argv)
    logger.info("results in %s", out / "results.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
