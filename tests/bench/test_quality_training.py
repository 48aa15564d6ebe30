"""The quality benchmark's converging baselines: dev split, early stopping, batching, N curve."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import pytest

from kshot.bench.quality import QualityConfig, run_quality
from kshot.bench.quality.arms import arm_key, plan
from kshot.bench.quality.config import BASELINES
from kshot.bench.quality.plot import curve_points, plot_accuracy_vs_n
from kshot.bench.quality.report import markdown, summary
from kshot.bench.quality.runner import Runner
from kshot.bench.quality.training import (
    EarlyStopping,
    bucketed_batches,
    dev_size,
    pad_batch,
    split_dev,
)
from kshot.corpus import write_jsonl
from kshot.errors import ConfigError
from kshot.types import Example
from tests.bench.test_quality import TEST, TRAIN, tiny_lm_dir
from tests.bench.test_quality_modes import _config as modes_config

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("sklearn")

__all__ = ["tiny_lm_dir"]  # the fixture, shared with the other quality tests


def _labelled(n_per_label: dict[str, int]) -> list[Example]:
    rows = []
    for label, n in n_per_label.items():
        rows += [
            Example(input=f"{label} text {i}", output=label, label=label, id=f"{label}-{i}")
            for i in range(n)
        ]
    return rows


def _config(tmp_path: Path, model: Path, **values: Any) -> QualityConfig:
    """The mode tests' tiny run (its files written), without modes, with every baseline."""
    settings: dict[str, Any] = {
        "modes": {},
        "strategies": ("random", "similarity"),
        "random_seeds": (0, 1),
        "zero_shot": True,
        "baselines": BASELINES,
        "train_batch_size": 4,
        "eval_batch_size": 3,
    }
    return modes_config(tmp_path, model, **(settings | values))


# --- dev split ------------------------------------------------------------------------------------


def test_dev_split_is_stratified_seeded_and_disjoint() -> None:
    rows = _labelled({"a": 40, "b": 20, "c": 10})
    assert dev_size(len(rows), 0.1, 300) == 7
    assert dev_size(len(rows), 0.5, 5) == 5  # capped
    assert dev_size(2, 0.1, 300) == 1 and dev_size(1, 0.1, 300) == 0
    split = split_dev(rows, 7, seed=3)
    dev_ids = {ex.id for ex in split.dev}
    train_ids = {ex.id for ex in split.train}
    assert len(dev_ids) == 7 and not dev_ids & train_ids
    assert dev_ids | train_ids == {ex.id for ex in rows}
    assert Counter(ex.label for ex in split.dev) == {"a": 4, "b": 2, "c": 1}
    assert [ex.id for ex in split_dev(rows, 7, seed=3).dev] == [ex.id for ex in split.dev]
    assert {ex.id for ex in split_dev(rows, 7, seed=4).dev} != dev_ids


def test_runner_dev_split_is_taken_from_the_pool_never_the_test_split(
    tmp_path: Path, tiny_lm_dir: Path
) -> None:
    config = _config(
        tmp_path, tiny_lm_dir, train_sizes=(8,), early_stopping=True, dev_fraction=0.25
    )
    # The leaked training row (a copy of a test row) is removed before any split is drawn.
    leaked = Example(input=TEST[0].input, output="change pin", label="change_pin", id="copy")
    write_jsonl([*TRAIN, leaked], Path(str(config.train_file)))
    runner = Runner(config)
    runner.prepare()
    tuner = runner.fine_tuner(8)
    pool = {ex.id for ex in runner.pool(8).rows}
    dev = {ex.id for ex in tuner.split.dev}
    train = {ex.id for ex in tuner.train}
    test = {ex.id for ex in runner.test}
    assert len(dev) == 2 and len(train) == 6
    assert dev | train == pool
    assert not dev & train and not dev & test and not train & test
    assert "copy" not in pool


# --- early stopping -------------------------------------------------------------------------------


def _script(stopper: EarlyStopping, curve: list[float], seconds: float = 1.0) -> int:
    """Feed a scripted dev curve; return the epochs trained."""
    for epoch, accuracy in enumerate(curve, start=1):
        if not stopper.update(accuracy, seconds):
            return epoch
    return len(curve)


def test_early_stopping_stops_when_dev_plateaus() -> None:
    stopper = EarlyStopping(min_epochs=2, max_epochs=20, patience=2)
    assert _script(stopper, [0.1, 0.3, 0.5, 0.5, 0.49, 0.9, 0.95]) == 5
    assert stopper.reason == "converged" and stopper.converged
    assert stopper.best_epoch == 3  # a tie is no gain: the first epoch at the best value
    assert "best dev accuracy 0.500 at epoch 3" in stopper.describe()
    assert "stopped at epoch 5" in stopper.describe()


def test_early_stopping_trains_at_least_min_epochs() -> None:
    stopper = EarlyStopping(min_epochs=3, max_epochs=20, patience=1)
    assert _script(stopper, [0.6, 0.2, 0.1, 0.1, 0.1]) == 3
    assert stopper.best_epoch == 1 and stopper.converged


def test_early_stopping_reports_a_budget_stop_exactly() -> None:
    rising = EarlyStopping(min_epochs=2, max_epochs=3, patience=2)
    assert _script(rising, [0.1, 0.2, 0.3, 0.4]) == 3
    assert rising.reason == "max_epochs" and not rising.converged
    assert rising.describe() == (
        "stopped by budget (max_epochs) at epoch 3, dev still rising; best epoch 3"
    )
    flat = EarlyStopping(min_epochs=2, max_epochs=3, patience=3)
    assert _script(flat, [0.1, 0.4, 0.3]) == 3
    assert "dev not improved for 1 epoch(s), patience 3 not reached" in flat.describe()
    # Time: a third epoch as long as the second would end past 25 s.
    timed = EarlyStopping(min_epochs=2, max_epochs=10, patience=2, max_seconds=25.0)
    assert _script(timed, [0.1, 0.2, 0.3], seconds=10.0) == 2
    assert timed.reason == "time"
    assert timed.describe().startswith("stopped by budget (the time budget) at epoch 2")
    # The time budget is hard: it stops training even before min_epochs.
    early = EarlyStopping(min_epochs=3, max_epochs=10, patience=2, max_seconds=15.0)
    assert _script(early, [0.1, 0.2, 0.3], seconds=10.0) == 1
    assert early.reason == "time" and "a single epoch: no dev trend yet" in early.describe()


# --- batching -------------------------------------------------------------------------------------


def test_length_bucketed_batches_cover_each_row_once_and_group_lengths() -> None:
    rng = np.random.default_rng(0)
    lengths = [int(n) for n in rng.integers(5, 100, size=203)]
    batches = bucketed_batches(lengths, 8, np.random.default_rng(1), chunk_batches=4)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(203))
    assert all(1 <= len(b) <= 8 for b in batches) and len(batches) == 26
    # Sorting within chunks leaves far less padding than a plain shuffle would.
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    order = np.random.default_rng(1).permutation(203)
    plain = [order[s : s + 8] for s in range(0, 203, 8)]
    assert padded < 0.8 * sum(len(b) * max(lengths[i] for i in b) for b in plain)
    # Seeded: the same generator seed gives the same epoch; the next epoch differs.
    again = bucketed_batches(lengths, 8, np.random.default_rng(1), chunk_batches=4)
    assert again == batches
    second = np.random.default_rng(1)
    bucketed_batches(lengths, 8, second, chunk_batches=4)
    assert bucketed_batches(lengths, 8, second, chunk_batches=4) != batches


def test_pad_batch_pads_to_the_batch_longest_row() -> None:
    rows = [([1, 2, 3], [-100, 2, 3]), ([4, 5], [-100, 5])]
    ids, labels, mask = pad_batch(rows, pad=0)
    assert ids.shape == labels.shape == mask.shape == (2, 3)
    assert ids.tolist() == [[1, 2, 3], [4, 5, 0]]
    assert labels.tolist() == [[-100, 2, 3], [-100, 5, -100]]
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0]]


# --- the fine-tuning loop -------------------------------------------------------------------------


class _ScriptedDev:
    """Stands in for the dev evaluator: scripted accuracies, and the weights at each epoch."""

    curve: ClassVar[list[float]] = []
    snapshots: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def evaluate(self, lm: Any, select: Any) -> Any:
        model = lm.model
        _ScriptedDev.snapshots.append(
            {k: v.detach().clone() for k, v in model.state_dict().items()}
        )
        accuracy = _ScriptedDev.curve[len(_ScriptedDev.snapshots) - 1]
        return SimpleNamespace(metrics=SimpleNamespace(accuracy=accuracy))


def test_best_dev_epoch_weights_are_the_ones_tested_and_cached(
    tmp_path: Path, tiny_lm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kshot.bench.quality.finetune as finetune

    config = _config(
        tmp_path, tiny_lm_dir, early_stopping=True, patience=2, max_epochs=10, dev_fraction=0.25
    )
    runner = Runner(config)
    runner.prepare()
    _ScriptedDev.curve = [0.2, 0.9, 0.5, 0.4, 0.95]
    _ScriptedDev.snapshots = []
    monkeypatch.setattr(finetune, "InContextEvaluator", _ScriptedDev)
    widths: list[int] = []
    tuner = runner.fine_tuner(None)
    lengths = [len(ids) for ids, _ in tuner._train_rows(runner.lm().tokenizer)]
    load = tuner.load_lm

    def load_recording() -> Any:
        lm = load()
        lm.model.register_forward_pre_hook(
            lambda _m, _a, kw: widths.append(int(kw["input_ids"].shape[1])), with_kwargs=True
        )
        return lm

    tuner.load_lm = load_recording
    trained = tuner.trained("full", runner.space)
    assert len(_ScriptedDev.snapshots) == 4  # stopped at epoch 4: two epochs without a gain
    history = trained.history
    assert history["best_epoch"] == 2 and history["epochs_trained"] == 4
    assert history["converged"] is True and history["stop_reason"] == "converged"
    assert [e["dev_accuracy"] for e in history["dev_curve"]] == [0.2, 0.9, 0.5, 0.4]
    per_epoch = history["steps_per_epoch"]
    assert per_epoch == 3  # 9 training rows (12 less 3 dev rows), batches of 4
    assert [e["steps"] for e in history["dev_curve"]] == [3, 6, 9, 12]
    assert set(history["dev_curve"][0]) == {
        "epoch",
        "steps",
        "train_loss",
        "dev_accuracy",
        "seconds",
    }
    assert history["train_steps_best"] == 6 and trained.steps == 12
    tested = trained.lm.model.state_dict()
    best, last = _ScriptedDev.snapshots[1], _ScriptedDev.snapshots[3]
    assert all(torch.equal(tested[k], best[k]) for k in best)
    assert not all(torch.equal(tested[k], last[k]) for k in last)
    # Dynamic padding: each training forward pass is as wide as its batch's longest row.
    assert max(widths) == max(lengths) and len(set(widths)) > 1

    # The cache holds the best epoch's weights and the history; a rerun loads both.
    again = runner.fine_tuner(None).trained("full", runner.space)
    assert again.cached is True and again.history == history
    reloaded = again.lm.model.state_dict()
    assert all(torch.equal(reloaded[k], best[k]) for k in best)


def test_lora_initialisation_is_seeded(tmp_path: Path, tiny_lm_dir: Path) -> None:
    # Two LoRA trainings with the same seed (and different caches, so both train) end with the
    # same weights, whatever the global random state before them: the seed comes before peft
    # draws LoRA's A matrices.
    merged = []
    for run in range(2):
        config = _config(tmp_path, tiny_lm_dir, max_steps=1, weights_dir=str(tmp_path / f"w{run}"))
        runner = Runner(config)
        runner.prepare()
        torch.rand(1000 * (run + 1))
        trained = runner.fine_tuner(None).trained("lora", runner.space)
        assert trained.cached is False
        merged.append({k: v.clone() for k, v in trained.lm.model.state_dict().items()})
    assert all(torch.equal(merged[0][k], merged[1][k]) for k in merged[0])


# --- the training-set-size curve ------------------------------------------------------------------


def test_train_sizes_restrict_every_arm_to_the_same_rows(tmp_path: Path, tiny_lm_dir: Path) -> None:
    config = _config(
        tmp_path,
        tiny_lm_dir,
        train_sizes=(8, "full"),
        early_stopping=True,
        max_epochs=2,
        dev_fraction=0.25,
        zero_shot=False,
        strategies=("random",),
        baselines=("knn", "lora"),
    )
    out = run_quality(config)
    result = json.loads((out / "results.json").read_text())
    assert result["finished"] is True
    ids = [a["id"] for a in result["arms"]]
    per_size = ["knn", "random-s0-k1", "random-s1-k1", "ft-lora"]
    assert ids == [f"n8-{a}" for a in per_size] + [f"nfull-{a}" for a in per_size]
    sizes = {s["size"]: s for s in result["data"]["train_sizes"]}
    assert sizes[8]["rows"] == 8 and sizes["full"]["rows"] == len(TRAIN)
    assert sizes[8]["fine_tune_dev_rows"] == 2 and sizes[8]["fine_tune_train_rows"] == 6
    for arm in result["arms"]:
        assert arm["n_train"] == sizes[arm["train_size"]]["rows"], arm["id"]
        if arm["kind"] == "finetune":
            assert arm["train_rows"] + arm["dev_rows"] == arm["n_train"]
            assert len(arm["dev_curve"]) == arm["epochs_trained"] == 2
            assert arm["stopped"].startswith("stopped by budget (max_epochs) at epoch 2")
    rows = summary(result["arms"])
    assert {(r["train_size"], r["arm"]) for r in rows} >= {
        (8, "random (2 seeds)"),
        ("full", "random (2 seeds)"),
    }
    table = (out / "results.md").read_text()
    assert "## N = 8: 8 labelled training rows" in table and "## N = full" in table
    assert "| n8-ft-lora | 2 |" in table and "dev accuracy by epoch" in table
    assert (out / "accuracy_vs_n.png").read_bytes()[:4] == b"\x89PNG"

    # The index the in-context arms select from holds exactly the N rows (nested in the full).
    runner = Runner(config)
    runner.prepare()
    small, full = runner.pool(8), runner.pool("full")
    assert len(small.index) == 8 and len(full.index) == len(TRAIN)
    assert {ex.id for ex in small.index.get([ex.id for ex in small.rows])} == {
        ex.id for ex in small.rows
    }
    assert {ex.id for ex in small.rows} < {ex.id for ex in full.rows}
    # Each (N, arm) has its own key: the same arm at two sizes is two resumable files.
    arms = {a.id: a for a in plan(config)}
    one, other = arms["n8-random-s0-k1"], arms["nfull-random-s0-k1"]
    assert arm_key(config, one, small.data_key, 8) != arm_key(config, other, full.data_key, 12)


def test_accuracy_vs_n_keeps_tied_arms_apart(tmp_path: Path) -> None:
    rows = [
        {"arm": arm, "kind": kind, "strategy": arm, "k": 4, "n_train": n, "accuracy": 0.5}
        for arm, kind in (("similarity", "icl"), ("fine-tuned (full)", "finetune"))
        for n in (100, 1000)
    ]
    points = curve_points(rows)
    assert set(points) == {"similarity k=4", "fine-tuned (full)"}
    xs = [x for p in points.values() for x, _ in p]
    assert len(set(xs)) == 4  # same N and accuracy, yet no two points on top of each other
    assert all(
        abs(x / n - 1) <= 0.04 + 1e-9
        for x, n in zip(sorted(xs), [100, 100, 1000, 1000], strict=True)
    )
    plot_accuracy_vs_n(rows, tmp_path / "n.png", title="t")
    assert (tmp_path / "n.png").read_bytes()[:4] == b"\x89PNG"


def test_config_checks_the_curve_and_stopping_settings() -> None:
    assert QualityConfig(train_sizes="500, 2000,full").train_sizes == (500, 2000, "full")
    for bad in ([0], ["all"], [1.5], [500, 500]):
        with pytest.raises(ConfigError, match="train_sizes"):
            QualityConfig(train_sizes=bad)
    with pytest.raises(ConfigError, match="drop epochs and max_steps"):
        QualityConfig(early_stopping=True, max_steps=3)
    with pytest.raises(ConfigError, match="min_epochs <= max_epochs"):
        QualityConfig(early_stopping=True, min_epochs=4, max_epochs=3)
    with pytest.raises(ConfigError, match="dev_fraction"):
        QualityConfig(early_stopping=True, dev_fraction=1.0)
    with pytest.raises(ConfigError, match="patience"):
        QualityConfig(early_stopping=True, patience=0)


def test_markdown_without_sizes_is_one_table(tmp_path: Path) -> None:
    records = [
        {
            "id": "knn",
            "kind": "embedding",
            "name": "knn",
            "k": 8,
            "accuracy": 0.5,
            "macro_f1": 0.4,
            "seconds_per_query": 0.1,
        }
    ]
    result = {
        "config": {"predict": "score", "calibrate": False},
        "data": {"name": "d", "test_rows": 4, "train_rows": 12, "labels": 4},
        "model": {"name": "m"},
        "encoder": {"name": "e"},
        "kshot_version": "0",
        "updated": "now",
        "finished": True,
        "arms": records,
        "summary": summary(records),
    }
    text = markdown(result)
    assert text.count("| arm | k |") == 1 and "## N =" not in text
    assert "dev accuracy by epoch" not in text
