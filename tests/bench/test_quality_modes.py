"""The quality benchmark's prediction-mode arms: a smoke run of every mode on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kshot.bench.quality import QualityConfig, run_quality
from kshot.bench.quality.arms import arm_key, plan
from kshot.bench.quality.runner import Runner
from kshot.corpus import write_jsonl
from kshot.errors import ConfigError
from tests.bench.test_quality import TEST, TRAIN, tiny_lm_dir

pytest.importorskip("torch")
pytest.importorskip("sklearn")

__all__ = ["tiny_lm_dir"]  # the fixture, imported for the tests below

MODES: dict[str, dict[str, Any]] = {
    "gate": {"gate": "neighbours", "neighbours": 2},
    "prior": {"prior_weight": "dev", "neighbours": 3},
    "batch-cal": {"calibration": "batch"},
    "cf-cal": {"calibration": "content-free"},
    "cicle": {"gate": "classifier", "classifier_top": 2},
}


def _config(tmp_path: Path, model: Path, **changes: Any) -> QualityConfig:
    train_file, test_file = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    write_jsonl(TRAIN, train_file)
    write_jsonl(TEST, test_file)
    values: dict[str, Any] = {
        "dataset": None,
        "train_file": str(train_file),
        "test_file": str(test_file),
        "out_dir": str(tmp_path / "results"),
        "model": str(model),
        "encoder": "hashing:64",
        "device": "cpu",
        "ks": (1,),
        "strategies": ("similarity",),
        "zero_shot": False,
        "baselines": ("logreg",),
        "eval_batch_size": 2,
        "weights_dir": str(tmp_path / "weights"),
        "progress": False,
        "modes": MODES,
        "mode_ks": (1, 2),
        "dev_queries": 4,
        "prior_weights": (0.0, 1.0, 4.0),
    }
    return QualityConfig(**(values | changes))


def test_mode_arms_run_record_their_cost_and_resume(
    tmp_path: Path, tiny_lm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, tiny_lm_dir)
    out = run_quality(config)
    result = json.loads((out / "results.json").read_text())
    arms = {a["id"]: a for a in result["arms"]}
    n_labels = result["data"]["labels"]
    assert n_labels == 4
    expected = {f"similarity-{m}-k{k}" for m in MODES for k in (1, 2)}
    assert set(arms) == {"logreg", "similarity-k1"} | expected
    assert result["finished"] is True
    for arm_id in expected:
        arm = arms[arm_id]
        assert 0.0 <= arm["accuracy"] <= 1.0 and arm["seconds_per_query"] >= 0.0
        assert arm["examples_per_query"] == arm["k"]
        assert arm["mode_options"]["score_norm"] == "sum"
    # Cost: the plain arm scores every label; the gates score at most their M (or top) labels.
    assert arms["similarity-k1"]["labels_scored_per_query"] == n_labels
    assert arms["similarity-batch-cal-k1"]["labels_scored_per_query"] == n_labels
    for k in (1, 2):
        assert 1 <= arms[f"similarity-gate-k{k}"]["labels_scored_per_query"] <= 2
        assert arms[f"similarity-cicle-k{k}"]["labels_scored_per_query"] == 2
    # The prior weight is chosen on the dev split and recorded with every weight's accuracy.
    prior = arms["similarity-prior-k1"]
    assert set(prior["dev"]["accuracy_by_weight"]) == {"0.0", "1.0", "4.0"}
    assert prior["prior_weight"] in (0.0, 1.0, 4.0) and prior["dev"]["queries"] == 4
    best = max(prior["dev"]["accuracy_by_weight"].values())
    assert prior["dev"]["accuracy_by_weight"][str(prior["prior_weight"])] == best
    # CICLe trains a classifier: marked, with its seconds; the zero-training modes are not.
    cicle = arms["similarity-cicle-k1"]
    assert cicle["uses_training"] is True and cicle["train_seconds"] > 0
    assert arms["similarity-gate-k1"]["uses_training"] is False
    assert arms["similarity-gate-k1"]["train_seconds"] is None
    table = (out / "results.md").read_text()
    assert "| labels scored / query |" in table
    assert "similarity + cicle (trains a classifier)" in table
    assert "similarity + batch-cal" in table and "similarity + cf-cal" in table

    # A rerun resumes every mode arm.
    def refuse(self: Any, arm: Any) -> dict[str, Any]:
        raise AssertionError(f"arm {arm.id} ran again")

    monkeypatch.setattr(Runner, "run_arm", refuse)
    assert json.loads((run_quality(config) / "results.json").read_text())["finished"] is True


def test_mode_arms_keep_the_plain_arms_keys(tmp_path: Path) -> None:
    # Adding modes (or turning calibrate on) changes no mode-less key but the ones it should.
    data = {"name": "x", "train": "a", "test": "b"}
    base = QualityConfig(dataset="banking77", ks=(4,), strategies=("similarity",))
    with_modes = QualityConfig(
        dataset="banking77", ks=(4,), strategies=("similarity",), modes=MODES
    )
    plain = plan(base)
    planned = plan(with_modes)
    assert planned[: len(plain)] == plain
    for arm in plain:
        assert arm_key(base, arm, data, 10) == arm_key(with_modes, arm, data, 10)
    mode_arms = planned[len(plain) :]
    assert [a.id for a in mode_arms][:2] == ["similarity-gate-k4", "similarity-prior-k4"]
    keys = {arm_key(with_modes, a, data, 10) for a in mode_arms}
    assert len(keys) == len(mode_arms)
    calibrated = QualityConfig(
        dataset="banking77", ks=(4,), strategies=("similarity",), modes=MODES, calibrate=True
    )
    # The global calibrate switch reaches the arms without a mode, not the mode arms.
    assert arm_key(calibrated, plain[-1], data, 10) != arm_key(with_modes, plain[-1], data, 10)
    for arm in mode_arms:
        assert arm_key(calibrated, arm, data, 10) == arm_key(with_modes, arm, data, 10)


def test_mode_config_errors_name_the_setting() -> None:
    def bad(modes: dict[str, Any], **other: Any) -> None:
        QualityConfig(dataset="banking77", modes=modes, **other)

    with pytest.raises(ConfigError, match="mode 'g': gate must be one of"):
        bad({"g": {"gate": "labels"}})
    with pytest.raises(ConfigError, match="unknown prediction option 'top'"):
        bad({"g": {"top": 3}})
    with pytest.raises(ConfigError, match="fixed prior_weight with gate='classifier'"):
        bad({"c": {"gate": "classifier", "prior_weight": "dev"}})
    with pytest.raises(ConfigError, match="letters, digits"):
        bad({"a b": {}})
    with pytest.raises(ConfigError, match="cannot hold 'random'"):
        bad({"g": {}}, mode_strategies=("random",))
    with pytest.raises(ConfigError, match="predict='score'"):
        bad({"g": {}}, predict="generate")


@pytest.mark.parametrize("name", ["banking77", "movie-sentiment", "clinc150"])
def test_committed_configs_hold_the_mode_arms(name: str) -> None:
    path = Path(__file__).parents[2] / "benchmarks" / "quality" / "configs" / f"{name}.json"
    config = QualityConfig.from_json(path)
    assert config.mode_ks == (4, 8)
    modes = {config.mode(m) for m in config.modes}
    assert {m.options.gate for m in modes} == {"none", "neighbours", "classifier"}
    assert {m.options.calibration for m in modes} >= {"none", "content-free", "batch"}
    assert any(m.tune_prior for m in modes)
    ids = [a.id for a in plan(config)]
    assert len(ids) == len(set(ids))
