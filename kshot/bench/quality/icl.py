"""The in-context arms: select examples, assemble prompts, predict labels, score the answers.

The zero-shot arm and the fine-tuned baselines run through the same evaluation with no examples,
so every LM arm shares one prompt format and one label-prediction rule (:func:`predict_labels`):
each class's readable ``output`` text is scored as a continuation of the prompt and the best one
wins (``predict="generate"``: greedy decoding and an exact match instead). ``calibrate=True``
applies contextual calibration with a content-free ``"N/A"`` query to every arm; an arm marked
``calibrated`` (config ``calibrated_arms``) applies it to itself only. An endpoint model
(:mod:`~kshot.bench.quality.endpoint`) gets chat prompts; a local model, text prompts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from kshot.bench.quality.arms import Arm, ArmRecord
from kshot.bench.quality.config import QualityConfig
from kshot.bench.quality.data import LabelSpace, assert_no_leak
from kshot.bench.quality.metrics import Metrics, metrics
from kshot.model.labels import predict_labels
from kshot.types import Example, Prompt, PromptFormat, Scored

if TYPE_CHECKING:
    from kshot.index import ExampleIndex
    from kshot.model.base import LanguageModel
    from kshot.prompt import PromptAssembler
    from kshot.selector.base import BaseSelector

__all__ = [
    "Evaluation",
    "InContextEvaluator",
    "PredictBatch",
    "Select",
    "no_examples",
    "selection",
    "without_self",
]

#: Chooses the in-context examples of a batch of test queries.
Select = Callable[[Sequence[Example]], list[list[Scored]]]
#: Predicts a batch: given the test positions, the queries and their prompts, returns each
#: query's predicted class (``None``: no valid answer) and how many labels it scored.
PredictBatch = Callable[
    [range, Sequence[Example], Sequence[Prompt]], tuple[list[str | None], list[int]]
]


def no_examples(queries: Sequence[Example]) -> list[list[Scored]]:
    """The selection of the zero-shot prompt (and of the fine-tuned baselines): nothing."""
    return [[] for _ in queries]


@dataclass(frozen=True)
class Evaluation:
    """The numbers of one LM arm over every test query."""

    metrics: Metrics
    prompt_tokens_per_query: float
    examples_per_query: float
    seconds_per_query: float
    eval_seconds: float
    invalid_predictions: int
    predictions: list[str | None]
    labels_scored_per_query: float | None = None

    def as_record(self) -> ArmRecord:
        """The fields as they appear in an arm file."""
        return {
            **self.metrics.as_dict(),
            "prompt_tokens_per_query": self.prompt_tokens_per_query,
            "examples_per_query": self.examples_per_query,
            "seconds_per_query": self.seconds_per_query,
            "eval_seconds": self.eval_seconds,
            "invalid_predictions": self.invalid_predictions,
            "labels_scored_per_query": self.labels_scored_per_query,
            "predictions": list(self.predictions),
        }


class InContextEvaluator:
    """Evaluates language models on the test queries of one run.

    Args:
        config: the run's settings (templates, batch sizes, prediction mode).
        test: the test queries; ``gold`` their classes.
        space: the classes and their readable texts.
        assembler: builds the prompts (with the language model's token counter).
        advance: called with the number of queries done after each batch (progress).
    """

    def __init__(
        self,
        config: QualityConfig,
        test: Sequence[Example],
        gold: Sequence[str],
        space: LabelSpace,
        assembler: PromptAssembler,
        advance: Callable[[int], None],
    ) -> None:
        self.config = config
        self.test = list(test)
        self.gold = list(gold)
        self.space = space
        self.assembler = assembler
        self.advance = advance
        self.format: PromptFormat = "text" if config.endpoint_model is None else "chat"

    def run_icl(self, arm: Arm, index: ExampleIndex, lm: LanguageModel) -> ArmRecord:
        """Run a zero-shot or in-context arm; return its record."""
        selector = self.selector(arm, index) if arm.kind == "icl" else None
        record = arm.base_record(len(self.test))
        calibrate = self.config.calibrate or arm.calibrated
        evaluation = self.evaluate(lm, selection(selector, arm.k), calibrate=calibrate)
        record.update(evaluation.as_record())
        record["train_seconds"] = None
        if arm.calibrated:
            record["calibrated"] = True
        if selector is not None:
            record["selector_params"] = selector.params.to_dict()
        return record

    def selector(self, arm: Arm, index: ExampleIndex) -> BaseSelector:
        """The selector of an in-context arm, with its configured parameters."""
        from kshot.selector import build_selector

        params = dict(self.config.selector_params.get(arm.name, {}))
        if arm.name == "random":
            params["seed"] = arm.seed
        return build_selector(index, arm.name, params)

    def evaluate(
        self,
        lm: LanguageModel,
        select: Select,
        predict: PredictBatch | None = None,
        *,
        calibrate: bool | None = None,
    ) -> Evaluation:
        """Select, assemble and predict for every test query; return metrics and costs.

        ``predict``: the prediction of a batch; ``None`` is :meth:`predict` (every label), with
        contextual calibration when ``calibrate`` (``None``: the config's ``calibrate``).
        """
        c = self.config
        preds: list[str | None] = []
        scored: list[int] = []
        tokens: list[int] = []
        n_examples: list[int] = []
        seconds = 0.0
        for start in range(0, len(self.test), c.eval_batch_size):
            batch = self.test[start : start + c.eval_batch_size]
            began = time.perf_counter()
            picks = select(batch)
            prompts = [
                self.assembler.assemble(
                    q.input, chosen, max_tokens=c.max_prompt_tokens, format=self.format
                )
                for q, chosen in zip(batch, picks, strict=True)
            ]
            if predict is None:
                preds.extend(self.predict(lm, prompts, calibrate=calibrate))
                scored.extend([len(self.space.labels)] * len(prompts))
            else:
                batch_preds, batch_scored = predict(
                    range(start, start + len(batch)), batch, prompts
                )
                preds.extend(batch_preds)
                scored.extend(batch_scored)
            seconds += time.perf_counter() - began
            tokens.extend(p.token_count for p in prompts)
            n_examples.extend(len(p.examples) for p in prompts)
            self.advance(len(batch))
        return Evaluation(
            metrics=metrics(self.gold, preds),
            prompt_tokens_per_query=float(np.mean(tokens)),
            examples_per_query=float(np.mean(n_examples)),
            seconds_per_query=seconds / len(self.test),
            eval_seconds=seconds,
            invalid_predictions=sum(p is None for p in preds),
            predictions=preds,
            labels_scored_per_query=float(np.mean(scored)) if c.predict == "score" else None,
        )

    def predict(
        self, lm: LanguageModel, prompts: Sequence[Prompt], *, calibrate: bool | None = None
    ) -> list[str | None]:
        """The predicted class of each prompt (``None``: no valid answer).

        ``calibrate``: contextual calibration (``None``: the config's ``calibrate``).
        """
        c = self.config
        if calibrate is None:
            calibrate = c.calibrate
        # A local model counts label tokens with its tokenizer; an endpoint has none here.
        tokenizer = getattr(lm, "tokenizer", None)
        count_tokens: Callable[[str], int] | None = None
        if tokenizer is not None:

            def count_tokens(text: str) -> int:
                return len(tokenizer(text, add_special_tokens=False)["input_ids"])

        picks = predict_labels(
            lm,
            prompts,
            self.space.texts,
            mode=c.predict,
            calibrate_with=(
                [self.assembler.with_query(p, "N/A") for p in prompts] if calibrate else None
            ),
            score_norm=c.score_norm,
            count_tokens=count_tokens,
        )
        return [None if i is None else self.space.labels[i] for i in picks]


def selection(selector: BaseSelector | None, k: int, *, pool_queries: bool = False) -> Select:
    """The selection of an arm, with every pick checked by the leakage guard.

    ``pool_queries``: the queries are rows of the pool (a dev split); each one's own row is
    left out of its selection (one more is retrieved to make up for it).
    """
    if selector is None or k == 0:
        return no_examples

    def select(queries: Sequence[Example]) -> list[list[Scored]]:
        picks = selector.select_batch([q.input for q in queries], k + int(pool_queries))
        if pool_queries:
            picks = [without_self(q, p)[:k] for q, p in zip(queries, picks, strict=True)]
        for query, chosen in zip(queries, picks, strict=True):
            assert_no_leak(query, chosen)
        return picks

    return select


def without_self(query: Example, found: Sequence[Scored]) -> list[Scored]:
    """``found`` without the query's own row (same id, or same input text)."""
    return [
        s
        for s in found
        if not (
            (query.id is not None and s.example.id == query.id) or s.example.input == query.input
        )
    ]
