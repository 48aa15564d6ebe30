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
from kshot.model.modes import DEFAULT_PRIOR_WEIGHTS, PredictionOptions

__all__ = [
    "BASELINES",
    "DEFAULT_INSTRUCTIONS",
    "EMBEDDING_BASELINES",
    "ENDPOINT_PREFIX",
    "FULL_SIZE",
    "LM_BASELINES",
    "SCHEMA_VERSION",
    "ModeSpec",
    "QualityConfig",
    "read_config_values",
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

#: How ``model`` names a model behind an OpenAI-compatible endpoint: ``openai:NAME``.
ENDPOINT_PREFIX = "openai:"
#: The ``train_sizes`` value for the whole training split.
FULL_SIZE = "full"

#: The value of a mode's ``prior_weight`` that asks for the weight chosen on the dev split.
DEV_WEIGHT = "dev"


@dataclass(frozen=True)
class ModeSpec:
    """A named prediction mode of the in-context arms, parsed from ``QualityConfig.modes``.

    ``tune_prior``: the prior weight is chosen on a dev split taken from the training side
    (``options.prior_weight`` is then a placeholder, 1).
    """

    name: str
    options: PredictionOptions
    tune_prior: bool

    @property
    def uses_training(self) -> bool:
        """Whether the mode trains something (the classifier of ``gate="classifier"``)."""
        return self.options.gate == "classifier"


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
    """Contextual calibration (content-free ``N/A`` query) of the label scores of the arms
    without a mode; an arm with a mode follows its mode's ``calibration``."""
    score_norm: str = "sum"
    """``sum`` of the label's token log-probabilities, or their ``mean`` (length-normalised)."""
    instructions: str | None = None
    """Instructions at the top of every prompt; ``None`` picks one for the data set."""
    example_template: str = "Input: {input}\nLabel: {output}"
    query_template: str = "Input: {input}\nLabel:"
    separator: str = "\n\n"
    max_prompt_tokens: int | None = None
    modes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Prediction modes run as extra arms, by name: the fields of
    :class:`~kshot.model.modes.PredictionOptions`, with ``"prior_weight": "dev"`` for the weight
    chosen on the dev split, e.g. ``{"gate16": {"gate": "neighbours", "neighbours": 16}}``."""
    mode_strategies: tuple[str, ...] = ("similarity",)
    """The selectors the mode arms use."""
    mode_ks: tuple[int, ...] = (4, 8)
    """The k values of the mode arms."""
    dev_queries: int = 64
    """Training rows (seeded, stratified) that choose a mode's prior weight; each retrieves
    from the rest of the pool."""
    prior_weights: tuple[float, ...] = DEFAULT_PRIOR_WEIGHTS
    """The prior weights tried on the dev split."""
    eval_batch_size: int = 16
    """Test queries per selection / scoring call (the batch of batch calibration)."""
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
    # training-set-size curve and early stopping
    train_sizes: tuple[int | str, ...] = ()
    """Training-set sizes N of a learning curve, e.g. ``(500, 2000, "full")``: for each N a
    seeded stratified subset of the training split is both the in-context pool (index, kNN,
    logistic regression) and the fine-tuned baselines' data; each arm runs once per N (id
    ``n<N>-<arm>``). Empty: one run on the whole (``limit_train``-limited) training split."""
    early_stopping: bool = False
    """Train the LM baselines epoch by epoch on the training rows less a dev split, until dev
    accuracy stops improving, keeping the best epoch (replaces ``*_steps``/``epochs``)."""
    min_epochs: int = 2
    max_epochs: int = 10
    patience: int = 2
    """Epochs without a new best dev accuracy before training stops."""
    max_train_seconds: float | None = None
    """Per LM baseline: no epoch starts that would end past this many seconds of training
    (judged by the last epoch's time); ``None`` is no limit."""
    dev_fraction: float = 0.1
    """Share of the training rows held out (seeded, stratified) as the early-stopping dev split."""
    dev_max: int = 300
    """At most this many dev rows."""
    logreg_c: float = 10.0
    knn_k: int = 8
    weights_dir: str | None = None
    """Cache of trained weights and embeddings; ``None`` is ``$KSHOT_CACHE/bench``."""
    progress: bool = True
    # a user's own data and model
    name: str | None = None
    """The data set's name in the reports; ``None``: the registered name, or the training
    file's name."""
    input_field: str = "input"
    """The column of ``train_file`` and ``test_file`` holding the input."""
    output_field: str | None = None
    """The column holding the output (``None``: ``output``, else the label stands in)."""
    label_field: str = "label"
    """The column holding the label."""
    id_field: str = "id"
    """The column holding the row id (rows without one are numbered)."""
    calibrated_arms: tuple[str, ...] = ()
    """Strategies (and ``zero-shot``) whose arms also run with contextual calibration, as
    extra arms beside the raw ones (``<strategy>-cal-k<k>``, ``zero-shot-cal``); ``("all",)``
    is zero-shot and every strategy but random."""
    base_url: str | None = None
    """The OpenAI-compatible server of a ``model`` named ``openai:NAME``."""
    api_key_env: str | None = None
    """The environment variable holding the endpoint's API key; ``None``: ``KSHOT_LLM_API_KEY``,
    else ``OPENAI_API_KEY``, else no key."""

    def __post_init__(self) -> None:
        for name in (
            "ks",
            "strategies",
            "random_seeds",
            "baselines",
            "lora_targets",
            "mode_strategies",
            "mode_ks",
            "prior_weights",
            "calibrated_arms",
        ):
            value = getattr(self, name)
            if isinstance(value, str):
                value = tuple(p.strip() for p in value.split(",") if p.strip())
            object.__setattr__(self, name, tuple(value))
        if self.calibrated_arms == ("all",):
            every = ("zero-shot", *(s for s in self.strategies if s != "random"))
            object.__setattr__(self, "calibrated_arms", every)
        object.__setattr__(self, "ks", tuple(int(k) for k in self.ks))
        object.__setattr__(self, "random_seeds", tuple(int(s) for s in self.random_seeds))
        object.__setattr__(self, "mode_ks", tuple(int(k) for k in self.mode_ks))
        object.__setattr__(self, "prior_weights", tuple(float(w) for w in self.prior_weights))
        object.__setattr__(self, "train_sizes", _parse_train_sizes(self.train_sizes))
        object.__setattr__(self, "modes", {str(k): dict(v) for k, v in dict(self.modes).items()})
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
        self._check_modes()
        for name in ("full_steps", "lora_steps", "prompt_tuning_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be at least 0, got {getattr(self, name)}")
        if self.epochs is not None and self.epochs <= 0:
            raise ConfigError(f"epochs must be positive, got {self.epochs}")
        self._check_calibrated_arms()
        self._check_endpoint()
        self._check_early_stopping()

    def _check_calibrated_arms(self) -> None:
        if not self.calibrated_arms:
            return
        if self.predict != "score":
            raise ConfigError("calibrated arms calibrate label scores; they need predict='score'")
        known = ("zero-shot", *(s for s in self.strategies if s != "random"))
        for name in self.calibrated_arms:
            if name not in known:
                raise ConfigError(
                    f"cannot calibrate the arms of {name!r}: choose from {', '.join(known)} "
                    "(the strategies of this run, without random, whose seeds fold into one row)"
                )

    def _check_endpoint(self) -> None:
        endpoint = self.endpoint_model
        if endpoint is None:
            if self.base_url is not None:
                raise ConfigError(
                    f"base_url is for a model named {ENDPOINT_PREFIX}NAME, got model {self.model!r}"
                )
            return
        if not endpoint:
            raise ConfigError(f"name the endpoint's model: {ENDPOINT_PREFIX}NAME")
        if not self.base_url:
            raise ConfigError(f"model {self.model!r} needs base_url (--base-url URL)")
        if self.predict != "generate":
            raise ConfigError(
                f"model {self.model!r}: an endpoint's chat answers are matched to the labels; "
                "use predict='generate' (--predict generate)"
            )
        local = [b for b in self.baselines if b in LM_BASELINES]
        if local:
            raise ConfigError(
                f"model {self.model!r}: an endpoint cannot be fine-tuned; leave {', '.join(local)} "
                f"out of baselines (e.g. --baselines {','.join(EMBEDDING_BASELINES)})"
            )
        if self.modes or self.calibrate:
            raise ConfigError(
                f"model {self.model!r}: modes and calibration score labels, which an endpoint's "
                "chat answers cannot; leave them out"
            )

    def _check_early_stopping(self) -> None:
        if not self.early_stopping:
            return
        if self.epochs is not None or self.max_steps is not None:
            raise ConfigError(
                "early_stopping trains until dev accuracy stops improving; drop epochs and "
                "max_steps (bound it with max_epochs or max_train_seconds)"
            )
        if not 1 <= self.min_epochs <= self.max_epochs:
            raise ConfigError(
                f"need 1 <= min_epochs <= max_epochs, got {self.min_epochs} and {self.max_epochs}"
            )
        if self.patience < 1 or self.dev_max < 1:
            raise ConfigError(
                f"patience and dev_max must be at least 1, got {self.patience}, {self.dev_max}"
            )
        if not 0.0 < self.dev_fraction < 1.0:
            raise ConfigError(f"dev_fraction must be between 0 and 1, got {self.dev_fraction}")
        if self.max_train_seconds is not None and self.max_train_seconds <= 0:
            raise ConfigError(f"max_train_seconds must be positive, got {self.max_train_seconds}")

    def _check_modes(self) -> None:
        if not self.modes:
            return
        if self.predict != "score":
            raise ConfigError("prediction modes score the labels; they need predict='score'")
        if "random" in self.mode_strategies:
            raise ConfigError("mode_strategies cannot hold 'random' (its arms fold by seed)")
        if any(k < 1 for k in self.mode_ks) or not self.mode_ks:
            raise ConfigError(f"mode_ks needs values of at least 1, got {self.mode_ks}")
        if self.dev_queries < 1 or not self.prior_weights:
            raise ConfigError("dev_queries must be at least 1 and prior_weights not empty")
        for name in self.modes:
            if not name or not all(ch.isalnum() or ch == "-" for ch in name):
                raise ConfigError(f"a mode name is letters, digits and '-', got {name!r}")
            spec = self.mode(name)
            if spec.tune_prior and spec.uses_training:
                raise ConfigError(
                    f"mode {name!r}: the dev split is training rows the classifier learned; "
                    "give a fixed prior_weight with gate='classifier'"
                )

    def mode(self, name: str) -> ModeSpec:
        """The prediction mode ``name`` of :attr:`modes`.

        Raises:
            ConfigError: an unknown mode name or a bad option.
        """
        if name not in self.modes:
            raise ConfigError(f"unknown mode {name!r}; configured: {', '.join(self.modes)}")
        values = {"score_norm": self.score_norm, **self.modes[name]}
        tune = values.get("prior_weight") == DEV_WEIGHT
        if tune:
            values["prior_weight"] = 1.0
        try:
            options = PredictionOptions.from_dict(values)
        except ConfigError as exc:
            raise ConfigError(f"mode {name!r}: {exc}") from exc
        return ModeSpec(name, options, tune)

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
        values = read_config_values(path)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values)

    # -- derived -------------------------------------------------------------------------------

    @property
    def endpoint_model(self) -> str | None:
        """The model name at an OpenAI-compatible endpoint (``model`` is ``openai:NAME``)."""
        if self.model is None or not self.model.startswith(ENDPOINT_PREFIX):
            return None
        return self.model[len(ENDPOINT_PREFIX) :]

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


def read_config_values(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings of a JSON config file, its ``#`` comment keys left out.

    Raises:
        ConfigError: the file cannot be read, is not JSON or is not one JSON object.
    """
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the benchmark config {path}: {exc}") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold one JSON object")
    return {k: v for k, v in values.items() if not k.startswith("#")}


def _parse_train_sizes(values: object) -> tuple[int | str, ...]:
    """``train_sizes`` as positive ints and ``"full"``; a string is comma-separated."""
    if isinstance(values, str):
        values = [p.strip() for p in values.split(",") if p.strip()]
    sizes: list[int | str] = []
    for value in values:  # type: ignore[attr-defined]
        if value == FULL_SIZE:
            sizes.append(FULL_SIZE)
            continue
        try:
            size = int(value)
        except (TypeError, ValueError):
            size = 0
        if size < 1 or (isinstance(value, float) and value != size):
            raise ConfigError(f"train_sizes holds positive integers or 'full', got {value!r}")
        sizes.append(size)
    if len(set(sizes)) != len(sizes):
        raise ConfigError(f"train_sizes has a value twice: {sizes}")
    return tuple(sizes)


def _check_lm_baseline(baseline: str) -> None:
    if baseline not in LM_BASELINES:
        raise ConfigError(
            f"{baseline!r} is not a fine-tuned LM baseline; choose from: {', '.join(LM_BASELINES)}"
        )
