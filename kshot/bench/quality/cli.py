"""The quality benchmark's command line: options over a JSON config file, logging, the run.

``kshot bench quality`` and ``python -m benchmarks.quality.run`` both call :func:`run_from_argv`.
Every option overrides the ``--config`` file's value.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from kshot.bench.quality.config import BASELINES, QualityConfig
from kshot.bench.quality.runner import run_quality
from kshot.errors import KshotError
from kshot.model.labels import PREDICT_MODES

__all__ = ["build_parser", "config_from_argv", "main", "run_from_argv"]

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the quality benchmark (each overrides the ``--config`` file)."""
    p = argparse.ArgumentParser(
        prog="kshot-bench-quality",
        description="Dynamic in-context examples against fine-tuned baselines.",
    )
    p.add_argument("--config", help="a JSON config file (see benchmarks/quality/configs/)")
    p.add_argument("--dataset", help="a registered data set: banking77, movie-sentiment, ...")
    p.add_argument("--train-file", help="labelled training file (JSONL in kshot's format)")
    p.add_argument("--test-file", help="labelled test file")
    p.add_argument("--out", dest="out_dir", help="results directory")
    p.add_argument("--limit-test", type=int, help="test rows to keep (seeded, stratified)")
    p.add_argument("--limit-train", type=int, help="training rows to keep (seeded, stratified)")
    p.add_argument("--seed", type=int)
    p.add_argument("--model", help="causal LM name/path (default: bundled SmolLM2-135M)")
    p.add_argument("--encoder", help="sentence-transformers model (default: bundled MiniLM)")
    p.add_argument("--device", help="auto, cpu, cuda, mps")
    p.add_argument("--threads", dest="torch_threads", type=int, help="torch CPU threads")
    p.add_argument("--ks", help="comma-separated k values, e.g. 1,2,4,8")
    p.add_argument("--strategies", help="comma-separated selector names")
    p.add_argument("--random-seeds", help="comma-separated seeds of the random strategy")
    p.add_argument("--baselines", help=f"comma-separated subset of {','.join(BASELINES)}")
    p.add_argument("--predict", choices=PREDICT_MODES)
    p.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--epochs", type=float, help="training epochs of the LM baselines")
    p.add_argument("--max-steps", type=int, help="training steps of every LM baseline")
    p.add_argument("--weights-dir", help="cache of trained weights and embeddings")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    return p


def config_from_argv(argv: Sequence[str] | None = None) -> QualityConfig:
    """The configuration the command-line options (and their ``--config`` file) describe."""
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k != "config" and v is not None}
    if args.config:
        return QualityConfig.from_json(args.config, **overrides)
    return QualityConfig.from_dict(overrides)


def run_from_argv(argv: Sequence[str] | None = None) -> Path:
    """Parse the options, log at INFO to stderr, run the benchmark; return the results folder."""
    config = config_from_argv(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return run_quality(config)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark from the command line; return the exit status.

    A kshot error (a bad setting, unreadable data) is one line on stderr and exit status 2.
    """
    try:
        out = run_from_argv(argv)
    except KshotError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    logger.info("results in %s", out)
    return 0
