"""The embedding baselines: classifiers on the sentence vectors the index holds.

``logreg`` is a logistic regression trained on the training vectors; ``knn`` a majority vote of
the ``knn_k`` most cosine-similar training rows. Their seconds per query include encoding the
query, so they compare with the in-context arms (whose selection encodes it too).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from kshot.bench.quality.arms import Arm, ArmRecord
from kshot.bench.quality.cache import Embedded
from kshot.bench.quality.config import QualityConfig
from kshot.bench.quality.metrics import metrics

__all__ = ["knn_vote", "run_embedding"]

Matrix = npt.NDArray[np.float32]


def run_embedding(
    arm: Arm,
    config: QualityConfig,
    train: Embedded,
    train_y: Sequence[str],
    test: Embedded,
    gold: Sequence[str],
    advance: Callable[[int], None],
) -> ArmRecord:
    """Train (logreg) or apply (knn) one embedding baseline; return its record."""
    c = config
    n_test = len(gold)
    record = arm.base_record(n_test)
    labels = np.asarray(train_y)
    if arm.name == "logreg":
        from sklearn.linear_model import LogisticRegression

        started = time.perf_counter()
        model = LogisticRegression(C=c.logreg_c, max_iter=2000, random_state=c.seed)
        model.fit(train.vectors, labels)
        train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        preds = [str(p) for p in model.predict(test.vectors)]
        predict_seconds = time.perf_counter() - started
        record["params"] = {"C": c.logreg_c, "max_iter": 2000}
    else:
        train_seconds = 0.0
        started = time.perf_counter()
        preds = knn_vote(train.vectors, list(train_y), test.vectors, c.knn_k)
        predict_seconds = time.perf_counter() - started
        record["params"] = {"k": c.knn_k, "vote": "majority, ties by summed cosine"}
    advance(n_test)
    record.update(metrics(gold, preds).as_dict())
    record.update(
        prompt_tokens_per_query=None,
        seconds_per_query=test.seconds / n_test + predict_seconds / n_test,
        eval_seconds=test.seconds + predict_seconds,
        train_seconds=train_seconds,
        train_embed_seconds=train.seconds,
        predictions=preds,
    )
    return record


def knn_vote(train: Matrix, train_y: Sequence[str], test: Matrix, k: int) -> list[str]:
    """Majority vote of the ``k`` most cosine-similar training rows; ties by summed similarity."""
    preds: list[str] = []
    k = min(k, len(train))
    for start in range(0, len(test), 256):
        sims = test[start : start + 256] @ train.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        for row, cols in enumerate(top):
            votes: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
            for col in cols:
                entry = votes[train_y[col]]
                entry[0] += 1
                entry[1] += float(sims[row, col])
            preds.append(max(votes.items(), key=lambda kv: (kv[1][0], kv[1][1]))[0])
    return preds
