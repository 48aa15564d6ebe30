"""The in-context arms with a prediction mode: label gating, neighbour prior, calibration, CICLe.

An arm ``<strategy>-<mode>-k<k>`` selects its ``k`` examples as the plain arm does, then
predicts with the mode's :class:`~kshot.model.modes.PredictionOptions`:

- the neighbours (gate and prior) are a wider retrieval of the mode's ``neighbours`` rows by
  cosine similarity from the same index, each as its label and similarity;
- ``gate="classifier"`` trains a logistic regression on the training embeddings (its seconds
  are the arm's ``train_seconds``; the arm is marked ``uses_training``) and keeps its top
  ``classifier_top`` labels for the model to choose among (CICLe);
- ``"prior_weight": "dev"`` chooses the weight on ``dev_queries`` training rows, each
  retrieving from the pool without its own row, and records every weight's dev accuracy.

Each record holds the cost: ``labels_scored_per_query`` and ``seconds_per_query``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from kshot.bench.quality.arms import Arm, ArmRecord
from kshot.bench.quality.cache import Embedded
from kshot.bench.quality.config import ModeSpec
from kshot.bench.quality.data import class_key, stratified_limit
from kshot.bench.quality.icl import InContextEvaluator, PredictBatch, selection, without_self
from kshot.model.modes import (
    Neighbour,
    PredictionOptions,
    candidate_labels,
    choose_prior_weight,
    fuse_prior,
    neighbour_prior,
    score_candidates,
)
from kshot.types import Example, Prompt

if TYPE_CHECKING:
    from kshot.index import ExampleIndex
    from kshot.model.transformers_lm import TransformersLM
    from kshot.selector.base import BaseSelector

__all__ = ["ModeInputs", "run_mode_arm"]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ModeInputs:
    """What the mode arms read besides the evaluator: the pool and the embeddings."""

    train: Sequence[Example]
    train_emb: Embedded
    test_emb: Embedded


def run_mode_arm(
    evaluator: InContextEvaluator,
    arm: Arm,
    index: ExampleIndex,
    lm: TransformersLM,
    inputs: ModeInputs,
) -> ArmRecord:
    """Run one in-context arm with a prediction mode; return its record."""
    assert arm.mode is not None
    c = evaluator.config
    spec = c.mode(arm.mode)
    run = _ModeRun(evaluator, spec, index, lm, inputs)
    selector = evaluator.selector(arm, index)
    record = arm.base_record(len(evaluator.test))
    record["mode"] = arm.mode
    record["mode_options"] = spec.options.to_dict()
    record["uses_training"] = spec.uses_training
    record["train_seconds"] = run.train_seconds if spec.uses_training else None
    options = spec.options
    if spec.tune_prior:
        began = time.perf_counter()
        weight, by_weight = run.choose_weight(selector, arm.k)
        record["dev"] = {
            "queries": c.dev_queries,
            "accuracy_by_weight": {str(w): a for w, a in by_weight.items()},
            "seconds": time.perf_counter() - began,
        }
        options = PredictionOptions.from_dict(options.to_dict() | {"prior_weight": weight})
        logger.info("arm %s: prior weight %s chosen on the dev split", arm.id, weight)
    record["prior_weight"] = options.prior_weight
    evaluation = evaluator.evaluate(lm, selection(selector, arm.k), run.predictor(options))
    record.update(evaluation.as_record())
    record["selector_params"] = selector.params.to_dict()
    return record


class _ModeRun:
    """The neighbours, classifier and scoring one mode arm shares between dev and test."""

    def __init__(
        self,
        evaluator: InContextEvaluator,
        spec: ModeSpec,
        index: ExampleIndex,
        lm: TransformersLM,
        inputs: ModeInputs,
    ) -> None:
        from kshot.selector import build_selector

        self.ev = evaluator
        self.spec = spec
        self.lm = lm
        self.inputs = inputs
        self.position = {label: i for i, label in enumerate(evaluator.space.labels)}
        self.strings = [" " + t for t in evaluator.space.texts]
        tokenizer = lm.tokenizer
        self.lengths = np.asarray(
            [
                max(1, len(tokenizer(s, add_special_tokens=False)["input_ids"]))
                for s in self.strings
            ],
            dtype=np.float64,
        )
        self.retriever: BaseSelector | None = None
        if spec.options.uses_neighbours:
            self.retriever = build_selector(index, "similarity", {})
        self.train_seconds = 0.0
        self.classifier_probs: FloatArray | None = None
        if spec.uses_training:
            self.classifier_probs = self._train_classifier()

    def _train_classifier(self) -> FloatArray:
        """Train the logistic regression; return its label probabilities of the test queries."""
        from sklearn.linear_model import LogisticRegression

        c = self.ev.config
        train_y = np.asarray([class_key(ex) for ex in self.inputs.train])
        began = time.perf_counter()
        model = LogisticRegression(C=c.logreg_c, max_iter=2000, random_state=c.seed)
        model.fit(self.inputs.train_emb.vectors, train_y)
        self.train_seconds = time.perf_counter() - began
        probs = model.predict_proba(self.inputs.test_emb.vectors)
        # Reorder the classifier's classes to the label space (a class it never saw scores 0).
        out = np.zeros((probs.shape[0], len(self.position)), dtype=np.float64)
        for col, label in enumerate(model.classes_):
            out[:, self.position[str(label)]] = probs[:, col]
        return out

    def neighbours(
        self, queries: Sequence[Example], *, pool_queries: bool = False
    ) -> list[list[Neighbour]] | None:
        """Each query's top neighbours as (label index, similarity); ``None``: not needed."""
        if self.retriever is None:
            return None
        m = self.spec.options.neighbours
        found = self.retriever.select_batch([q.input for q in queries], m + int(pool_queries))
        if pool_queries:
            found = [without_self(q, f)[:m] for q, f in zip(queries, found, strict=True)]
        return [[(self.position[class_key(s.example)], s.score) for s in row] for row in found]

    def scores(
        self,
        options: PredictionOptions,
        prompts: Sequence[Prompt],
        neighbours: list[list[Neighbour]] | None,
        positions: range | None,
    ) -> tuple[FloatArray, list[int]]:
        """The label log-probabilities of a batch (gated, calibrated) and labels scored."""
        probs = None
        if self.classifier_probs is not None and positions is not None:
            probs = self.classifier_probs[positions.start : positions.stop]
        cands = candidate_labels(options, len(self.strings), neighbours, probs, len(prompts))
        content_free = None
        if options.calibration == "content-free":
            content_free = [self.ev.assembler.with_query(p, "N/A") for p in prompts]
        scored = score_candidates(
            self.lm,
            prompts,
            self.strings,
            cands,
            options,
            content_free=content_free,
            label_lengths=self.lengths,
        )
        return scored.log_probs, scored.labels_scored

    def predictor(self, options: PredictionOptions) -> PredictBatch:
        """The test-query prediction of the arm with ``options``."""
        labels = self.ev.space.labels

        def predict(
            positions: range, queries: Sequence[Example], prompts: Sequence[Prompt]
        ) -> tuple[list[str | None], list[int]]:
            neighbours = self.neighbours(queries)
            log_probs, n_scored = self.scores(options, prompts, neighbours, positions)
            if options.prior_weight > 0 and neighbours is not None:
                prior = neighbour_prior(neighbours, len(labels), options.neighbours)
                log_probs = fuse_prior(log_probs, prior, options.prior_weight)
            picks = np.argmax(log_probs, axis=1)
            return [labels[int(i)] for i in picks], n_scored

        return predict

    def choose_weight(self, selector: BaseSelector, k: int) -> tuple[float, dict[float, float]]:
        """Score the dev split once; return the best prior weight and each weight's accuracy."""
        c = self.ev.config
        dev = stratified_limit(self.inputs.train, c.dev_queries, c.seed)
        select = selection(selector, k, pool_queries=True)
        options = self.spec.options
        blocks: list[FloatArray] = []
        priors: list[FloatArray] = []
        for start in range(0, len(dev), c.eval_batch_size):
            batch = dev[start : start + c.eval_batch_size]
            prompts = [
                self.ev.assembler.assemble(q.input, chosen, max_tokens=c.max_prompt_tokens)
                for q, chosen in zip(batch, select(batch), strict=True)
            ]
            neighbours = self.neighbours(batch, pool_queries=True)
            assert neighbours is not None  # a tuned prior needs neighbours
            log_probs, _ = self.scores(options, prompts, neighbours, None)
            blocks.append(log_probs)
            priors.append(neighbour_prior(neighbours, len(self.strings), options.neighbours))
        gold = [self.position[class_key(q)] for q in dev]
        return choose_prior_weight(np.vstack(blocks), np.vstack(priors), gold, c.prior_weights)
