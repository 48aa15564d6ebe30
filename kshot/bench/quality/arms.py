"""The arms of a quality run: what to run, in which order, and their files in ``arms/``.

Each finished arm is one file ``arms/<arm id>.json`` holding its record and ``key``, a digest of
every setting that determines its numbers: a rerun keeps a file whose key matches and reruns the
others. Runs may share a results folder: before running an arm a run creates
``arms/<arm id>.running`` holding its process id (:meth:`ArmStore.claim`); another run leaves a
claimed arm to its owner unless the owner no longer runs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kshot.bench.quality.cache import cache_key, write_json
from kshot.bench.quality.config import (
    EMBEDDING_BASELINES,
    LM_BASELINES,
    SCHEMA_VERSION,
    QualityConfig,
)

__all__ = [
    "Arm",
    "ArmRecord",
    "ArmStore",
    "arm_key",
    "plan",
    "plan_one",
    "size_prefix",
    "train_spec",
]

logger = logging.getLogger(__name__)

#: One arm's numbers as stored in its file (plain JSON values; see the runner for the fields).
ArmRecord = dict[str, object]


@dataclass
class Arm:
    """One row of the benchmark: what to run (its numbers live in its :data:`ArmRecord`)."""

    id: str
    kind: str  # zero-shot | icl | finetune | embedding
    name: str  # strategy or baseline name
    k: int
    seed: int | None = None
    mode: str | None = None  # a prediction mode of the config's ``modes`` (icl arms only)
    calibrated: bool = False  # contextual calibration of this arm alone (``calibrated_arms``)
    train_size: int | str | None = None  # a value of the config's ``train_sizes``

    def base_record(self, n_queries: int) -> ArmRecord:
        """The fields every arm file starts with."""
        return (
            {
                "id": self.id,
                "kind": self.kind,
                "name": self.name,
                "k": self.k,
                "seed": self.seed,
                "n_queries": n_queries,
            }
            | ({} if self.mode is None else {"mode": self.mode})
            | ({} if self.train_size is None else {"train_size": self.train_size})
        )


def size_prefix(size: int | str | None) -> str:
    """The prefix of the arm ids of training-set size ``size`` (``""`` without sizes)."""
    return "" if size is None else f"n{size}-"


def plan(config: QualityConfig) -> list[Arm]:
    """The arms of ``config`` in run order: :func:`plan_one`, once per ``train_sizes`` value.

    With training-set sizes every arm runs once per size, the sizes in the configured order,
    its id prefixed with ``n<size>-``.
    """
    arms = plan_one(config)
    if not config.train_sizes:
        return arms
    return [
        dataclasses.replace(arm, id=size_prefix(size) + arm.id, train_size=size)
        for size in config.train_sizes
        for arm in arms
    ]


def plan_one(config: QualityConfig) -> list[Arm]:
    """The arms of ``config`` for one training set, in run order.

    Order: zero-shot and the embedding baselines, then the smallest k, then the LM baselines,
    then the larger k, so that a run stopped early already holds every kind of arm; then the
    arms with a prediction mode (``<strategy>-<mode>-k<k>``), by k; then the calibrated twins of
    the ``calibrated_arms`` (``zero-shot-cal``, ``<strategy>-cal-k<k>``), by k.
    """
    c = config
    arms: list[Arm] = []
    if c.zero_shot:
        arms.append(Arm("zero-shot", "zero-shot", "zero-shot", 0))
    for name in EMBEDDING_BASELINES:
        if name in c.baselines:
            arms.append(Arm(name, "embedding", name, c.knn_k if name == "knn" else 0))
    finetune = [
        Arm(f"ft-{name}", "finetune", name, 0) for name in LM_BASELINES if name in c.baselines
    ]
    for position, k in enumerate(sorted(c.ks)):
        for strategy in c.strategies:
            if strategy == "random":
                for seed in c.random_seeds:
                    arms.append(Arm(f"random-s{seed}-k{k}", "icl", "random", k, seed))
            else:
                arms.append(Arm(f"{strategy}-k{k}", "icl", strategy, k))
        if position == 0:
            arms.extend(finetune)
    if not c.ks:
        arms.extend(finetune)
    for k in sorted(c.mode_ks if c.modes else ()):
        for strategy in c.mode_strategies:
            for mode in c.modes:
                arms.append(Arm(f"{strategy}-{mode}-k{k}", "icl", strategy, k, mode=mode))
    arms.extend(_calibrated_arms(c))
    return arms


def _calibrated_arms(config: QualityConfig) -> list[Arm]:
    """The calibrated twins of the arms named in ``calibrated_arms``, in plan order."""
    c = config
    arms: list[Arm] = []
    if c.zero_shot and "zero-shot" in c.calibrated_arms:
        arms.append(Arm("zero-shot-cal", "zero-shot", "zero-shot", 0, calibrated=True))
    for k in sorted(c.ks):
        for strategy in c.strategies:
            if strategy in c.calibrated_arms:
                arms.append(Arm(f"{strategy}-cal-k{k}", "icl", strategy, k, calibrated=True))
    return arms


def train_spec(
    config: QualityConfig, baseline: str, train_rows: str, n_train: int
) -> dict[str, object]:
    """Everything that determines an LM baseline's trained weights (``train_rows``: fingerprint)."""
    c = config
    spec: dict[str, object] = {
        "baseline": baseline,
        "model": c.model,
        "data": train_rows,
        "steps": c.train_steps(baseline, n_train),
        "lr": c.learning_rate(baseline),
        "batch": c.train_batch_size,
        "max_tokens": c.max_train_tokens,
        "seed": c.seed,
        "prompt": [c.resolved_instructions, c.query_template],
    }
    if c.early_stopping:
        # Trained until dev accuracy stops improving: the budget is the stopping rule.
        del spec["steps"]
        spec["early_stopping"] = {
            "min_epochs": c.min_epochs,
            "max_epochs": c.max_epochs,
            "patience": c.patience,
            "max_train_seconds": c.max_train_seconds,
            "dev_fraction": c.dev_fraction,
            "dev_max": c.dev_max,
            "batching": "length-bucketed",
        }
    if baseline == "lora":
        spec.update(r=c.lora_r, alpha=c.lora_alpha, dropout=c.lora_dropout)
        spec["targets"] = list(c.lora_targets)
    if baseline == "prompt-tuning":
        spec["virtual_tokens"] = c.num_virtual_tokens
    return spec


def arm_key(config: QualityConfig, arm: Arm, data_key: Mapping[str, str], n_train: int) -> str:
    """The digest of every setting that determines the arm's numbers (stored in its file).

    ``data_key`` holds the data set's name and the fingerprints of the ``train`` and ``test``
    rows. Unchanged since the first results were written, so their arm files still resume.
    """
    c = config
    described = dataclasses.asdict(arm)
    if arm.mode is None:
        del described["mode"]  # the arms without a mode keep the keys they were written with
    if not arm.calibrated:
        del described["calibrated"]  # so do the arms not calibrated on their own
    if arm.train_size is None:
        del described["train_size"]  # so do the runs without training-set sizes
    spec: dict[str, object] = {
        "schema": SCHEMA_VERSION,
        "arm": described,
        "data": dict(data_key),
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
        if arm.calibrated:
            spec["calibrate"] = True
        if c.base_url is not None:
            spec["base_url"] = c.base_url
    if arm.kind in ("icl", "embedding"):
        spec["encoder"] = c.encoder
    if arm.kind == "icl":
        spec["params"] = dict(c.selector_params.get(arm.name, {}))
    if arm.mode is not None:
        mode = c.mode(arm.mode)
        spec["calibrate"] = None  # the mode's own calibration applies
        spec["mode"] = mode.options.to_dict() | {"tune_prior": mode.tune_prior}
        if mode.tune_prior:
            spec["dev"] = {"queries": c.dev_queries, "weights": list(c.prior_weights)}
        if mode.uses_training:
            spec["logreg_c"] = c.logreg_c
    if arm.kind == "finetune":
        spec["train"] = train_spec(c, arm.name, data_key["train"], n_train)
    if arm.kind == "embedding":
        spec["logreg_c"] = c.logreg_c
    return cache_key(spec)


class ArmStore:
    """The ``arms/`` folder of a results directory: finished arms and claims."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def load(self, arm: Arm, key: str) -> ArmRecord | None:
        """The arm's record if its file exists, reads and was written with ``key``."""
        path = self.folder / f"{arm.id}.json"
        if not path.is_file():
            return None
        try:
            record: ArmRecord = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            logger.warning("ignoring the unreadable arm file %s", path)
            return None
        if record.get("key") != key:
            logger.info("arm %s: settings changed since its file was written; rerunning", arm.id)
            return None
        return record

    def save(self, arm: Arm, record: ArmRecord) -> None:
        """Write the arm's file (atomically)."""
        write_json(self.folder / f"{arm.id}.json", record)

    def claim(self, arm: Arm) -> Path | None:
        """Create ``<arm>.running`` holding this process's id; ``None`` if a live one has it.

        A claim left by a process that no longer runs (killed, machine restarted) is taken over.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{arm.id}.running"
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


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True
