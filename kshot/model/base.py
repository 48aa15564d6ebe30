"""The language model interface and backend-independent helpers (calibration)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, TypeAlias, cast, runtime_checkable

import numpy as np
import numpy.typing as npt

from kshot.errors import ConfigError
from kshot.types import ChatMessage, Prompt

__all__ = [
    "LanguageModel",
    "PromptInput",
    "as_prompt_input",
    "calibrate",
    "cut_at_stop",
    "first_stop",
    "is_single_prompt",
    "log_softmax",
]

#: What a model accepts as one prompt: a text, a list of chat messages, or an assembled Prompt.
PromptInput: TypeAlias = str | Sequence[ChatMessage] | Prompt

FloatArray: TypeAlias = npt.NDArray[np.float64]


@runtime_checkable
class LanguageModel(Protocol):
    """A language model that kshot can feed prompts to.

    ``generate`` returns only the new text of each prompt (greedy decoding). ``score_labels``
    returns, for each prompt and each label, the total log-probability of the label's tokens as
    a continuation of the prompt: an array of shape ``(n_prompts, n_labels)``.

    These two methods are all that :func:`~kshot.model.predict_labels` and the benchmarks call
    through the protocol: contextual calibration scores the content-free prompts with the same
    ``score_labels`` and combines both with :func:`calibrate`, so a backend need not implement
    it (``TransformersLM.score_labels`` also accepts ``calibrate_with`` as a convenience).
    """

    @property
    def name(self) -> str:
        """The model's name or path."""
        ...

    def generate(
        self,
        prompts: Sequence[PromptInput],
        *,
        max_new_tokens: int = 32,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        """Continue each prompt greedily; return only the new text, cut at the first ``stop``."""
        ...

    def score_labels(self, prompts: Sequence[PromptInput], labels: Sequence[str]) -> FloatArray:
        """Return the log-probability of each label after each prompt, ``(n_prompts, n_labels)``."""
        ...


def as_prompt_input(prompt: PromptInput) -> str | list[dict[str, str]]:
    """Return ``prompt`` as a text or as a list of plain message dicts.

    Raises:
        ConfigError: the value is neither a text, nor messages, nor an assembled Prompt.
    """
    if isinstance(prompt, Prompt):
        if prompt.text is not None:
            return prompt.text
        if prompt.messages is not None:
            return [dict(m) for m in prompt.messages]
        raise ConfigError("the Prompt has neither text nor messages")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence) and all(isinstance(m, Mapping) for m in prompt):
        messages = [dict(cast(Mapping[str, str], m)) for m in prompt]
        for m in messages:
            if "role" not in m or "content" not in m:
                raise ConfigError(f"a chat message needs 'role' and 'content', got {sorted(m)}")
        return messages
    raise ConfigError(
        f"a prompt is a string, a list of chat messages or a Prompt, got {type(prompt).__name__}"
    )


def is_single_prompt(value: object) -> bool:
    """Whether ``value`` is one prompt (rather than a sequence of prompts)."""
    if isinstance(value, (str, Prompt, Mapping)):
        return True
    return isinstance(value, Sequence) and len(value) > 0 and isinstance(value[0], Mapping)


def log_softmax(scores: npt.ArrayLike, axis: int = -1) -> FloatArray:
    """Normalise log-scores into log-probabilities along ``axis`` (numerically stable)."""
    x = np.asarray(scores, dtype=np.float64)
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    out: FloatArray = x - top - np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True))
    return out


def calibrate(scores: npt.ArrayLike, content_free: npt.ArrayLike) -> FloatArray:
    """Contextual calibration (Zhao et al., 2021, "Calibrate Before Use").

    ``scores`` are label log-scores of shape ``(n_prompts, n_labels)`` (from ``score_labels``);
    ``content_free`` are the label log-scores of the same prompts with a content-free query such
    as ``"N/A"`` in place of the real one: shape ``(n_prompts, n_labels)`` (one per prompt, needed
    when each prompt has its own examples) or ``(n_labels,)`` (shared). Both are normalised over
    the labels; each label's probability is divided by its content-free probability and the
    result renormalised. Returns calibrated log-probabilities of shape ``(n_prompts, n_labels)``
    (the paper's ``W = diag(p_cf)^-1``, ``b = 0``).

    Raises:
        ConfigError: the shapes do not match.
    """
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    cf = np.atleast_2d(np.asarray(content_free, dtype=np.float64))
    if cf.shape[-1] != s.shape[-1] or cf.shape[0] not in (1, s.shape[0]) or cf.ndim != 2:
        raise ConfigError(
            f"content-free scores of shape {cf.shape} do not match label scores of shape "
            f"{s.shape}; expected ({s.shape[0]}, {s.shape[-1]}) or ({s.shape[-1]},)"
        )
    return log_softmax(log_softmax(s) - log_softmax(cf))


def first_stop(text: str, stop: Sequence[str] | None) -> int:
    """Where ``text`` is cut for ``stop``: the start of the stop sequence that completes first.

    Generation ends as soon as a stop sequence has been produced, so the stop that *ends*
    earliest wins (the start breaks ties), whether the text arrives whole or streamed in chunks.
    ``-1`` when no stop sequence occurs.
    """
    ends = [(i + len(s), i) for s in stop or () if s for i in (text.find(s),) if i >= 0]
    return min(ends)[1] if ends else -1


def cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """Return ``text`` up to (not including) the stop sequence that completes first."""
    cut = first_stop(text, stop)
    return text if cut < 0 else text[:cut]
