"""The in-context arms: select examples, assemble prompts, predict labels, score the answers.

The zero-shot arm and the fine-tuned baselines run through the same evaluation with no examples,
so every LM arm shares one prompt format and one label-prediction rule (:func:`predict_labels`):
each class's readable ``output`` text is scored as a continuation of the prompt and the best one
wins (``predict="generate"``: greedy decoding and an exact match instead). ``calibrate=True``
applies contextual calibration with a content-free ``"N/A"`` query.
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
from kshot.types import Example, Prompt, Scored

if TYPE_CHECKING:
    from kshot.index import ExampleIndex
    from kshot.model.transformers_lm import TransformersLM
    from kshot.prompt import PromptAssembler
    from kshot.selector.base import BaseSelector

__all__ = ["Evaluation", "InContextEvaluator", "Select", "no_examples"]

#: Chooses the in-context examples of a batch of test queries.
Select = Callable[[Sequence[Example]], list[list[Scored]]]


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

    def as_record(self) -> ArmRecord:
        """The fields as they appear in an arm file."""
        return {
            **self.metrics.as_dict(),
            "prompt_tokens_per_query": self.prompt_tokens_per_query,
            "examples_per_query": self.examples_per_query,
            "seconds_per_query": self.seconds_per_query,
            "eval_seconds": self.eval_seconds,
            "invalid_predictions": self.invalid_predictions,
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

    def run_icl(self, arm: Arm, index: ExampleIndex, lm: TransformersLM) -> ArmRecord:
        """Run a zero-shot or in-context arm; return its record."""
        from kshot.selector import build_selector

        selector: BaseSelector | None = None
        if arm.kind == "icl":
            params = dict(self.config.selector_params.get(arm.name, {}))
            if arm.name == "random":
                params["seed"] = arm.seed
            selector = build_selector(index, arm.name, params)
        record = arm.base_record(len(self.test))
        record.update(self.evaluate(lm, _selection(selector, arm.k)).as_record())
        record["train_seconds"] = None
        if selector is not None:
            record["selector_params"] = selector.params.to_dict()
        return record

    def evaluate(self, lm: TransformersLM, select: Select) -> Evaluation:
        """Select, assemble and predict for every test query; return metrics and costs."""
        c = self.config
        preds: list[str | None] = []
        tokens: list[int] = []
        n_examples: list[int] = []
        seconds = 0.0
        for start in range(0, len(self.test), c.eval_batch_size):
            batch = self.test[start : start + c.eval_batch_size]
            began = time.perf_counter()
            picks = select(batch)
            prompts = [
                self.assembler.assemble(q.input, chosen, max_tokens=c.max_prompt_tokens)
                for q, chosen in zip(batch, picks, strict=True)
            ]
            preds.extend(self.predict(lm, prompts))
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
        )

    def predict(self, lm: TransformersLM, prompts: Sequence[Prompt]) -> list[str | None]:
        """The predicted class of each prompt (``None``: no valid answer)."""
        c = self.config
        tokenizer = lm.tokenizer
        picks = predict_labels(
            lm,
            prompts,
            self.space.texts,
            mode=c.predict,
            calibrate_with=(
                [self.assembler.with_query(p, "N/A") for p in prompts] if c.calibrate else None
            ),
            score_norm=c.score_norm,
            count_tokens=lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]),
        )
        return [None if i is None else self.space.labels[i] for i in picks]


def _selection(selector: BaseSelector | None, k: int) -> Select:
    """The selection of an arm, with every pick checked by the leakage guard."""
    if selector is None or k == 0:
        return no_examples

    def select(queries: Sequence[Example]) -> list[list[Scored]]:
        picks = selector.select_batch([q.input for q in queries], k)
        for query, chosen in zip(queries, picks, strict=True):
            assert_no_leak(query, chosen)
        return picks

    return select
