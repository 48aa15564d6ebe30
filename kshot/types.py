"""The values kshot passes around: examples, scored examples, prompts, and the array aliases."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "BoolArray",
    "ChatMessage",
    "Example",
    "Filter",
    "FloatArray",
    "IntArray",
    "Mask",
    "Prompt",
    "PromptFormat",
    "Scored",
]

FloatArray = npt.NDArray[np.floating[Any]]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
#: Which of an index's slots a request may return (one entry per slot, tombstones included).
Mask = npt.NDArray[np.bool_]

#: A filter maps ``"label"`` or a metadata key to one value (equality) or to a list, tuple or set
#: of values (membership). All entries must hold (logical AND).
Filter = Mapping[str, Any]

PromptFormat = Literal["text", "chat"]

#: One chat message as chat-completions APIs take it: ``{"role": ..., "content": ...}``.
ChatMessage = Mapping[str, str]


@dataclass(frozen=True)
class Example:
    """One solved example of the corpus.

    ``id`` is the caller's stable identifier (a string); the index assigns one when it is empty.
    ``metadata`` holds JSON values only, so that it round-trips through the store and HTTP.
    """

    input: str
    output: str = ""
    label: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)
    id: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the example as the JSON row shape ``{id, input, output, label, metadata}``."""
        return {
            "id": self.id,
            "input": self.input,
            "output": self.output,
            "label": self.label,
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True)
class Scored:
    """An example chosen by a selector, with the selector's score (higher is better)."""

    example: Example
    score: float

    def to_dict(self) -> dict[str, Any]:
        """Return the example row with its ``score``."""
        return {**self.example.to_dict(), "score": self.score}


@dataclass(frozen=True)
class Prompt:
    """An assembled prompt and what went into it.

    Exactly one of ``text`` (``format == "text"``) and ``messages`` (``format == "chat"``) is set.
    ``examples`` are in prompt order; ``dropped_ids`` lists examples left out to fit the budget,
    lowest-ranked first.
    """

    format: PromptFormat
    text: str | None
    messages: tuple[ChatMessage, ...] | None
    examples: tuple[Scored, ...]
    dropped_ids: tuple[str, ...]
    token_count: int
    max_tokens: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready view of the prompt."""
        return {
            "format": self.format,
            "text": self.text,
            "messages": [dict(m) for m in self.messages] if self.messages is not None else None,
            "examples": [s.to_dict() for s in self.examples],
            "dropped_ids": list(self.dropped_ids),
            "token_count": self.token_count,
            "max_tokens": self.max_tokens,
        }
