"""The quality benchmark run from a command line: settings, logging, the cost said first.

``kshot bench quality`` (typer, in :mod:`kshot.cli.bench`) and ``python -m
benchmarks.quality.run`` build a :class:`~kshot.bench.quality.config.QualityConfig` with
:func:`config_from_options` and run it with :func:`run_logged`, which logs at INFO to stderr and
to ``<out>/run.log`` (the ``kshot`` command sets the console to warnings only; the benchmark's
per-arm lines are its progress report) and logs the estimated cost before the first arm.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kshot.bench.quality.config import (
    EMBEDDING_BASELINES,
    ENDPOINT_PREFIX,
    QualityConfig,
    read_config_values,
)
from kshot.bench.quality.data import class_key, load_splits, stratified_limit
from kshot.bench.quality.estimate import estimate
from kshot.bench.quality.runner import run_quality

__all__ = ["config_from_options", "logged_to", "run_logged"]

logger = logging.getLogger(__name__)

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def config_from_options(config_file: str | Path | None, given: Mapping[str, Any]) -> QualityConfig:
    """The configuration of a ``--config`` file (if any) with the options ``given`` over it.

    A model named ``openai:NAME`` (an endpoint's chat answers, which cannot be scored) defaults
    to ``predict="generate"`` and to the embedding baselines only (an endpoint cannot be
    fine-tuned), unless the file or the options say otherwise.
    """
    values = read_config_values(config_file) if config_file is not None else {}
    values.update(given)
    if str(values.get("model") or "").startswith(ENDPOINT_PREFIX):
        values.setdefault("predict", "generate")
        values.setdefault("baselines", list(EMBEDDING_BASELINES))
    return QualityConfig.from_dict(values)


@contextmanager
def logged_to(out: Path) -> Iterator[None]:
    """Log kshot's INFO lines to stderr and append them to ``out/run.log`` meanwhile."""
    out.mkdir(parents=True, exist_ok=True)
    log = logging.getLogger("kshot")
    handlers: list[logging.Handler] = [
        logging.StreamHandler(sys.stderr),
        logging.FileHandler(out / "run.log", encoding="utf-8"),
    ]
    for handler in handlers:
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter(_FORMAT))
        log.addHandler(handler)
    level, propagate = log.level, log.propagate
    # The root's console handler shows warnings only; kshot's lines go through these handlers
    # alone, so a warning is not printed twice.
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield
    finally:
        for handler in handlers:
            log.removeHandler(handler)
            handler.close()
        log.setLevel(level)
        log.propagate = propagate


def run_logged(config: QualityConfig) -> Path:
    """Run the benchmark, logging to stderr and ``<out>/run.log``; return the results folder."""
    with logged_to(Path(config.out_dir)):
        logger.info("quality benchmark: %s", _estimate_text(config))
        if config.train_file is not None and config.instructions is None:
            logger.warning(
                "every prompt starts with %r; say what the task and its labels are with "
                "--instruction",
                config.resolved_instructions,
            )
        out = run_quality(config)
        logger.info("results in %s", out)
    return out


def _estimate_text(config: QualityConfig) -> str:
    """The estimated cost, from the sizes of the splits as the run will limit them."""
    splits = load_splits(config)
    test = stratified_limit(splits.test, config.limit_test, config.seed)
    train = stratified_limit(splits.train, config.limit_train, config.seed)
    labels = {class_key(ex) for ex in [*train, *test]}
    return estimate(config, len(test), len(labels), len(train)).describe(config)
