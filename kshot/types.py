"""The values kshot passes around: examples, scored examples, prompts, and the array aliases."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from kshot.errors import DataError

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
    "as_example",
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


@dataclass(frozen=True, slots=True)
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

    @classmethod
    def from_mapping(
        cls,
        row: Mapping[str, Any],
        *,
        input_key: str = "input",
        output_key: str = "output",
        label_key: str = "label",
        id_key: str = "id",
        metadata_key: str | None = "metadata",
        extra_metadata: Mapping[str, Any] | None = None,
        where: str = "example 0",
        hint: str = "every example needs an input text",
    ) -> Example:
        """Convert one corpus row; the index, the file readers and LangChain all read rows here.

        The one rule: ``input`` must be present and not blank; ``input``, ``output``, ``label``
        and ``id`` are strings, or numbers and booleans written as text (anything else is an
        error); a missing or null ``output`` is ``""``; a missing, null or empty ``label`` is no
        label (``None``), because CSV cells and LangChain rows cannot say "no label" otherwise; a
        missing or null ``id`` is ``""`` (the index assigns one) and surrounding whitespace is not
        part of an id. ``metadata_key`` names a nested object of metadata (``None``: the row has
        none), which ``extra_metadata`` updates. ``where`` names the row in errors (``"example 3"``,
        ``"train.csv: row 4"``) and ``hint`` says how to fix a missing input.
        """
        if not isinstance(row, Mapping):
            raise DataError(f"{where} must be a mapping, got {type(row).__name__}")
        if input_key not in row:
            fields = ", ".join(sorted(str(key) for key in row)) or "none"
            raise DataError(
                f"{where} has no {input_key!r} field (it has: {fields}); {hint}", field=input_key
            )
        raw_id = row.get(id_key)
        example_id = "" if raw_id is None else _text(where, id_key, raw_id).strip()
        raw_input = row[input_key]
        text = "" if raw_input is None else _text(where, input_key, raw_input)
        if not text.strip():
            named = f" (id {example_id!r})" if example_id else ""
            raise DataError(
                f"{where}{named} has an empty {input_key!r} field; every example needs an input "
                "text",
                field=input_key,
                value=raw_input,
            )
        raw_output = row.get(output_key)
        raw_label = row.get(label_key)
        label = None if raw_label is None else _text(where, label_key, raw_label)
        metadata: dict[str, Any] = {}
        nested = None if metadata_key is None else row.get(metadata_key)
        if nested is not None:
            if not isinstance(nested, Mapping):
                raise DataError(
                    f"{where} has a {metadata_key!r} field that is a {type(nested).__name__}; "
                    f"{metadata_key!r} must be an object",
                    field=metadata_key,
                    value=nested,
                )
            metadata.update(nested)
        metadata.update(extra_metadata or {})
        return cls(
            input=text,
            output="" if raw_output is None else _text(where, output_key, raw_output),
            label=label or None,
            metadata=metadata,
            id=example_id,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the example as the JSON row shape ``{id, input, output, label, metadata}``."""
        return {
            "id": self.id,
            "input": self.input,
            "output": self.output,
            "label": self.label,
            "metadata": dict(self.metadata),
        }


def as_example(row: Example | Mapping[str, Any], position: int = 0) -> Example:
    """An :class:`Example` as given, or a mapping converted by :meth:`Example.from_mapping`.

    An example given as such follows the same rule: its input must not be blank, and an empty
    label is no label.
    """
    where = f"example {position}"
    if isinstance(row, Mapping):
        return Example.from_mapping(row, where=where)
    if not isinstance(row, Example):
        raise DataError(f"{where} must be an Example or a mapping, got {row!r}")
    if not isinstance(row.input, str) or not row.input.strip():
        raise DataError(
            f"{where} (id {row.id!r}) has an empty 'input' field; every example needs an input "
            "text",
            field="input",
            value=row.input,
        )
    return replace(row, label=None) if row.label == "" else row


def _text(where: str, key: str, value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    raise DataError(
        f"{where} field {key!r} is a {type(value).__name__}; expected a string or a number",
        field=key,
        value=value,
    )


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
