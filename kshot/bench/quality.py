"""Quality benchmark: dynamic in-context examples against fine-tuned baselines.

One run takes a labelled data set (a registered name such as ``banking77``, or JSONL train and
test files), a causal language model (default: the bundled SmolLM2-135M-Instruct) and an embedding
model (default: the bundled all-MiniLM-L6-v2), and measures on the same test queries:

- **in-context arms**, all fed to the same language model: zero-shot (no examples); ``random``
  (several seeds: mean and spread); ``jaccard``, ``bm25``, ``similarity``, ``mmr``, ``balanced``
  (any registered selector) at each ``k``;
- **fine-tuned baselines** on the same training split: the same language model fully fine-tuned,
  with LoRA (peft) and with prompt tuning (peft soft prompts), each predicting with the same label
  scoring on the zero-shot prompt; plus a logistic regression and a k-nearest-neighbour vote on the
  sentence embeddings the index holds.

Prediction scores each class's readable ``output`` text as a continuation of the prompt
(:meth:`TransformersLM.score_labels`, which shares the prompt's computation across labels) and
takes the best; ``predict="generate"`` decodes greedily and requires an exact match instead.
``calibrate=True`` applies contextual calibration with a content-free ``"N/A"`` query.

Leakage guard: training rows that are test rows (same id, or the same normalised input) are
removed from the training split for every arm; selectors also never return an example whose
input equals the query, and every selection is checked by :func:`assert_no_leak`.

Output directory::

    results.json         every number, the full config, seeds, package versions, machine
    results.md           one table: arm, k, accuracy, macro-F1, prompt tokens, s/query, training s
    accuracy_vs_k.png    a line per strategy; fine-tuned baselines as horizontal lines
    arms/<arm>.json      one file per finished arm (with its predictions); a rerun skips these
    run.log              appended by the command-line runner

Trained weights and embeddings are cached under ``weights_dir`` (default
``$KSHOT_CACHE/bench`` or ``~/.cache/kshot/bench``), keyed by everything that determines them, so
a rerun does not retrain.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kshot._files import atomic_write_bytes
from kshot._version import __version__
from kshot.errors import ConfigError, DataError
from kshot.index.filters import normalize_text
from kshot.types import Example, Prompt, Scored

__all__ = [
    "BASELINES",
    "SCHEMA_VERSION",
    "LeakageError",
    "QualityConfig",
    "assert_no_leak",
    "build_parser",
    "main",
    "predict_labels",
    "remove_leaks",
    "run_quality",
    "stratified_limit",
]

logger = logging.getLogger(__name__)

#: Version of the layout of ``results.json`` and the arm files.
SCHEMA_VERSION = 1

#: Baselines trained on the training split: the LM fully fine-tuned, with LoRA, with prompt
#: tuning, and two classifiers on the sentence embeddings.
BASELINES: tuple[str, ...] = ("full", "lora", "prompt-tuning", "logreg", "knn")
_LM_BASELINES = ("full", "lora", "prompt-tuning")
_PREDICT_MODES = ("score", "generate")
_SCORE_NORMS = ("sum", "mean")

#: Instructions per registered data set (the default for other data is generic).
DEFAULT_INSTRUCTIONS: Mapping[str, str] = {
    "banking77": "Classify the intent of each online-banking customer message.",
    "clinc150": "Classify the intent of each request to a virtual assistant.",
    "movie-sentiment": "Classify the sentiment of each movie review sentence.",
    "boolq": "Answer each question about the passage with yes or no.",
}
_GENERIC_INSTRUCTIONS = "Classify each input."

FloatArray = npt.NDArray[np.float64]
Matrix = npt.NDArray[np.float32]


class LeakageError(DataError):
    """A test query was offered itself (same id or same input) as an in-context example."""


# --- configuration ----------------------------------------------------------------------------


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
        if self.predict not in _PREDICT_MODES:
            raise ConfigError(f"predict must be one of {_PREDICT_MODES}, got {self.predict!r}")
        if self.score_norm not in _SCORE_NORMS:
            raise ConfigError(f"score_norm must be one of {_SCORE_NORMS}, got {self.score_norm!r}")
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
        if self.max_steps is not None:
            return self.max_steps
        if self.epochs is not None:
            return max(1, math.ceil(self.epochs * n_train / self.train_batch_size))
        return int(getattr(self, f"{baseline.replace('-', '_')}_steps"))

    def learning_rate(self, baseline: str) -> float:
        """The learning rate of an LM baseline."""
        return float(getattr(self, f"{baseline.replace('-', '_')}_lr"))


# --- data ---------------------------------------------------------------------------------------


def stratified_limit(examples: Sequence[Example], n: int | None, seed: int) -> list[Example]:
    """Keep ``n`` examples, drawn with ``seed`` and stratified by label; keep the input order.

    Each label keeps close to its share of ``n`` (every example gets the key ``(rank within its
    label + u) / label size`` with ``u`` uniform, and the ``n`` smallest keys win), so small
    limits still cover as many labels as they can.
    """
    if n is None or n >= len(examples):
        return list(examples)
    rng = np.random.default_rng(seed)
    groups: dict[str | None, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        groups[ex.label if ex.label is not None else ex.output].append(i)
    keys = np.empty(len(examples), dtype=np.float64)
    for members in groups.values():
        order = rng.permutation(len(members))
        jitter = rng.random(len(members))
        for rank, (position, u) in enumerate(zip(order, jitter, strict=True)):
            keys[members[position]] = (rank + u) / len(members)
    chosen = np.sort(np.argsort(keys, kind="stable")[:n])
    return [examples[int(i)] for i in chosen]


def remove_leaks(
    train: Sequence[Example], test: Sequence[Example]
) -> tuple[list[Example], list[str]]:
    """Drop training rows that are test rows: the same id, or the same normalised input.

    Returns the kept rows and the ids (or inputs, for rows without ids) of the dropped ones.
    """
    test_ids = {ex.id for ex in test if ex.id}
    test_texts = {normalize_text(ex.input) for ex in test}
    kept: list[Example] = []
    dropped: list[str] = []
    for ex in train:
        if (ex.id and ex.id in test_ids) or normalize_text(ex.input) in test_texts:
            dropped.append(ex.id or ex.input)
        else:
            kept.append(ex)
    return kept, dropped


def assert_no_leak(query: Example, chosen: Iterable[Scored | Example]) -> None:
    """Raise :class:`LeakageError` if a chosen example is the query (same id or same input)."""
    text = normalize_text(query.input)
    for item in chosen:
        ex = item.example if isinstance(item, Scored) else item
        if (query.id and ex.id == query.id) or normalize_text(ex.input) == text:
            raise LeakageError(
                f"test query {query.id or query.input!r} was offered itself as an in-context "
                f"example (example id {ex.id!r})"
            )


def _class_key(ex: Example) -> str:
    if ex.label is not None:
        return ex.label
    if ex.output:
        return ex.output
    raise DataError(f"example {ex.id or ex.input!r} has neither a label nor an output")


def _label_space(train: Sequence[Example], test: Sequence[Example]) -> tuple[list[str], list[str]]:
    """Return the class keys (sorted) and each class's readable output text."""
    outputs: dict[str, Counter[str]] = defaultdict(Counter)
    for ex in [*train, *test]:
        outputs[_class_key(ex)][ex.output or _class_key(ex)] += 1
    labels = sorted(outputs)
    texts = [outputs[label].most_common(1)[0][0] for label in labels]
    if len(set(texts)) != len(texts):
        raise DataError("two classes share the same output text; label scoring needs distinct ones")
    return labels, texts


def _fingerprint(examples: Sequence[Example]) -> str:
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(json.dumps([ex.id, ex.input, ex.output, ex.label]).encode("utf-8"))
    return digest.hexdigest()[:16]


def _load_splits(config: QualityConfig) -> tuple[list[Example], list[Example], str]:
    if config.train_file is not None and config.test_file is not None:
        from kshot.corpus import read_examples

        train = read_examples(config.train_file)
        test = read_examples(config.test_file)
        name = Path(config.train_file).stem
        # Ids make the leakage guard and the arm files precise; give rows without one an id.
        train = [
            ex if ex.id else dataclasses.replace(ex, id=f"train-{i:06d}")
            for i, ex in enumerate(train)
        ]
        test = [
            ex if ex.id else dataclasses.replace(ex, id=f"test-{i:06d}")
            for i, ex in enumerate(test)
        ]
    else:
        from kshot.data import load_dataset

        assert config.dataset is not None
        name = config.dataset
        train = load_dataset(name, "train")
        test = load_dataset(name, config.test_split)
    for split, rows in (("train", train), ("test", test)):
        if not rows:
            raise DataError(f"the {split} split of {name} is empty")
        for ex in rows:
            _class_key(ex)
    return train, test, name


# --- metrics ------------------------------------------------------------------------------------


def _metrics(gold: Sequence[str], pred: Sequence[str | None]) -> dict[str, float]:
    """Accuracy and macro-F1 over the gold classes (a missing prediction is wrong)."""
    n = len(gold)
    if n == 0:
        return {"accuracy": float("nan"), "macro_f1": float("nan")}
    correct = sum(g == p for g, p in zip(gold, pred, strict=True))
    f1s = []
    for label in sorted(set(gold)):
        tp = sum(g == label and p == label for g, p in zip(gold, pred, strict=True))
        fp = sum(g != label and p == label for g, p in zip(gold, pred, strict=True))
        fn = sum(g == label and p != label for g, p in zip(gold, pred, strict=True))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return {"accuracy": correct / n, "macro_f1": float(np.mean(f1s))}


# --- environment --------------------------------------------------------------------------------


def _environment(device: str) -> dict[str, Any]:
    from importlib import metadata

    packages: dict[str, str | None] = {}
    for dist in (
        "kshot",
        "torch",
        "transformers",
        "peft",
        "sentence-transformers",
        "faiss-cpu",
        "bm25s",
        "scikit-learn",
        "numpy",
        "matplotlib",
        "tqdm",
    ):
        try:
            packages[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            packages[dist] = None
    machine: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "device": device,
    }
    try:
        import torch

        machine["torch_threads"] = torch.get_num_threads()
        if device.startswith("cuda") and torch.cuda.is_available():
            machine["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        machine["memory_gib"] = round(pages * page_size / 2**30, 1)
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        pass
    with contextlib.suppress(OSError):
        machine["load_average_at_start"] = list(os.getloadavg())
    return {
        "python": sys.version.split()[0],
        "packages": packages,
        "machine": machine,
    }


# --- files --------------------------------------------------------------------------------------


def _write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=False) + "\n").encode("utf-8"))


def _key(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def _weights_root(config: QualityConfig) -> Path:
    if config.weights_dir is not None:
        return Path(config.weights_dir).expanduser()
    env = os.environ.get("KSHOT_CACHE")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "kshot"
    return base / "bench"


# --- the run ------------------------------------------------------------------------------------


@dataclass
class _Arm:
    """One row of the benchmark: what to run and, once run, its numbers."""

    id: str
    kind: str  # zero-shot | icl | finetune | embedding
    name: str  # strategy or baseline name
    k: int
    seed: int | None = None


class _Runner:
    """Runs one quality benchmark; see :func:`run_quality`."""

    def __init__(self, config: QualityConfig) -> None:
        self.config = config
        self.out = Path(config.out_dir)
        self.arms_dir = self.out / "arms"
        self.started = datetime.now(UTC).isoformat(timespec="seconds")
        self._lm: Any = None
        self._assembler: Any = None
        self._progress: Any = None

    # -- setup ---------------------------------------------------------------------------------

    def prepare(self) -> None:
        c = self.config
        if c.torch_threads is not None:
            import torch

            torch.set_num_threads(c.torch_threads)
        train, test, self.data_name = _load_splits(c)
        self.full_train_size = len(train)
        test = stratified_limit(test, c.limit_test, c.seed)
        train, dropped = remove_leaks(train, test)
        if dropped:
            logger.warning("removed %d training rows that are test rows", len(dropped))
        self.leaks_removed = dropped
        self.train = stratified_limit(train, c.limit_train, c.seed)
        self.test = test
        self.labels, self.label_texts = _label_space(self.train, self.test)
        self.gold = [_class_key(ex) for ex in self.test]
        self.data_key = {
            "name": self.data_name,
            "train": _fingerprint(self.train),
            "test": _fingerprint(self.test),
        }
        from kshot.index import DEFAULT_MODEL, ExampleIndex, encoder_from_name

        started = time.perf_counter()
        self.encoder = encoder_from_name(c.encoder or DEFAULT_MODEL, device=c.device)
        self.train_emb, self.test_emb, self.embed_seconds, self.test_embed_seconds = (
            self._embeddings()
        )
        self.index = ExampleIndex.build(self.train, self.encoder, embeddings=self.train_emb)
        self.index_seconds = time.perf_counter() - started
        logger.info(
            "data %s: %d train, %d test, %d labels; index in %.1f s",
            self.data_name,
            len(self.train),
            len(self.test),
            len(self.labels),
            self.index_seconds,
        )

    def _embeddings(self) -> tuple[Matrix, Matrix, float, float]:
        train, train_seconds = self._embed(self.train, "train")
        test, test_seconds = self._embed(self.test, "test")
        return train, test, train_seconds, test_seconds

    def _embed(self, rows: Sequence[Example], split: str) -> tuple[Matrix, float]:
        """Embed ``rows``, cached on disk by encoder and rows (the seconds are the first run's)."""
        key = _key({"encoder": self.encoder.name, "rows": self.data_key[split]})
        path = _weights_root(self.config) / "embeddings" / f"{self.data_name}-{split}-{key}.npz"
        if path.is_file():
            with np.load(path) as stored:
                return stored["vectors"].astype(np.float32), float(stored["seconds"])
        started = time.perf_counter()
        vectors = self.encoder.encode(
            [ex.input for ex in rows], show_progress=self.config.progress and len(rows) > 500
        )
        seconds = time.perf_counter() - started
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp.npz")
        np.savez(tmp, vectors=vectors, seconds=seconds)
        os.replace(tmp, path)
        return vectors, seconds

    def lm(self) -> Any:
        """The language model of the in-context arms, loaded once."""
        if self._lm is None:
            self._lm = self._load_lm()
        return self._lm

    def _load_lm(self) -> Any:
        from kshot.model.transformers_lm import TransformersLM

        return TransformersLM(
            self.config.model,
            device=self.config.device,
            seed=self.config.seed,
            batch_size=self.config.lm_batch_size,
        )

    def assembler(self) -> Any:
        if self._assembler is None:
            from kshot.prompt import HFTokenCounter, PromptAssembler, PromptTemplate

            c = self.config
            template = PromptTemplate(
                instructions=c.resolved_instructions,
                example=c.example_template,
                query=c.query_template,
                separator=c.separator,
            )
            self._assembler = PromptAssembler(template, HFTokenCounter(self.lm().tokenizer))
        return self._assembler

    # -- arms ----------------------------------------------------------------------------------

    def plan(self) -> list[_Arm]:
        c = self.config
        arms: list[_Arm] = []
        if c.zero_shot:
            arms.append(_Arm("zero-shot", "zero-shot", "zero-shot", 0))
        for name in ("logreg", "knn"):
            if name in c.baselines:
                arms.append(_Arm(name, "embedding", name, c.knn_k if name == "knn" else 0))
        # Order: the smallest k first, then the LM baselines, then the larger k, so that a run
        # stopped early already holds every kind of arm.
        for position, k in enumerate(sorted(c.ks)):
            for strategy in c.strategies:
                if strategy == "random":
                    for seed in c.random_seeds:
                        arms.append(_Arm(f"random-s{seed}-k{k}", "icl", "random", k, seed))
                else:
                    arms.append(_Arm(f"{strategy}-k{k}", "icl", strategy, k))
            if position == 0:
                arms.extend(
                    _Arm(f"ft-{name}", "finetune", name, 0)
                    for name in _LM_BASELINES
                    if name in c.baselines
                )
        if not c.ks:
            arms.extend(
                _Arm(f"ft-{name}", "finetune", name, 0)
                for name in _LM_BASELINES
                if name in c.baselines
            )
        return arms

    def arm_key(self, arm: _Arm) -> str:
        c = self.config
        spec: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "arm": dataclasses.asdict(arm),
            "data": self.data_key,
        }
        if arm.kind in ("zero-shot", "icl", "finetune"):
            spec.update(
                model=c.model,
                predict=c.predict,
                calibrate=c.calibrate,
                score_norm=c.score_norm,
                template=[
                    c.resolved_instructions,
                    c.example_template,
                    c.query_template,
                    c.separator,
                ],
                max_prompt_tokens=c.max_prompt_tokens,
            )
        if arm.kind in ("icl", "embedding"):
            spec["encoder"] = c.encoder
        if arm.kind == "icl":
            spec["params"] = dict(c.selector_params.get(arm.name, {}))
        if arm.kind == "finetune":
            spec["train"] = self._train_spec(arm.name)
        if arm.kind == "embedding":
            spec["logreg_c"] = c.logreg_c
        return _key(spec)

    def _train_spec(self, baseline: str) -> dict[str, Any]:
        c = self.config
        spec: dict[str, Any] = {
            "baseline": baseline,
            "model": c.model,
            "data": self.data_key["train"],
            "steps": c.train_steps(baseline, len(self.train)),
            "lr": c.learning_rate(baseline),
            "batch": c.train_batch_size,
            "max_tokens": c.max_train_tokens,
            "seed": c.seed,
            "prompt": [c.resolved_instructions, c.query_template],
        }
        if baseline == "lora":
            spec.update(r=c.lora_r, alpha=c.lora_alpha, dropout=c.lora_dropout)
            spec["targets"] = list(c.lora_targets)
        if baseline == "prompt-tuning":
            spec["virtual_tokens"] = c.num_virtual_tokens
        return spec

    def arm_units(self, arm: _Arm) -> int:
        """Progress units of an arm: its test queries, plus training steps for LM baselines."""
        if arm.kind == "embedding":
            return len(self.test)
        n = len(self.test)
        if arm.kind == "finetune":
            n += self.config.train_steps(arm.name, len(self.train))
        return n

    def run(self) -> Path:
        from tqdm.auto import tqdm

        self.prepare()
        arms = self.plan()
        self.arms_dir.mkdir(parents=True, exist_ok=True)
        done: dict[str, dict[str, Any]] = {}
        todo: list[_Arm] = []
        for arm in arms:
            record = self._load_arm(arm)
            if record is None:
                todo.append(arm)
            else:
                done[arm.id] = record
        logger.info("%d arms: %d already finished, %d to run", len(arms), len(done), len(todo))
        self._progress = tqdm(
            total=sum(self.arm_units(a) for a in todo),
            desc=f"quality {self.data_name}",
            unit="step",
            disable=not self.config.progress,
            dynamic_ncols=True,
            # In a log file (nohup), one line every half minute rather than a stream of updates.
            mininterval=0.5 if sys.stderr.isatty() else 30.0,
        )
        try:
            for arm in todo:
                # Another run sharing this results folder may have finished the arm meanwhile,
                # or be running it now (it holds the arm's claim file).
                record = self._load_arm(arm)
                claim = None if record is not None else self._claim(arm)
                if claim is None:
                    logger.info("arm %s: finished or running in another run; skipped", arm.id)
                    if record is not None:
                        done[arm.id] = record
                    self._progress.update(self.arm_units(arm))
                    continue
                try:
                    self._progress.set_postfix_str(arm.id)
                    logger.info("running arm %s", arm.id)
                    record = self._run_arm(arm)
                    record["key"] = self.arm_key(arm)
                    _write_json(self.arms_dir / f"{arm.id}.json", record)
                finally:
                    claim.unlink(missing_ok=True)
                done[arm.id] = record
                self.write_reports(arms, done, finished=False)
                logger.info(
                    "arm %s: accuracy %.3f, macro-F1 %.3f, %.3f s/query",
                    arm.id,
                    record["accuracy"],
                    record["macro_f1"],
                    record["seconds_per_query"],
                )
        finally:
            self._progress.close()
        for arm in arms:  # arms that runs sharing the folder finished while this one ran
            if arm.id not in done and (record := self._load_arm(arm)) is not None:
                done[arm.id] = record
        return self.write_reports(arms, done, finished=True)

    def _claim(self, arm: _Arm) -> Path | None:
        """Create ``arms/<arm>.running`` holding this process's id; ``None`` if a live one has it.

        A claim left by a process that no longer runs (killed, machine restarted) is taken over.
        """
        path = self.arms_dir / f"{arm.id}.running"
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    owner = int(path.read_text(encoding="ascii").strip() or "0")
                except (OSError, ValueError):
                    owner = 0
                if owner > 0 and owner != os.getpid() and _process_alive(owner):
                    return None
                path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(f"{os.getpid()}\n")
            return path
        return None

    def _load_arm(self, arm: _Arm) -> dict[str, Any] | None:
        path = self.arms_dir / f"{arm.id}.json"
        if not path.is_file():
            return None
        try:
            record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            logger.warning("ignoring the unreadable arm file %s", path)
            return None
        if record.get("key") != self.arm_key(arm):
            logger.info("arm %s: settings changed since its file was written; rerunning", arm.id)
            return None
        return record

    def _run_arm(self, arm: _Arm) -> dict[str, Any]:
        if arm.kind == "embedding":
            return self._run_embedding(arm)
        if arm.kind == "finetune":
            return self._run_finetune(arm)
        return self._run_icl(arm)

    def _base_record(self, arm: _Arm) -> dict[str, Any]:
        return {
            "id": arm.id,
            "kind": arm.kind,
            "name": arm.name,
            "k": arm.k,
            "seed": arm.seed,
            "n_queries": len(self.test),
        }

    # -- in-context arms -------------------------------------------------------------------------

    def _run_icl(self, arm: _Arm) -> dict[str, Any]:
        from kshot.selector import build_selector

        selector = None
        if arm.kind == "icl":
            params = dict(self.config.selector_params.get(arm.name, {}))
            if arm.name == "random":
                params["seed"] = arm.seed
            selector = build_selector(self.index, arm.name, params)
        record = self._base_record(arm)
        record.update(
            self._evaluate(self.lm(), lambda queries: self._select(selector, queries, arm.k))
        )
        record["train_seconds"] = None
        if selector is not None:
            record["selector_params"] = selector.params.to_dict()
        return record

    def _select(self, selector: Any, queries: Sequence[Example], k: int) -> list[list[Scored]]:
        if selector is None or k == 0:
            return [[] for _ in queries]
        picks: list[list[Scored]] = selector.select_batch([q.input for q in queries], k)
        for query, chosen in zip(queries, picks, strict=True):
            assert_no_leak(query, chosen)
        return picks

    def _evaluate(
        self,
        lm: Any,
        select: Callable[[Sequence[Example]], list[list[Scored]]],
    ) -> dict[str, Any]:
        """Select, assemble and predict for every test query; return metrics and costs."""
        c = self.config
        assembler = self.assembler()
        preds: list[str | None] = []
        tokens: list[int] = []
        n_examples: list[int] = []
        seconds = 0.0
        for start in range(0, len(self.test), c.eval_batch_size):
            batch = self.test[start : start + c.eval_batch_size]
            began = time.perf_counter()
            picks = select(batch)
            prompts = [
                assembler.assemble(q.input, chosen, max_tokens=c.max_prompt_tokens)
                for q, chosen in zip(batch, picks, strict=True)
            ]
            preds.extend(self._predict(lm, prompts))
            seconds += time.perf_counter() - began
            tokens.extend(p.token_count for p in prompts)
            n_examples.extend(len(p.examples) for p in prompts)
            self._advance(len(batch))
        return {
            **_metrics(self.gold, preds),
            "prompt_tokens_per_query": float(np.mean(tokens)),
            "examples_per_query": float(np.mean(n_examples)),
            "seconds_per_query": seconds / len(self.test),
            "eval_seconds": seconds,
            "invalid_predictions": sum(p is None for p in preds),
            "predictions": preds,
        }

    def _predict(self, lm: Any, prompts: Sequence[Prompt]) -> list[str | None]:
        c = self.config
        picks = predict_labels(
            lm,
            prompts,
            self.label_texts,
            mode=c.predict,
            calibrate_with=(
                [self.assembler().with_query(p, "N/A") for p in prompts] if c.calibrate else None
            ),
            score_norm=c.score_norm,
        )
        return [None if i is None else self.labels[i] for i in picks]

    def _advance(self, n: int) -> None:
        if self._progress is not None:
            self._progress.update(n)

    # -- embedding baselines ---------------------------------------------------------------------

    def _run_embedding(self, arm: _Arm) -> dict[str, Any]:
        c = self.config
        record = self._base_record(arm)
        train_y = np.asarray([_class_key(ex) for ex in self.train])
        test_per_query = self.test_embed_seconds / len(self.test)
        if arm.name == "logreg":
            from sklearn.linear_model import LogisticRegression

            started = time.perf_counter()
            model = LogisticRegression(C=c.logreg_c, max_iter=2000, random_state=c.seed)
            model.fit(self.train_emb, train_y)
            train_seconds = time.perf_counter() - started
            started = time.perf_counter()
            preds = [str(p) for p in model.predict(self.test_emb)]
            predict_seconds = time.perf_counter() - started
            record["params"] = {"C": c.logreg_c, "max_iter": 2000}
        else:
            train_seconds = 0.0
            started = time.perf_counter()
            preds = _knn_vote(self.train_emb, train_y, self.test_emb, c.knn_k)
            predict_seconds = time.perf_counter() - started
            record["params"] = {"k": c.knn_k, "vote": "majority, ties by summed cosine"}
        self._advance(len(self.test))
        record.update(_metrics(self.gold, preds))
        record.update(
            prompt_tokens_per_query=None,
            seconds_per_query=test_per_query + predict_seconds / len(self.test),
            eval_seconds=self.test_embed_seconds + predict_seconds,
            train_seconds=train_seconds,
            train_embed_seconds=self.embed_seconds,
            predictions=preds,
        )
        return record

    # -- fine-tuned LM baselines -----------------------------------------------------------------

    def _run_finetune(self, arm: _Arm) -> dict[str, Any]:
        lm, meta = self._finetuned_lm(arm.name)
        record = self._base_record(arm)
        record.update(self._evaluate(lm, lambda queries: [[] for _ in queries]))
        record.update(
            train_seconds=meta["train_seconds"],
            train_steps=meta["steps"],
            train_examples_seen=meta["steps"] * self.config.train_batch_size,
            train_epochs=meta["steps"] * self.config.train_batch_size / len(self.train),
            train_loss_first=meta["losses"][0] if meta["losses"] else None,
            train_loss_last=meta["losses"][-1] if meta["losses"] else None,
            weights_cached=meta["cached"],
            train_spec=self._train_spec(arm.name),
            trainable_parameters=meta["trainable_parameters"],
        )
        return record

    def _finetuned_lm(self, baseline: str) -> tuple[Any, dict[str, Any]]:
        """Train (or load from the cache) one LM baseline; return a TransformersLM and its meta."""
        import torch

        spec = self._train_spec(baseline)
        cache = _weights_root(self.config) / "weights" / f"{baseline}-{_key(spec)}"
        lm = self._load_lm()
        model = lm.model
        meta_path = cache / "meta.json"
        weights_path = cache / "weights.safetensors"
        steps = int(spec["steps"])
        peft_model = None
        if baseline in ("lora", "prompt-tuning"):
            peft_model = self._peft_wrap(baseline, model, lm.tokenizer)
        trainable = model if peft_model is None else peft_model
        n_trainable = sum(p.numel() for p in trainable.parameters() if p.requires_grad)
        if meta_path.is_file() and weights_path.is_file():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            self._load_trained(baseline, model, peft_model, weights_path)
            meta["cached"] = True
            self._advance(steps)
            logger.info("loaded %s weights from %s", baseline, cache)
        else:
            torch.manual_seed(self.config.seed)
            losses, seconds = self._train(trainable, lm.tokenizer, baseline, steps)
            self._save_trained(baseline, model, peft_model, weights_path)
            meta = {
                "train_seconds": seconds,
                "steps": steps,
                "losses": losses,
                "spec": spec,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            _write_json(meta_path, meta)
            meta["cached"] = False
        meta["trainable_parameters"] = n_trainable
        lm.model = self._inference_model(baseline, model, peft_model)
        lm.model.eval()
        return lm, meta

    def _peft_wrap(self, baseline: str, model: Any, tokenizer: Any) -> Any:
        import torch
        from peft import LoraConfig, PromptTuningConfig, TaskType, get_peft_model

        c = self.config
        if baseline == "lora":
            return get_peft_model(
                model,
                LoraConfig(
                    task_type=TaskType.CAUSAL_LM,
                    r=c.lora_r,
                    lora_alpha=c.lora_alpha,
                    lora_dropout=c.lora_dropout,
                    target_modules=list(c.lora_targets),
                ),
            )
        peft_model = get_peft_model(
            model,
            PromptTuningConfig(
                task_type=TaskType.CAUSAL_LM, num_virtual_tokens=c.num_virtual_tokens
            ),
        )
        # Initialise the soft prompt from the instructions' token embeddings (repeated to fill):
        # far better than random vectors when training gets few steps.
        ids = tokenizer(c.resolved_instructions, add_special_tokens=False)["input_ids"] or [0]
        ids = (ids * (c.num_virtual_tokens // len(ids) + 1))[: c.num_virtual_tokens]
        with torch.no_grad():
            words = model.get_input_embeddings()(torch.tensor(ids, device=model.device))
            encoder: Any = peft_model.prompt_encoder["default"]
            encoder.embedding.weight.copy_(words)
        return peft_model

    def _train_rows(self, tokenizer: Any) -> list[tuple[list[int], list[int]]]:
        """Token ids and loss targets (answer tokens + EOS; -100 elsewhere) per training row."""
        c = self.config
        assembler = self.assembler()
        eos = tokenizer.eos_token_id
        rows: list[tuple[list[int], list[int]]] = []
        for ex in self.train:
            prompt = assembler.assemble(ex.input, []).text
            answer = " " + (ex.output or _class_key(ex))
            prompt_ids = list(tokenizer(prompt)["input_ids"])
            full = list(tokenizer(prompt + answer)["input_ids"])
            if full[: len(prompt_ids)] == prompt_ids and len(full) > len(prompt_ids):
                answer_ids = full[len(prompt_ids) :]
            else:
                answer_ids = list(tokenizer(answer, add_special_tokens=False)["input_ids"])
            if eos is not None:
                answer_ids = [*answer_ids, int(eos)]
            room = max(1, c.max_train_tokens - len(answer_ids))
            prompt_ids = prompt_ids[-room:]
            rows.append(([*prompt_ids, *answer_ids], [-100] * len(prompt_ids) + answer_ids))
        return rows

    def _train(
        self, model: Any, tokenizer: Any, baseline: str, steps: int
    ) -> tuple[list[float], float]:
        """A plain AdamW loop on the answer tokens; returns the losses and the seconds taken."""
        import torch

        c = self.config
        rows = self._train_rows(tokenizer)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=c.learning_rate(baseline), weight_decay=0.0)
        warmup = min(10, max(1, steps // 10))

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, (steps - step) / max(1, steps - warmup))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        rng = np.random.default_rng(c.seed)
        order: list[int] = []
        pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        device = next(model.parameters()).device
        losses: list[float] = []
        model.train()
        started = time.perf_counter()
        for _ in range(steps):
            if len(order) < c.train_batch_size:
                order.extend(int(i) for i in rng.permutation(len(rows)))
            batch = [rows[i] for i in order[: c.train_batch_size]]
            del order[: c.train_batch_size]
            width = max(len(ids) for ids, _ in batch)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, (ids, targets) in enumerate(batch):
                input_ids[r, : len(ids)] = torch.tensor(ids)
                labels[r, : len(ids)] = torch.tensor(targets)
                mask[r, : len(ids)] = 1
            out = model(
                input_ids=input_ids.to(device),
                attention_mask=mask.to(device),
                labels=labels.to(device),
            )
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(out.loss.detach()))
            self._advance(1)
        seconds = time.perf_counter() - started
        model.eval()
        return losses, seconds

    def _save_trained(self, baseline: str, model: Any, peft_model: Any, path: Path) -> None:
        from safetensors.torch import save_file

        if baseline == "full":
            state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
            # Tied weights share storage; keep one copy (the loader restores the tie).
            seen: dict[int, str] = {}
            for name in list(state):
                ptr = state[name].data_ptr()
                if ptr in seen:
                    del state[name]
                else:
                    seen[ptr] = name
        elif baseline == "lora":
            from peft import get_peft_model_state_dict

            state = {k: v.contiguous() for k, v in get_peft_model_state_dict(peft_model).items()}
        else:
            state = {"soft_prompt": peft_model.get_prompt_embedding_to_save("default").contiguous()}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file(state, str(tmp))
        os.replace(tmp, path)

    def _load_trained(self, baseline: str, model: Any, peft_model: Any, path: Path) -> None:
        from safetensors.torch import load_file

        state = load_file(str(path))
        if baseline == "full":
            missing, unexpected = model.load_state_dict(state, strict=False)
            if unexpected or any("lm_head" not in m for m in missing):
                raise DataError(f"{path} does not match the model: {missing} {unexpected}")
            model.tie_weights()
        elif baseline == "lora":
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(peft_model, state)
        else:
            import torch

            with torch.no_grad():
                peft_model.prompt_encoder["default"].embedding.weight.copy_(state["soft_prompt"])

    def _inference_model(self, baseline: str, model: Any, peft_model: Any) -> Any:
        if baseline == "full":
            return model
        if baseline == "lora":
            return peft_model.merge_and_unload()
        soft = peft_model.get_prompt_embedding_to_save("default").detach()
        return _soft_prompt_model(peft_model.get_base_model(), soft)

    # -- reports -----------------------------------------------------------------------------------

    def write_reports(
        self, arms: Sequence[_Arm], done: Mapping[str, dict[str, Any]], *, finished: bool
    ) -> Path:
        c = self.config
        records = [
            {k: v for k, v in done[a.id].items() if k != "predictions"}
            for a in arms
            if a.id in done
        ]
        summary = _summary(records)
        lm = self._lm
        if lm is None and finished and any(r["kind"] != "embedding" for r in records):
            lm = self.lm()  # every LM arm was resumed; load the model (cached: ~1 s) to describe it
        result: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "kshot_version": __version__,
            "started": self.started,
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
            "finished": finished and len(records) == len(arms),
            "config": c.to_dict(),
            "seeds": {
                "seed": c.seed,
                "random_seeds": list(c.random_seeds),
                "note": "seed drives the data limits, training order and initialisation",
            },
            "data": {
                "name": self.data_name,
                "test_split": c.test_split if c.train_file is None else c.test_file,
                "train_rows_available": self.full_train_size,
                "train_rows": len(self.train),
                "test_rows": len(self.test),
                "labels": len(self.labels),
                "leakage_rows_removed": len(self.leaks_removed),
                "fingerprint": self.data_key,
                "label_texts": dict(zip(self.labels, self.label_texts, strict=True)),
            },
            "prompt": {
                "instructions": c.resolved_instructions,
                "example_template": c.example_template,
                "query_template": c.query_template,
                "separator": c.separator,
                "label_continuation": "' ' + output",
            },
            "model": {
                "name": None if lm is None else lm.name,
                "parameters": None if lm is None else sum(p.numel() for p in lm.model.parameters()),
                "load_seconds": None if lm is None else lm.load_seconds,
                "device": None if lm is None else lm.device,
            },
            "encoder": {
                "name": self.encoder.name,
                "dim": self.encoder.dim,
                "train_embed_seconds": self.embed_seconds,
                "test_embed_seconds": self.test_embed_seconds,
                "index_seconds": self.index_seconds,
            },
            "environment": _environment(getattr(self.encoder, "device", c.device)),
            "arms_planned": [a.id for a in arms],
            "arms": records,
            "summary": summary,
        }
        if lm is not None:
            result["environment"]["machine"]["device"] = lm.device
        _write_json(self.out / "results.json", result)
        atomic_write_bytes(self.out / "results.md", _markdown(result).encode("utf-8"))
        try:
            _plot(summary, self.out / "accuracy_vs_k.png", title=f"{self.data_name}")
        except ImportError:  # pragma: no cover - matplotlib is in the bench extra
            logger.warning("matplotlib is not installed; skipping accuracy_vs_k.png")
        return self.out


def _soft_prompt_model(base: Any, soft: Any) -> Any:
    """Wrap a causal LM so that every sequence starts with the learned soft prompt.

    Used for inference with :class:`~kshot.model.transformers_lm.TransformersLM` (label scoring
    with a shared prompt cache): on the first pass the virtual tokens are prepended as input
    embeddings at positions ``0..n-1``; later passes (with a key/value cache) get the attention
    mask extended and positions shifted by ``n``, matching how peft trained them.
    """
    import torch

    class SoftPromptLM(torch.nn.Module):
        soft: Any

        def __init__(self) -> None:
            super().__init__()
            self.base = base
            self.register_buffer("soft", soft.to(base.device, base.dtype))
            self.n_virtual = int(soft.shape[0])

        @property
        def config(self) -> Any:
            return self.base.config

        @property
        def generation_config(self) -> Any:
            return self.base.generation_config

        @property
        def device(self) -> Any:
            return self.base.device

        def _extend(
            self, input_ids: Any, attention_mask: Any, position_ids: Any
        ) -> tuple[Any, Any]:
            rows = input_ids.shape[0]
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            if attention_mask.dim() == 4:
                # A custom (rows, 1, queries, keys) mask: boolean (True = may attend) or additive
                # (0 = may attend). Every query may attend to the virtual tokens in front.
                shape = (*attention_mask.shape[:-1], self.n_virtual)
                prefix = (
                    attention_mask.new_ones(shape)
                    if attention_mask.dtype == torch.bool
                    else attention_mask.new_zeros(shape)
                )
            else:
                prefix = attention_mask.new_ones((rows, self.n_virtual))
            if position_ids is None:
                if attention_mask.dim() != 2:
                    raise ConfigError("a 4-D attention mask needs explicit position ids")
                position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
            return torch.cat([prefix, attention_mask], dim=-1), position_ids + self.n_virtual

        def forward(
            self,
            input_ids: Any,
            attention_mask: Any = None,
            position_ids: Any = None,
            past_key_values: Any = None,
            **kwargs: Any,
        ) -> Any:
            mask, positions = self._extend(input_ids, attention_mask, position_ids)
            first = past_key_values is None or past_key_values.get_seq_length() == 0
            if not first:
                return self.base(
                    input_ids=input_ids,
                    attention_mask=mask,
                    position_ids=positions,
                    past_key_values=past_key_values,
                    **kwargs,
                )
            rows = input_ids.shape[0]
            embeds = self.base.get_input_embeddings()(input_ids)
            prefix = self.soft[None].expand(rows, -1, -1)
            virtual = torch.arange(self.n_virtual, device=input_ids.device)[None].expand(rows, -1)
            return self.base(
                inputs_embeds=torch.cat([prefix, embeds], dim=1),
                attention_mask=mask,
                position_ids=torch.cat([virtual, positions], dim=1),
                past_key_values=past_key_values,
                **kwargs,
            )

        def generate(self, input_ids: Any, attention_mask: Any = None, **kwargs: Any) -> Any:
            mask, _ = self._extend(input_ids, attention_mask, None)
            rows = input_ids.shape[0]
            embeds = self.base.get_input_embeddings()(input_ids)
            prefix = self.soft[None].expand(rows, -1, -1)
            new = self.base.generate(
                inputs_embeds=torch.cat([prefix, embeds], dim=1), attention_mask=mask, **kwargs
            )
            return torch.cat([input_ids, new], dim=1)

    return SoftPromptLM()


def predict_labels(
    lm: Any,
    prompts: Sequence[Any],
    label_texts: Sequence[str],
    *,
    mode: str = "score",
    calibrate_with: Sequence[Any] | None = None,
    score_norm: str = "sum",
) -> list[int | None]:
    """Predict one class per prompt; return its index in ``label_texts`` (``None``: no answer).

    ``mode="score"`` scores each ``" " + label_text`` as a continuation of the prompt with
    ``lm.score_labels`` (one prompt pass shared by all labels) and takes the best: the summed
    token log-probability (``score_norm="sum"``) or its mean per token (``"mean"``), after
    contextual calibration when ``calibrate_with`` holds one content-free prompt per prompt.
    ``mode="generate"`` decodes greedily up to the first newline and accepts an exact match
    (case and surrounding punctuation ignored); anything else is ``None``.
    """
    if mode not in _PREDICT_MODES:
        raise ConfigError(f"predict mode must be one of {_PREDICT_MODES}, got {mode!r}")
    if not prompts:
        return []
    lengths = np.asarray(
        [
            max(1, len(lm.tokenizer(" " + t, add_special_tokens=False)["input_ids"]))
            for t in label_texts
        ],
        dtype=np.float64,
    )
    if mode == "generate":
        texts = lm.generate(list(prompts), max_new_tokens=int(lengths.max()) + 2, stop=["\n"])
        lookup = {_normal_answer(t): i for i, t in enumerate(label_texts)}
        return [lookup.get(_normal_answer(text)) for text in texts]
    strings = [" " + t for t in label_texts]
    scores = np.asarray(
        lm.score_labels(
            list(prompts),
            strings,
            calibrate_with=None if calibrate_with is None else list(calibrate_with),
        ),
        dtype=np.float64,
    )
    if score_norm == "mean":
        scores = scores / lengths[None, :]
    return [int(i) for i in np.argmax(scores, axis=1)]


def _knn_vote(train: Matrix, train_y: npt.NDArray[Any], test: Matrix, k: int) -> list[str]:
    """Majority vote of the ``k`` most cosine-similar training rows; ties by summed similarity."""
    preds: list[str] = []
    k = min(k, len(train))
    for start in range(0, len(test), 256):
        sims = test[start : start + 256] @ train.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        for row, cols in enumerate(top):
            votes: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
            for col in cols:
                entry = votes[str(train_y[col])]
                entry[0] += 1
                entry[1] += float(sims[row, col])
            preds.append(max(votes.items(), key=lambda kv: (kv[1][0], kv[1][1]))[0])
    return preds


def _normal_answer(text: str) -> str:
    return normalize_text(text).strip().strip(".,;:!?\"'").strip()


# --- summaries, tables, plots -------------------------------------------------------------------


_BASELINE_NAMES = {
    "full": "fine-tuned (full)",
    "lora": "fine-tuned (LoRA r=8)",
    "prompt-tuning": "prompt tuning",
    "logreg": "logistic regression (embeddings)",
    "knn": "kNN vote (embeddings)",
}


def _summary(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per table line: random seeds folded into mean and standard deviation."""
    rows: list[dict[str, Any]] = []
    randoms: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        if r["kind"] == "icl" and r["name"] == "random":
            randoms[int(r["k"])].append(r)
    emitted_random: set[int] = set()
    for r in records:
        if r["kind"] == "icl" and r["name"] == "random":
            k = int(r["k"])
            if k in emitted_random:
                continue
            emitted_random.add(k)
            group = randoms[k]
            row = {
                "arm": f"random ({len(group)} seeds)",
                "kind": "icl",
                "strategy": "random",
                "k": k,
                "seeds": [g["seed"] for g in group],
            }
            for metric in (
                "accuracy",
                "macro_f1",
                "prompt_tokens_per_query",
                "seconds_per_query",
            ):
                values = np.asarray([g[metric] for g in group], dtype=np.float64)
                row[metric] = float(values.mean())
                row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
                row[f"{metric}_min"] = float(values.min())
                row[f"{metric}_max"] = float(values.max())
            row["train_seconds"] = None
            rows.append(row)
            continue
        name = r["name"]
        rows.append(
            {
                "arm": _BASELINE_NAMES.get(name, name) if r["kind"] != "icl" else name,
                "kind": r["kind"],
                "strategy": name,
                "k": r["k"],
                "accuracy": r["accuracy"],
                "macro_f1": r["macro_f1"],
                "prompt_tokens_per_query": r.get("prompt_tokens_per_query"),
                "seconds_per_query": r["seconds_per_query"],
                "train_seconds": r.get("train_seconds"),
                "train_steps": r.get("train_steps"),
            }
        )
    return rows


def _fmt(value: Any, digits: int = 3, std: Any = None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    text = f"{value:.{digits}f}"
    if std is not None:
        text += f" ± {std:.{digits}f}"
    return text


def _markdown(result: Mapping[str, Any]) -> str:
    c = result["config"]
    data = result["data"]
    model = result["model"]
    lines = [
        f"# Quality benchmark: {data['name']}",
        "",
        f"Model `{model['name']}`, encoder `{result['encoder']['name']}`, "
        f"{data['test_rows']} test queries, {data['train_rows']} training rows, "
        f"{data['labels']} labels. Prediction: {c['predict']}"
        f"{' (calibrated)' if c['calibrate'] else ''}. "
        f"kshot {result['kshot_version']}, {result['updated']}"
        f"{'' if result['finished'] else ' (run in progress: partial results)'}.",
        "",
        "| arm | k | accuracy | macro-F1 | prompt tokens / query | s / query | training s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["summary"]:
        k = row["k"]
        k_text = "-" if row["kind"] in ("finetune",) else str(k)
        if row["kind"] == "embedding":
            k_text = str(k) if row["strategy"] == "knn" else "-"
        lines.append(
            "| "
            + " | ".join(
                [
                    row["arm"],
                    k_text,
                    _fmt(row["accuracy"], 3, row.get("accuracy_std")),
                    _fmt(row["macro_f1"], 3, row.get("macro_f1_std")),
                    _fmt(row["prompt_tokens_per_query"], 1),
                    _fmt(row["seconds_per_query"], 3),
                    _fmt(row["train_seconds"], 1),
                ]
            )
            + " |"
        )
    lines += [
        "",
        "Random: mean ± sample standard deviation over seeds. Fine-tuned rows use the zero-shot "
        "prompt and the same label scoring; their training steps and losses are in results.json. "
        "s / query for the embedding baselines includes encoding the query.",
        "",
    ]
    return "\n".join(lines)


def _plot(summary: Sequence[Mapping[str, Any]], path: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted({int(r["k"]) for r in summary if r["kind"] == "icl"})
    positions = {k: i + 1 for i, k in enumerate(ks)}
    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    zero = [r for r in summary if r["kind"] == "zero-shot"]
    strategies: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in summary:
        if r["kind"] == "icl":
            strategies[str(r["strategy"])].append(r)
    for name, rows in strategies.items():
        rows = sorted(rows, key=lambda r: r["k"])
        xs = [positions[int(r["k"])] for r in rows]
        ys = [r["accuracy"] for r in rows]
        if zero:
            xs, ys = [0, *xs], [zero[0]["accuracy"], *ys]
        if name == "random":
            errs = [0.0] * (len(ys) - len(rows)) + [r.get("accuracy_std", 0.0) for r in rows]
            ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label="random (mean ± sd)")
        else:
            ax.plot(xs, ys, marker="o", label=name)
    if zero:
        ax.scatter([0], [zero[0]["accuracy"]], color="black", zorder=5, label="zero-shot")
    styles = ["--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1))]
    colours = ["tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan"]
    baselines = [r for r in summary if r["kind"] in ("finetune", "embedding")]
    for i, r in enumerate(baselines):
        ax.axhline(
            r["accuracy"],
            linestyle=styles[i % len(styles)],
            color=colours[i % len(colours)],
            linewidth=1.4,
            label=f"{r['arm']} ({r['accuracy']:.2f})",
        )
    ax.set_xticks([0, *positions.values()], ["0", *[str(k) for k in ks]])
    ax.set_xlim(-0.2, len(ks) + 0.2)
    ax.set_xlabel("k (in-context examples)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}: accuracy vs k")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


# --- entry points -------------------------------------------------------------------------------


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def run_quality(config: QualityConfig) -> Path:
    """Run the quality benchmark described by ``config``; return the results directory.

    Finished arms are stored one file each under ``<out_dir>/arms/`` as they complete; a rerun
    with the same settings skips them, and trained weights are reused from the cache.
    """
    return _Runner(config).run()


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
    p.add_argument("--predict", choices=_PREDICT_MODES)
    p.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--epochs", type=float, help="training epochs of the LM baselines")
    p.add_argument("--max-steps", type=int, help="training steps of every LM baseline")
    p.add_argument("--weights-dir", help="cache of trained weights and embeddings")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    return p


def _config_from_args(args: argparse.Namespace) -> QualityConfig:
    overrides = {k: v for k, v in vars(args).items() if k != "config" and v is not None}
    if args.config:
        return QualityConfig.from_json(args.config, **overrides)
    return QualityConfig.from_dict(overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark from the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = _config_from_args(args)
    out = run_quality(config)
    sys.stdout.write(f"results in {out}\n")
    return 0
