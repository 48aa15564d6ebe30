"""Label prediction: pick one class per prompt by scoring or generating its label text.

Works with any :class:`~kshot.model.base.LanguageModel`: scoring goes through its
``score_labels``, contextual calibration through :func:`~kshot.model.base.calibrate` on the
scores of the content-free prompts, generation through ``generate``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence

import numpy as np

from kshot.errors import ConfigError
from kshot.model.base import LanguageModel, PromptInput, calibrate

__all__ = ["PREDICT_MODES", "SCORE_NORMS", "predict_labels"]

#: ``score``: rank the label strings by log-probability; ``generate``: greedy decoding, exact match.
PREDICT_MODES: tuple[str, ...] = ("score", "generate")
#: ``sum`` of a label's token log-probabilities, or their ``mean`` (length-normalised).
SCORE_NORMS: tuple[str, ...] = ("sum", "mean")

#: New tokens allowed when generating without a token counter (the protocol's default).
_DEFAULT_NEW_TOKENS = 32


def predict_labels(
    lm: LanguageModel,
    prompts: Sequence[PromptInput],
    label_texts: Sequence[str],
    *,
    mode: str = "score",
    calibrate_with: Sequence[PromptInput] | None = None,
    score_norm: str = "sum",
    count_tokens: Callable[[str], int] | None = None,
) -> list[int | None]:
    """Predict one class per prompt; return its index in ``label_texts`` (``None``: no answer).

    ``mode="score"`` scores each ``" " + label_text`` as a continuation of the prompt with
    ``lm.score_labels`` and takes the best: the summed token log-probability
    (``score_norm="sum"``) or its mean per token (``"mean"``, which needs ``count_tokens``),
    after contextual calibration when ``calibrate_with`` holds one content-free prompt per
    prompt (or one for all). ``mode="generate"`` decodes greedily up to the first newline (at
    most the longest label's tokens + 2 when ``count_tokens`` is given) and accepts an exact
    match (case and surrounding punctuation ignored); anything else is ``None``.

    Args:
        lm: the model that scores (or generates) the labels.
        prompts: one prompt per query.
        label_texts: each class's readable text; the result indexes into it.
        mode: ``score`` or ``generate``.
        calibrate_with: content-free prompts (one per prompt, or one for all), e.g.
            ``PromptAssembler.with_query(prompt, "N/A")``; ``None``: no calibration.
        score_norm: ``sum`` or ``mean`` of the label's token log-probabilities.
        count_tokens: the model's token count of a text without special tokens, e.g.
            ``lambda t: len(tokenizer(t, add_special_tokens=False)["input_ids"])``.

    Raises:
        ConfigError: an unknown ``mode`` or ``score_norm``, or ``"mean"`` without a counter.
    """
    if mode not in PREDICT_MODES:
        raise ConfigError(f"predict mode must be one of {PREDICT_MODES}, got {mode!r}")
    if score_norm not in SCORE_NORMS:
        raise ConfigError(f"score_norm must be one of {SCORE_NORMS}, got {score_norm!r}")
    if score_norm == "mean" and mode == "score" and count_tokens is None:
        raise ConfigError("score_norm='mean' needs count_tokens (the model's token counter)")
    if not prompts:
        return []
    strings = [" " + t for t in label_texts]
    lengths = None
    if count_tokens is not None:
        lengths = np.asarray([max(1, count_tokens(s)) for s in strings], dtype=np.float64)
    if mode == "generate":
        new_tokens = _DEFAULT_NEW_TOKENS if lengths is None else int(lengths.max()) + 2
        texts = lm.generate(list(prompts), max_new_tokens=new_tokens, stop=["\n"])
        lookup = {_normal_answer(t): i for i, t in enumerate(label_texts)}
        return [lookup.get(_normal_answer(text)) for text in texts]
    scores = np.asarray(lm.score_labels(list(prompts), strings), dtype=np.float64)
    if calibrate_with is not None:
        content_free = lm.score_labels(list(calibrate_with), strings)
        scores = calibrate(scores, content_free)
    if score_norm == "mean" and lengths is not None:
        scores = scores / lengths[None, :]
    return [int(i) for i in np.argmax(scores, axis=1)]


def _normal_answer(text: str) -> str:
    # The index's rule for "the same text" (NFKC, case-folded, spaces folded), then the
    # punctuation a model tends to put around a one-word answer.
    folded = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return folded.strip().strip(".,;:!?\"'").strip()
