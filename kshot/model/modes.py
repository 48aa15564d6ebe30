"""Prediction modes that use the retrieved neighbours: label gating, a neighbour prior, calibration.

A score-mode prediction runs these steps (each optional except scoring and the choice):

1. **candidates**: every label, or only the labels among the top-``neighbours`` retrieved
   neighbours (``gate="neighbours"``), or the ``classifier_top`` most probable labels of a
   classifier such as a logistic regression on the embeddings (``gate="classifier"``, CICLe);
   only candidates are scored, which is what makes 64-150 labels affordable;
2. **scoring** of the candidates' label strings with ``lm.score_labels``;
3. **content-free calibration** (Zhao et al. 2021) with one content-free prompt per prompt;
4. ``score_norm="mean"``: divide by each label's token count;
5. **normalisation** over the candidates into log-probabilities (non-candidates: ``-inf``);
6. **batch calibration** (Zhou et al. 2023): divide each label's probability by its mean
   probability over the batch of prompts scored together;
7. **neighbour prior**: add ``prior_weight`` times the similarity-weighted label distribution
   of the top-``neighbours`` neighbours to the log-probabilities;
8. the best label wins.

Steps 5-6 leave the ranking of :func:`~kshot.model.labels.predict_labels` unchanged when off.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from kshot.errors import ConfigError
from kshot.model.base import LanguageModel, PromptInput, calibrate, log_softmax

__all__ = [
    "CALIBRATIONS",
    "DEFAULT_PRIOR_WEIGHTS",
    "GATES",
    "LabelScores",
    "Neighbour",
    "Prediction",
    "PredictionOptions",
    "batch_calibrate",
    "candidate_labels",
    "choose_prior_weight",
    "fuse_prior",
    "neighbour_prior",
    "predict_with",
    "score_candidates",
]

FloatArray: TypeAlias = npt.NDArray[np.float64]

#: One retrieved neighbour of a query: its label's index and its similarity to the query.
Neighbour: TypeAlias = tuple[int, float]

#: ``none``; ``content-free`` (Zhao et al. 2021, needs content-free prompts); ``batch`` (Zhou
#: et al. 2023, the mean label probability over the prompts scored together).
CALIBRATIONS: tuple[str, ...] = ("none", "content-free", "batch")
#: Which labels are scored: ``none`` (all), ``neighbours`` (those of the top neighbours),
#: ``classifier`` (a classifier's most probable ones).
GATES: tuple[str, ...] = ("none", "neighbours", "classifier")
#: The prior weights :func:`choose_prior_weight` tries by default.
DEFAULT_PRIOR_WEIGHTS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


@dataclass(frozen=True)
class PredictionOptions:
    """How a score-mode prediction uses the neighbours, a classifier and calibration.

    Attributes:
        calibration: one of :data:`CALIBRATIONS`.
        gate: one of :data:`GATES`.
        neighbours: M, how many of each query's retrieved neighbours (best first) the gate
            and the prior use.
        classifier_top: how many of the classifier's best labels ``gate="classifier"`` keeps.
        prior_weight: weight of the neighbours' label distribution added to the model's
            log-probabilities; ``0`` turns the prior off.
        score_norm: ``sum`` or ``mean`` (per token) of a label's token log-probabilities.
    """

    calibration: str = "none"
    gate: str = "none"
    neighbours: int = 16
    classifier_top: int = 4
    prior_weight: float = 0.0
    score_norm: str = "sum"

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATIONS:
            raise ConfigError(
                f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}"
            )
        if self.gate not in GATES:
            raise ConfigError(f"gate must be one of {GATES}, got {self.gate!r}")
        if self.score_norm not in ("sum", "mean"):
            raise ConfigError(f"score_norm must be 'sum' or 'mean', got {self.score_norm!r}")
        for name in ("neighbours", "classifier_top"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not np.isfinite(self.prior_weight) or self.prior_weight < 0:
            raise ConfigError(f"prior_weight must be a finite number >= 0, got {self.prior_weight}")

    @property
    def uses_neighbours(self) -> bool:
        """Whether the prediction needs each query's retrieved neighbours."""
        return self.gate == "neighbours" or self.prior_weight > 0

    def to_dict(self) -> dict[str, object]:
        """The options as JSON-ready values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> PredictionOptions:
        """Build options from a mapping; unknown keys fail with the known ones named."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown prediction option {unknown[0]!r}; known: {', '.join(sorted(known))}"
            )
        try:
            return cls(**values)  # type: ignore[arg-type]
        except TypeError as exc:
            raise ConfigError(f"bad prediction options {dict(values)}: {exc}") from exc


@dataclass(frozen=True)
class LabelScores:
    """Normalised, calibrated label log-probabilities (steps 1-6), before the prior.

    ``log_probs`` has shape ``(n_prompts, n_labels)``; labels that were not scored are
    ``-inf``. ``labels_scored`` is how many labels each prompt scored.
    """

    log_probs: FloatArray
    labels_scored: list[int]


@dataclass(frozen=True)
class Prediction:
    """The chosen label index per prompt and the labels each prompt scored (the cost)."""

    picks: list[int]
    labels_scored: list[int]


def neighbour_prior(
    neighbours: Sequence[Sequence[Neighbour]], n_labels: int, m: int | None = None
) -> FloatArray:
    """The similarity-weighted label distribution of each query's top-``m`` neighbours.

    Each neighbour adds its similarity (negative ones count 0) to its label; a row sums to 1.
    A query whose neighbours all have similarity <= 0 gets their plain vote, and a query with
    no neighbours the uniform distribution. Returns shape ``(n_queries, n_labels)``.

    Raises:
        ConfigError: a neighbour's label index is outside ``[0, n_labels)``.
    """
    out = np.zeros((len(neighbours), n_labels), dtype=np.float64)
    for row, found in enumerate(neighbours):
        top = list(found)[:m] if m is not None else list(found)
        for label, sim in top:
            _check_label(label, n_labels)
            out[row, label] += max(float(sim), 0.0)
        total = out[row].sum()
        if total <= 0:
            for label, _ in top:
                out[row, label] += 1.0
            total = out[row].sum()
        out[row] = out[row] / total if total > 0 else 1.0 / n_labels
    return out


def candidate_labels(
    options: PredictionOptions,
    n_labels: int,
    neighbours: Sequence[Sequence[Neighbour]] | None = None,
    classifier_probs: npt.ArrayLike | None = None,
    n_prompts: int | None = None,
) -> list[tuple[int, ...]]:
    """The label indices each prompt scores, sorted (step 1).

    Raises:
        ConfigError: the gate needs ``neighbours`` or ``classifier_probs`` and they are
            missing or do not hold one row per prompt.
    """
    if options.gate == "neighbours":
        if neighbours is None:
            raise ConfigError("gate='neighbours' needs each prompt's retrieved neighbours")
        sets = []
        for found in neighbours:
            labels = {
                _check_label(label, n_labels) for label, _ in list(found)[: options.neighbours]
            }
            # A query with no neighbours scores every label rather than none.
            sets.append(tuple(sorted(labels)) if labels else tuple(range(n_labels)))
        return sets
    if options.gate == "classifier":
        if classifier_probs is None:
            raise ConfigError("gate='classifier' needs the classifier's label probabilities")
        probs = np.atleast_2d(np.asarray(classifier_probs, dtype=np.float64))
        if probs.shape[1] != n_labels:
            raise ConfigError(
                f"classifier probabilities have {probs.shape[1]} columns, expected {n_labels}"
            )
        top = min(options.classifier_top, n_labels)
        # Stable sort: ties go to the lower label index, so the gate is deterministic.
        order = np.argsort(-probs, axis=1, kind="stable")[:, :top]
        return [tuple(sorted(int(j) for j in row)) for row in order]
    if n_prompts is None:
        raise ConfigError("candidate_labels needs n_prompts when every label is scored")
    return [tuple(range(n_labels))] * n_prompts


def score_candidates(
    lm: LanguageModel,
    prompts: Sequence[PromptInput],
    label_strings: Sequence[str],
    candidates: Sequence[tuple[int, ...]],
    options: PredictionOptions,
    *,
    content_free: Sequence[PromptInput] | None = None,
    label_lengths: npt.ArrayLike | None = None,
) -> LabelScores:
    """Score each prompt's candidate labels and normalise and calibrate them (steps 2-6).

    Prompts with the same candidate set are scored in one ``score_labels`` call.

    Args:
        lm: the model.
        prompts: one prompt per query.
        label_strings: every label's continuation string (e.g. ``" " + text``).
        candidates: per prompt, the label indices to score (:func:`candidate_labels`).
        options: the calibration and score norm.
        content_free: one content-free prompt per prompt (or one for all), needed by
            ``calibration="content-free"``.
        label_lengths: each label string's token count, needed by ``score_norm="mean"``.

    Raises:
        ConfigError: a needed input is missing or the counts do not match.
    """
    n, n_labels = len(prompts), len(label_strings)
    if len(candidates) != n:
        raise ConfigError(f"{len(candidates)} candidate sets for {n} prompts")
    cf: list[PromptInput] | None = None
    if options.calibration == "content-free":
        if content_free is None or len(content_free) not in (1, n):
            raise ConfigError(
                "calibration='content-free' needs one content-free prompt per prompt, or one"
            )
        cf = list(content_free)
    lengths = None
    if options.score_norm == "mean":
        if label_lengths is None:
            raise ConfigError("score_norm='mean' needs the labels' token counts")
        lengths = np.asarray(label_lengths, dtype=np.float64)
    scores = np.full((n, n_labels), -np.inf, dtype=np.float64)
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, cand in enumerate(candidates):
        groups[tuple(cand)].append(i)
    for cand, rows in groups.items():
        cols = list(cand)
        strings = [label_strings[j] for j in cols]
        block = np.asarray(lm.score_labels([prompts[i] for i in rows], strings), dtype=np.float64)
        if cf is not None:
            # One content-free prompt for all is scored once and shared.
            cf_rows = cf if len(cf) == 1 else [cf[i] for i in rows]
            block = calibrate(block, lm.score_labels(cf_rows, strings))
        if lengths is not None:
            block = block / lengths[cols][None, :]
        scores[np.ix_(rows, cols)] = log_softmax(block, axis=1)
    if options.calibration == "batch":
        scores = batch_calibrate(scores)
    return LabelScores(scores, [len(c) for c in candidates])


def batch_calibrate(log_probs: npt.ArrayLike) -> FloatArray:
    """Batch calibration (Zhou et al. 2023): ``log p(y|x) - log mean_batch p(y|x)``, renormalised.

    Labels never scored in the batch (``-inf`` everywhere) stay ``-inf``.
    """
    lp = np.atleast_2d(np.asarray(log_probs, dtype=np.float64))
    mean = np.exp(lp).mean(axis=0)
    with np.errstate(divide="ignore"):
        log_mean = np.log(mean)
    out = np.where(np.isfinite(lp), lp - np.where(mean > 0, log_mean, 0.0), -np.inf)
    return log_softmax(out, axis=1)


def fuse_prior(log_probs: npt.ArrayLike, prior: npt.ArrayLike, weight: float) -> FloatArray:
    """The model's log-probabilities plus ``weight`` times the neighbours' distribution (step 7)."""
    lp = np.atleast_2d(np.asarray(log_probs, dtype=np.float64))
    if weight == 0:
        return lp
    p = np.atleast_2d(np.asarray(prior, dtype=np.float64))
    if p.shape != lp.shape:
        raise ConfigError(f"prior of shape {p.shape} does not match scores of shape {lp.shape}")
    out: FloatArray = lp + weight * p
    return out


def choose_prior_weight(
    log_probs: npt.ArrayLike,
    prior: npt.ArrayLike,
    gold: Sequence[int],
    weights: Sequence[float] = DEFAULT_PRIOR_WEIGHTS,
) -> tuple[float, dict[float, float]]:
    """The prior weight with the best accuracy on labelled (dev) queries, and each weight's.

    Ties go to the smallest weight, so the prior is only as strong as the dev split asks.

    Raises:
        ConfigError: no weights, or ``gold`` does not hold one label per row.
    """
    lp = np.atleast_2d(np.asarray(log_probs, dtype=np.float64))
    if not weights:
        raise ConfigError("choose_prior_weight needs at least one weight")
    if len(gold) != lp.shape[0] or lp.shape[0] == 0:
        raise ConfigError(f"{len(gold)} gold labels for {lp.shape[0]} scored dev queries")
    truth = np.asarray(gold)
    accuracy = {
        float(w): float(np.mean(np.argmax(fuse_prior(lp, prior, float(w)), axis=1) == truth))
        for w in sorted(weights)
    }
    best = max(accuracy, key=lambda w: (accuracy[w], -w))
    return best, accuracy


def predict_with(
    lm: LanguageModel,
    prompts: Sequence[PromptInput],
    label_texts: Sequence[str],
    options: PredictionOptions | None = None,
    *,
    neighbours: Sequence[Sequence[Neighbour]] | None = None,
    classifier_probs: npt.ArrayLike | None = None,
    calibrate_with: Sequence[PromptInput] | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> Prediction:
    """Predict one class per prompt with ``options``; return the picks and the labels scored.

    Each ``" " + label_text`` is scored as a continuation of the prompt (see the module
    docstring for the steps).

    Args:
        lm: the model that scores the labels.
        prompts: one prompt per query (the batch over which ``calibration="batch"`` averages).
        label_texts: each class's readable text; the picks index into it.
        options: the prediction mode; ``None``: score every label, no calibration.
        neighbours: per prompt, its retrieved neighbours as ``(label index, similarity)``, best
            first (needed by ``gate="neighbours"`` and by a prior weight above 0).
        classifier_probs: ``(n_prompts, n_labels)`` class probabilities (``gate="classifier"``).
        calibrate_with: content-free prompts (``calibration="content-free"``).
        count_tokens: the model's token counter (``score_norm="mean"``).

    Raises:
        ConfigError: an input the options need is missing or malformed.
    """
    opts = options or PredictionOptions()
    if not prompts:
        return Prediction([], [])
    if opts.uses_neighbours and (neighbours is None or len(neighbours) != len(prompts)):
        raise ConfigError("these prediction options need one list of neighbours per prompt")
    if opts.score_norm == "mean" and count_tokens is None:
        raise ConfigError("score_norm='mean' needs count_tokens (the model's token counter)")
    strings = [" " + t for t in label_texts]
    lengths = None
    if count_tokens is not None:
        lengths = np.asarray([max(1, count_tokens(s)) for s in strings], dtype=np.float64)
    cands = candidate_labels(opts, len(strings), neighbours, classifier_probs, len(prompts))
    scored = score_candidates(
        lm, prompts, strings, cands, opts, content_free=calibrate_with, label_lengths=lengths
    )
    final = scored.log_probs
    if opts.prior_weight > 0:
        assert neighbours is not None  # checked above
        prior = neighbour_prior(neighbours, len(strings), opts.neighbours)
        final = fuse_prior(final, prior, opts.prior_weight)
    return Prediction([int(i) for i in np.argmax(final, axis=1)], scored.labels_scored)


def _check_label(label: int, n_labels: int) -> int:
    if not 0 <= int(label) < n_labels:
        raise ConfigError(f"neighbour label index {label} is outside the {n_labels} labels")
    return int(label)
