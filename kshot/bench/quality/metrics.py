"""Accuracy and macro-F1 of a run's predictions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Metrics", "metrics"]


@dataclass(frozen=True)
class Metrics:
    """The scores of one arm's predictions against the gold classes."""

    accuracy: float
    macro_f1: float

    def as_dict(self) -> dict[str, float]:
        """The fields as they appear in an arm file."""
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1}


def metrics(gold: Sequence[str], pred: Sequence[str | None]) -> Metrics:
    """Accuracy and macro-F1 over the gold classes (a missing prediction is wrong)."""
    n = len(gold)
    if n == 0:
        return Metrics(float("nan"), float("nan"))
    correct = sum(g == p for g, p in zip(gold, pred, strict=True))
    f1s = []
    for label in sorted(set(gold)):
        tp = sum(g == label and p == label for g, p in zip(gold, pred, strict=True))
        fp = sum(g != label and p == label for g, p in zip(gold, pred, strict=True))
        fn = sum(g == label and p != label for g, p in zip(gold, pred, strict=True))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return Metrics(correct / n, float(np.mean(f1s)))
