"""The quality benchmark's configuration: one frozen, validated dataclass and its constants."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kshot.errors import ConfigError
from kshot.model.labels import PREDICT_MODES, SCORE_NORMS

__all__ = [
    "BASELINES",
    "DEFAULT_INSTRUCTIONS",
    "EMBEDDING_BASELINES",
    "LM_BASELINES",
    "SCHEMA_VERSION",
    "QualityConfig",
]

#: Version of the layout of ``results.json`` and the arm files.
SCHEMA_VERSION = 1

#: Baselines trained on the training split: the LM fully fine-tuned, with LoRA, with prompt
#: tuning, and two classifiers on the sentence embeddings.
BASELINES: tuple[str, ...] = ("full", "lora", "prompt-tuning", "logreg", "knn")
#: The baselines that fine-tune the language model.
LM_BASELINES: tuple[str, ...] = ("full", "lora", "prompt-tuning")
#: The baselines that classify the sentence embeddings.
EMBEDDING_BASELINES: tuple[str, ...] = ("logreg", "knn")

#: Instructions per registered data set (the default for other data is generic).
DEFAULT_INSTRUCTIONS: Mapping[str, str] = {
    "banking77": "Classify the intent of each online-banking customer message.",
    "clinc150": "Classify the intent of each request to a virtual assistant.",
    "movie-sentiment": "Classify the sentiment of each movie review sentence.",
    "boolq": "Answer each question about the passage with yes or no.",
}
_GENERIC_INSTRUCTIONS = "Classify each input."


@dataclass(frozen=True)
class QualityConfig:
    """Everything one quality run depends on; recorded in ``results.json``.

    Fine-tuning budget: each LM baseline trains for its ``*_steps``; ``epochs`` (when set)
    replaces them with ``ceil(epochs * train rows / train_batch_size)`` steps; ``max_steps``
    (when set) replaces both, for every LM baseline.
    """

    dataset: str | None = "banking77"
    """A registered data set name (see :mod:`kshot.data`); ignored when files are given."""
    train_file: str | None = None
    """A labelled corpus file (JSONL in kshot's format, or CSV/TSV/parquet) to train on."""
    test_file: str | None = None
    """The labelled file of test queries; required with ``train_file``."""
    test_split: str = "test"
    """The split of ``dataset`` used as test queries (``test`` or ``dev``)."""
    out_dir: str = "benchmarks/results/quality/run"
    limit_train: int | None = None
    """Keep this many training rows (seeded, stratified by label); ``None`` keeps all."""
    limit_test: int | None = 300
    """Keep this many test rows (seeded, stratified by label); ``None`` keeps all."""
    seed: int = 0
    """Seeds the data limits, training order and initialisation."""
    model: str | None = None
    """A causal LM name/path or ``.gguf`` file; ``None`` is the bundled SmolLM2-135M-Instruct."""
    encoder: str | None = None
    """A sentence-transformers model; ``None`` is the bundled all-MiniLM-L6-v2."""
    device: str = "auto"
    torch_threads: int | None = None
    """Set torch's intra-op thread count (``None`` leaves torch's default)."""
    ks: tuple[int, ...] = (1, 2, 4, 8)
    strategies: tuple[str, ...] = ("random", "jaccard", "bm25", "similarity", "mmr", "balanced")
    selector_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Extra parameters per strategy name, e.g. ``{"mmr": {"lambda": 0.5}}``."""
    random_seeds: tuple[int, ...] = (0, 1, 2)
    zero_shot: bool = True
    baselines: tuple[str, ...] = BASELINES
    predict: str = "score"
    """``score`` (rank the label strings) or ``generate`` (greedy decoding, exact match)."""
    calibrate: bool = False
    """Contextual calibration (content-free ``N/A`` query) of the label scores."""
    score_norm: str = "sum"
    """``sum`` of the label's token log-probabilities, or their ``mean`` (length-normalised)."""
    instructions: str | None = None
    """Instructions at the top of every prompt; ``None`` picks one for the data set."""
    example_template: str = "Input: {input}\nLabel: {output}"
    query_template: str = "Input: {input}\nLabel:"
    separator: str = "\n\n"
    max_prompt_tokens: int | None = None
    eval_batch_size: int = 16
    """Test queries per selection / scoring call."""
    lm_batch_size: int = 8
    """Prompts per forward pass of the language model."""
    # fine-tuning
    train_batch_size: int = 16
    max_train_tokens: int = 128
    full_steps: int = 40
    lora_steps: int = 80
    prompt_tuning_steps: int = 80
    epochs: float | None = None
    max_steps: int | None = None
    full_lr: float = 1e-4
    lora_lr: float = 1e-3
    prompt_tuning_lr: float = 3e-2
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    num_virtual_tokens: int = 16
    logreg_c: float = 10.0
    knn_k: int = 8
    weights_dir: str | None = None
    """Cache of trained weights and embeddings; ``None`` is ``$KSHOT_CACHE/bench``."""
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("ks", "strategies", "random_seeds", "baselines", "lora_targets"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = tuple(p.strip() for p in value.split(",") if p.strip())
            object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "ks", tuple(int(k) for k in self.ks))
        object.__setattr__(self, "random_seeds", tuple(int(s) for s in self.random_seeds))
        object.__setattr__(
            self,
            "selector_params",
            {str(k): dict(v) for k, v in dict(self.selector_params).items()},
        )
        if self.train_file is None and self.test_file is None and not self.dataset:
            raise ConfigError("give a data set name, or both train_file and test_file")
        if (self.train_file is None) != (self.test_file is None):
            raise ConfigError("train_file and test_file go together; give both or neither")
        if any(k < 1 for k in self.ks):
            raise ConfigError(f"every k must be at least 1 (k = 0 is the zero-shot arm): {self.ks}")
        if "random" in self.strategies and not self.random_seeds:
            raise ConfigError("the random strategy needs at least one seed in random_seeds")
        unknown = sorted(set(self.baselines) - set(BASELINES))
        if unknown:
            raise ConfigError(
                f"unknown baseline {unknown[0]!r}; choose from: {', '.join(BASELINES)}"
            )
        if self.predict not in PREDICT_MODES:
            raise ConfigError(f"predict must be one of {PREDICT_MODES}, got {self.predict!r}")
        if self.score_norm not in SCORE_NORMS:
            raise ConfigError(f"score_norm must be one of {SCORE_NORMS}, got {self.score_norm!r}")
        for name in ("limit_train", "limit_test", "max_steps", "max_prompt_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1 or None, got {value}")
        positive = (
            "eval_batch_size",
            "lm_batch_size",
            "train_batch_size",
            "max_train_tokens",
            "lora_r",
            "num_virtual_tokens",
            "knn_k",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("full_steps", "lora_steps", "prompt_tuning_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be at least 0, got {getattr(self, name)}")
        if self.epochs is not None and self.epochs <= 0:
            raise ConfigError(f"epochs must be positive, got {self.epochs}")

    # -- conversions ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as JSON-ready values."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> QualityConfig:
        """Build a configuration from a mapping (e.g. a JSON config file); unknown keys fail."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown quality-benchmark setting {unknown[0]!r}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**{k: v for k, v in values.items() if not k.startswith("#")})

    @classmethod
    def from_json(cls, path: str | os.PathLike[str], **overrides: Any) -> QualityConfig:
        """Read a JSON config file; ``overrides`` that are not ``None`` replace its values.

        Keys starting with ``#`` are comments.
        """
        try:
            values = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read the benchmark config {path}: {exc}") from exc
        if not isinstance(values, dict):
            raise ConfigError(f"{path} must hold one JSON object")
        values = {k: v for k, v in values.items() if not k.startswith("#")}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values)

    # -- derived -------------------------------------------------------------------------------

    @property
    def resolved_instructions(self) -> str:
        """The instructions actually used."""
        if self.instructions is not None:
            return self.instructions
        if self.train_file is None and self.dataset is not None:
            return DEFAULT_INSTRUCTIONS.get(self.dataset, _GENERIC_INSTRUCTIONS)
        return _GENERIC_INSTRUCTIONS

    def train_steps(self, baseline: str, n_train: int) -> int:
        """The number of optimiser steps of an LM baseline."""
        _check_lm_baseline(baseline)
        if self.max_steps is not None:
            return self.max_steps
        if self.epochs is not None:
            return max(1, math.ceil(self.epochs * n_train / self.train_batch_size))
        return int(getattr(self, f"{baseline.replace('-', '_')}_steps"))

    def learning_rate(self, baseline: str) -> float:
        """The learning rate of an LM baseline."""
        _check_lm_baseline(baseline)
        return float(getattr(self, f"{baseline.replace('-', '_')}_lr"))


def _check_lm_baseline(baseline: str) -> None:
    if baseline not in LM_BASELINES:
        raise ConfigError(
            f"{baseline!r} is not a fine-tuned LM baseline; choose from: {', '.join(LM_BASELINES)}"
        )
