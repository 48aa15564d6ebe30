"""Prediction modes: label gating, the neighbour prior, batch calibration, the classifier gate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from kshot.errors import ConfigError
from kshot.model import (
    LanguageModel,
    PredictionOptions,
    batch_calibrate,
    choose_prior_weight,
    neighbour_prior,
    predict_labels,
    predict_with,
)

LABELS = ["balance", "card lost", "top up", "refund"]


class _TableLM:
    """Scores each label string from a fixed table per prompt; records what it was asked."""

    def __init__(self, table: dict[str, dict[str, float]]) -> None:
        self.table = table
        self.calls: list[tuple[list[str], list[str]]] = []

    @property
    def name(self) -> str:
        return "table"

    def score_labels(self, prompts: Sequence[Any], labels: Sequence[str]) -> Any:
        self.calls.append((list(prompts), list(labels)))
        return np.asarray(
            [[self.table[p][lb.strip()] for lb in labels] for p in prompts], dtype=np.float64
        )

    def generate(self, prompts: Sequence[Any], **_: Any) -> list[str]:
        raise AssertionError("score modes never generate")

    def labels_scored(self) -> int:
        return sum(len(p) * len(lb) for p, lb in self.calls)


def _table(rows: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {p: dict(zip(LABELS, s, strict=True)) for p, s in rows.items()}


def test_lm_fake_follows_the_protocol() -> None:
    assert isinstance(_TableLM({}), LanguageModel)


def test_neighbour_gate_scores_only_the_neighbours_labels() -> None:
    # The model alone prefers "balance"; the neighbours hold only "top up" and "refund", so
    # the gated prediction picks the best of those two and scores 2 labels, not 4.
    lm = _TableLM(_table({"q": [-0.5, -3.0, -1.0, -2.0]}))
    neighbours = [[(2, 0.9), (3, 0.8), (2, 0.7), (0, 0.1)]]
    plain = predict_with(lm, ["q"], LABELS)
    assert plain.picks == [0] and plain.labels_scored == [4]
    lm.calls.clear()
    gated = predict_with(
        lm, ["q"], LABELS, PredictionOptions(gate="neighbours", neighbours=3), neighbours=neighbours
    )
    assert gated.picks == [2] and gated.labels_scored == [2]
    assert lm.calls == [(["q"], [" top up", " refund"])]


def test_gate_groups_prompts_with_the_same_label_set() -> None:
    lm = _TableLM(_table({"a": [0, -1, -2, -3], "b": [-3, -2, -1, 0], "c": [0, 0, -1, 0]}))
    neighbours = [[(0, 1.0), (1, 0.5)], [(3, 1.0), (2, 0.5)], [(1, 1.0), (0, 0.5)]]
    got = predict_with(
        lm, ["a", "b", "c"], LABELS, PredictionOptions(gate="neighbours"), neighbours=neighbours
    )
    assert got.picks == [0, 3, 0]
    assert got.labels_scored == [2, 2, 2]
    assert len(lm.calls) == 2  # {0, 1} for a and c together, {2, 3} for b
    assert lm.labels_scored() == 6


def test_neighbour_prior_is_similarity_weighted() -> None:
    prior = neighbour_prior([[(1, 0.6), (2, 0.2), (1, 0.2), (3, 0.9)]], 4, m=3)
    assert prior[0].tolist() == pytest.approx([0.0, 0.8, 0.2, 0.0])
    # Negative similarities fall back to a plain vote; no neighbours to the uniform prior.
    vote = neighbour_prior([[(0, -0.1), (0, -0.2), (2, -0.5)]], 3)
    assert vote[0].tolist() == pytest.approx([2 / 3, 0.0, 1 / 3])
    assert neighbour_prior([[]], 4).tolist() == [[0.25] * 4]
    with pytest.raises(ConfigError, match="outside the 4 labels"):
        neighbour_prior([[(7, 1.0)]], 4)


def test_prior_fusion_moves_the_answer_to_the_neighbours_label() -> None:
    # The model slightly prefers "balance"; every neighbour says "refund".
    lm = _TableLM(_table({"q": [-1.0, -4.0, -4.0, -1.2]}))
    neighbours = [[(3, 0.9), (3, 0.8)]]
    assert predict_with(lm, ["q"], LABELS).picks == [0]
    fused = predict_with(
        lm, ["q"], LABELS, PredictionOptions(prior_weight=1.0), neighbours=neighbours
    )
    assert fused.picks == [3]
    with pytest.raises(ConfigError, match="neighbours per prompt"):
        predict_with(lm, ["q"], LABELS, PredictionOptions(prior_weight=1.0))


def test_choose_prior_weight_takes_the_best_dev_accuracy_smallest_on_ties() -> None:
    log_probs = np.log([[0.6, 0.4], [0.55, 0.45], [0.9, 0.1]])
    prior = np.asarray([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    weight, accuracy = choose_prior_weight(log_probs, prior, [1, 1, 0], weights=[0, 0.1, 1, 4])
    assert accuracy[0.0] == pytest.approx(1 / 3)
    assert accuracy[1.0] == 1.0 and accuracy[4.0] == 1.0
    assert weight == 1.0
    with pytest.raises(ConfigError, match="gold labels"):
        choose_prior_weight(log_probs, prior, [1])


def test_batch_calibration_removes_a_label_bias_shared_by_the_batch() -> None:
    # Every query leans to label 0 by the same bias; after batch calibration the second query,
    # relatively strongest on label 1, picks it.
    rows = {
        "a": [-0.1, -3.0, -4.0, -4.0],
        "b": [-0.3, -1.5, -4.0, -4.0],
        "c": [-0.2, -4.0, -1.0, -4.0],
    }
    lm = _TableLM(_table(rows))
    raw = predict_with(lm, ["a", "b", "c"], LABELS)
    assert raw.picks == [0, 0, 0]
    calibrated = predict_with(lm, ["a", "b", "c"], LABELS, PredictionOptions(calibration="batch"))
    assert calibrated.picks == [0, 1, 2]
    out = batch_calibrate([[np.log(0.5), np.log(0.5), -np.inf]])
    assert np.isneginf(out[0, 2]) and np.exp(out[0, :2]).sum() == pytest.approx(1.0)


def test_content_free_calibration_matches_predict_labels() -> None:
    rows = {"q": [-1.0, -1.5, -3.0, -3.0], "N/A": [-0.1, -3.0, -2.0, -2.0]}
    lm = _TableLM(_table(rows))
    opts = PredictionOptions(calibration="content-free")
    got = predict_with(lm, ["q"], LABELS, opts, calibrate_with=["N/A"]).picks
    assert got == predict_labels(lm, ["q"], LABELS, calibrate_with=["N/A"]) == [1]
    with pytest.raises(ConfigError, match="content-free prompt"):
        predict_with(lm, ["q"], LABELS, opts)


def test_classifier_gate_lets_the_model_choose_among_the_top_labels() -> None:
    # CICLe: the classifier's top 2 are "card lost" and "top up"; the model picks between them.
    lm = _TableLM(_table({"q": [0.0, -2.0, -1.0, -0.5]}))
    probs = [[0.1, 0.5, 0.3, 0.1]]
    got = predict_with(
        lm,
        ["q"],
        LABELS,
        PredictionOptions(gate="classifier", classifier_top=2),
        classifier_probs=probs,
    )
    assert got.picks == [2] and got.labels_scored == [2]
    with pytest.raises(ConfigError, match="classifier"):
        predict_with(lm, ["q"], LABELS, PredictionOptions(gate="classifier"))


def test_options_validate_and_round_trip() -> None:
    opts = PredictionOptions(gate="neighbours", neighbours=8, prior_weight=2.0, calibration="batch")
    assert PredictionOptions.from_dict(opts.to_dict()) == opts
    with pytest.raises(ConfigError, match="gate must be one of"):
        PredictionOptions(gate="top")
    with pytest.raises(ConfigError, match="calibration must be one of"):
        PredictionOptions(calibration="zhao")
    with pytest.raises(ConfigError, match="neighbours must be at least 1"):
        PredictionOptions(neighbours=0)
    with pytest.raises(ConfigError, match="prior_weight"):
        PredictionOptions(prior_weight=-1.0)
    with pytest.raises(ConfigError, match="unknown prediction option 'weight'"):
        PredictionOptions.from_dict({"weight": 1.0})
    with pytest.raises(AttributeError):
        opts.gate = "none"  # type: ignore[misc]


def test_gated_scores_equal_the_full_scores_on_the_real_model(smollm2_lm: Any) -> None:
    # Scoring only the candidates gives the same log-probabilities (renormalised over them) as
    # scoring every label and keeping those columns: the gate changes the cost, not the numbers.
    from kshot.model import log_softmax
    from kshot.model.modes import candidate_labels, score_candidates

    prompts = ["Input: my card never came\nLabel:", "Input: how do I add money?\nLabel:"]
    strings = [" " + t for t in LABELS]
    neighbours = [[(1, 0.9), (0, 0.4)], [(2, 0.8), (3, 0.7)]]
    opts = PredictionOptions(gate="neighbours")
    cands = candidate_labels(opts, len(LABELS), neighbours)
    gated = score_candidates(smollm2_lm, prompts, strings, cands, opts)
    full = np.asarray(smollm2_lm.score_labels(prompts, strings))
    for row, cols in enumerate(cands):
        want = log_softmax(full[row, list(cols)])
        assert gated.log_probs[row, list(cols)] == pytest.approx(want, abs=1e-4)
        others = [j for j in range(len(LABELS)) if j not in cols]
        assert np.isneginf(gated.log_probs[row, others]).all()
    assert gated.labels_scored == [2, 2]
