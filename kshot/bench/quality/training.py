"""Pure pieces of the fine-tuning loop: the dev split, length-bucketed batches, early stopping.

Kept apart from :mod:`kshot.bench.quality.finetune` (which needs torch and a model) so that each
rule is a plain function of its inputs, tested with scripted values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from kshot.bench.quality.data import stratified_limit
from kshot.types import Example

__all__ = [
    "DevSplit",
    "EarlyStopping",
    "EpochRecord",
    "bucketed_batches",
    "dev_size",
    "pad_batch",
    "split_dev",
]

#: How many batches one shuffled chunk holds before it is sorted by length: large enough that
#: batches hold rows of similar length, small enough that the order stays random.
BUCKET_CHUNK_BATCHES = 16


@dataclass(frozen=True)
class DevSplit:
    """The rows the fine-tuned baselines train on and the held-out rows that stop them."""

    train: list[Example]
    dev: list[Example]


def dev_size(n_rows: int, fraction: float, cap: int) -> int:
    """Dev rows for ``n_rows`` training rows: ``fraction`` of them, at least 1, at most ``cap``.

    At least one row is left to train on.
    """
    if n_rows < 2:
        return 0
    return max(1, min(cap, round(fraction * n_rows), n_rows - 1))


def split_dev(rows: Sequence[Example], n_dev: int, seed: int) -> DevSplit:
    """Hold out ``n_dev`` of ``rows`` (seeded, stratified by label) as the dev split.

    The dev rows are drawn with their own seed stream (``seed + 1``), so they are not the rows
    a :func:`~kshot.bench.quality.data.stratified_limit` with ``seed`` would keep first.
    Both parts keep the input order; together they are ``rows``, with no row in both.
    """
    dev = stratified_limit(rows, n_dev, seed + 1) if n_dev > 0 else []
    held = {id(ex) for ex in dev}
    return DevSplit([ex for ex in rows if id(ex) not in held], dev)


def bucketed_batches(
    lengths: Sequence[int],
    batch_size: int,
    rng: np.random.Generator,
    chunk_batches: int = BUCKET_CHUNK_BATCHES,
) -> list[list[int]]:
    """One epoch's batches of row positions, each row exactly once.

    The rows are shuffled, cut into chunks of ``chunk_batches * batch_size`` rows, each chunk
    sorted by length and cut into batches, and the batches shuffled: rows of a batch have
    similar lengths (little padding) while the epoch's order stays random (and seeded).
    """
    order = rng.permutation(len(lengths))
    chunk = max(1, chunk_batches) * batch_size
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk].tolist(), key=lambda i: lengths[i])
        batches.extend(part[b : b + batch_size] for b in range(0, len(part), batch_size))
    return [batches[int(i)] for i in rng.permutation(len(batches))]


def pad_batch(
    rows: Sequence[tuple[Sequence[int], Sequence[int]]], pad: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right-pad a batch to its own longest row: token ids, loss targets and attention mask.

    Padding positions hold ``pad`` (ids), ``-100`` (targets: no loss) and ``0`` (mask).
    """
    width = max(len(ids) for ids, _ in rows)
    input_ids = np.full((len(rows), width), pad, dtype=np.int64)
    labels = np.full((len(rows), width), -100, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for r, (ids, targets) in enumerate(rows):
        input_ids[r, : len(ids)] = ids
        labels[r, : len(ids)] = targets
        mask[r, : len(ids)] = 1
    return input_ids, labels, mask


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of training as recorded in ``results.json``."""

    epoch: int
    steps: int
    """Optimiser steps done so far (all epochs)."""
    train_loss: float
    """The mean training loss of this epoch's steps."""
    dev_accuracy: float
    seconds: float
    """Seconds this epoch took (training and the dev evaluation)."""

    def as_dict(self) -> dict[str, float | int]:
        """The fields as JSON values."""
        return {
            "epoch": self.epoch,
            "steps": self.steps,
            "train_loss": self.train_loss,
            "dev_accuracy": self.dev_accuracy,
            "seconds": self.seconds,
        }


@dataclass
class EarlyStopping:
    """Decides after each epoch whether to train on, from the dev accuracies so far.

    Training runs at most ``max_epochs``; from ``min_epochs`` on it stops once dev accuracy has
    not beaten its best for ``patience`` epochs in a row (a tie is no gain). ``max_seconds`` is a
    hard budget: no epoch starts that would end past it if it took as long as the last one (this
    may stop training before ``min_epochs``, and is then reported as a budget stop). The best
    epoch is the first that reached the highest dev accuracy.
    """

    min_epochs: int
    max_epochs: int
    patience: int
    max_seconds: float | None = None
    curve: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    reason: str | None = None
    """``None`` while training; then ``converged``, ``max_epochs`` or ``time``."""

    @property
    def best_epoch(self) -> int:
        """The epoch (from 1) of the best dev accuracy; 0 before the first epoch."""
        if not self.curve:
            return 0
        return int(np.argmax(np.asarray(self.curve))) + 1

    @property
    def epochs_since_best(self) -> int:
        """Epochs after the best one."""
        return len(self.curve) - self.best_epoch

    def improved(self) -> bool:
        """Whether the last epoch is the best so far (the checkpoint to keep)."""
        return bool(self.curve) and self.best_epoch == len(self.curve)

    def update(self, dev_accuracy: float, seconds: float) -> bool:
        """Record an epoch's dev accuracy and seconds; return whether to train another epoch."""
        self.curve.append(float(dev_accuracy))
        self.seconds.append(float(seconds))
        epochs = len(self.curve)
        out_of_time = (
            self.max_seconds is not None and sum(self.seconds) + seconds > self.max_seconds
        )
        if epochs < self.min_epochs:
            # Too early to call convergence; only the time budget stops training this soon.
            self.reason = "time" if out_of_time else None
        elif self.epochs_since_best >= self.patience:
            self.reason = "converged"
        elif epochs >= self.max_epochs:
            self.reason = "max_epochs"
        elif out_of_time:
            self.reason = "time"
        return self.reason is None

    @property
    def converged(self) -> bool:
        """Whether training stopped because dev accuracy stopped improving."""
        return self.reason == "converged"

    def describe(self) -> str:
        """One sentence on how training stopped, for the report."""
        epochs, best = len(self.curve), self.best_epoch
        if self.reason == "converged":
            return (
                f"converged: best dev accuracy {self.curve[best - 1]:.3f} at epoch {best}, "
                f"no gain in the {self.epochs_since_best} epochs after it (patience "
                f"{self.patience}); stopped at epoch {epochs}"
            )
        budget = "max_epochs" if self.reason == "max_epochs" else "the time budget"
        if epochs == 1:
            trend = "a single epoch: no dev trend yet"
        elif self.improved():
            trend = "dev still rising"
        else:
            trend = (
                f"dev not improved for {self.epochs_since_best} epoch(s), patience "
                f"{self.patience} not reached"
            )
        return f"stopped by budget ({budget}) at epoch {epochs}, {trend}; best epoch {best}"
