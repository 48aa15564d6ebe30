"""Request and response bodies of the HTTP API (pydantic, ``extra="forbid"``).

Text fields refuse NUL characters and unpaired surrogates (which cannot be stored or sent back as
UTF-8); JSON values (metadata, filters, selector parameters) refuse NaN and infinity and nesting
deeper than :data:`MAX_DEPTH`. The server's configurable limits (k, query length, batch size) are
checked by the routes, so that their error names the limit.

Request bodies are strict: ``"k": true`` or ``"k": "4"`` is refused, not taken as 1 or 4.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, WithJsonSchema

from kshot.errors import FilterError
from kshot.index.filters import filter_values

__all__ = [
    "AddExamplesRequest",
    "AddExamplesResponse",
    "DeleteResponse",
    "ErrorBody",
    "ErrorResponse",
    "ExampleIn",
    "ExampleOut",
    "HealthResponse",
    "IndexInfo",
    "PatchExampleRequest",
    "PromptBatchRequest",
    "PromptBatchResponse",
    "PromptRequest",
    "PromptResponse",
    "ScoredExample",
    "SelectBatchRequest",
    "SelectBatchResponse",
    "SelectRequest",
    "SelectResponse",
    "SelectorInfo",
    "SelectorsResponse",
    "TemplateIn",
]

#: The deepest nesting accepted in metadata, filters and parameters.
MAX_DEPTH = 16


def _check_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters (\\u0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text contains an unpaired surrogate and is not valid Unicode") from None
    return value


def _check_json(value: Any, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise ValueError(f"JSON values may nest at most {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite (no NaN or Infinity)")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)
    return value


Text = Annotated[str, AfterValidator(_check_text)]
NonEmptyText = Annotated[str, Field(min_length=1), AfterValidator(_check_text)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_check_json)]


def _check_filter(value: dict[str, Any]) -> dict[str, Any]:
    # The index's own rule, so that HTTP, Python and the CLI refuse the same filters.
    try:
        filter_values(value)
    except FilterError as exc:
        raise ValueError(str(exc)) from None
    _check_json(value)
    return value


_SCALAR_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]
}

#: A filter: field -> a string, finite number or boolean (``label``: a string), or a list of them.
FilterObject = Annotated[
    dict[str, Any],
    AfterValidator(_check_filter),
    WithJsonSchema(
        {
            "type": "object",
            "additionalProperties": {
                "anyOf": [*_SCALAR_SCHEMA["anyOf"], {"type": "array", "items": _SCALAR_SCHEMA}]
            },
        }
    ),
]

_FORBID = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class _Model(BaseModel):
    model_config = _FORBID


class _Request(_Model):
    # Strict: JSON true is not an int, "4" is not a number.
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, strict=True)


# -- errors --------------------------------------------------------------------------------------


class ErrorBody(_Model):
    """What went wrong; some errors add fields (``limit``, ``value``, ``details``)."""

    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)

    type: str
    """A machine-readable kind, e.g. ``validation_error``, ``unauthorized``, ``not_found``."""
    message: str
    """What to fix, in words."""


class ErrorResponse(_Model):
    """The body of every error response."""

    error: ErrorBody
    """The error."""


# -- examples ------------------------------------------------------------------------------------


class ExampleIn(_Request):
    """An example to add."""

    input: NonEmptyText
    """The example's input text (what a query is compared with)."""
    output: Text = ""
    """The solved output shown to the model."""
    label: Text | None = None
    """An optional class label (filterable; used by the balanced selector)."""
    metadata: JsonObject = Field(default_factory=dict)
    """Free JSON fields; top-level keys are filterable and usable in templates."""
    id: NonEmptyText | None = None
    """A stable id (not empty); the index assigns one when absent. Must not exist yet."""


class ExampleOut(_Model):
    """A stored example."""

    id: str
    """The example's id."""
    input: str
    """The input text."""
    output: str
    """The output text."""
    label: str | None
    """The label, if any."""
    metadata: dict[str, Any]
    """The metadata object."""


class ScoredExample(ExampleOut):
    """An example chosen by a selector, with its score."""

    score: float
    """The selector's score (higher is better; its scale depends on the selector)."""


class AddExamplesRequest(_Request):
    """Examples to add in one durable write."""

    examples: list[ExampleIn] = Field(min_length=1)
    """The examples (at most the server's ``max_batch``)."""


class AddExamplesResponse(_Model):
    """The ids of the added examples, in request order."""

    ids: list[str]
    """One id per added example."""


class PatchExampleRequest(_Request):
    """Fields to change; absent or null fields stay as they are. A new input is re-embedded."""

    input: NonEmptyText | None = None
    """A new input text."""
    output: Text | None = None
    """A new output text."""
    label: Text | None = None
    """A new label."""
    metadata: JsonObject | None = None
    """A new metadata object (replaces the old one as a whole)."""


class DeleteResponse(_Model):
    """The outcome of a delete."""

    deleted: str
    """The id that was deleted."""


# -- selection -----------------------------------------------------------------------------------


class _SelectionFields(_Request):
    k: StrictInt = Field(4, ge=1)
    """How many examples to return (at most the server's ``max_k``)."""
    selector: Text = "similarity"
    """A registered selector name (see ``GET /v1/selectors``)."""
    params: JsonObject = Field(default_factory=dict)
    """The selector's parameters (see ``GET /v1/selectors`` for names, types and ranges)."""
    filter: FilterObject | None = None
    """``label`` or metadata field -> a value (equality) or a list of values (membership)."""
    exclude: list[Text] = Field(default_factory=list)
    """Ids never to return (at most the server's ``max_batch``)."""


class SelectRequest(_SelectionFields):
    """Select examples for one query."""

    query: NonEmptyText
    """The query text."""


class SelectBatchRequest(_SelectionFields):
    """Select examples for many queries in one call (one encoder pass)."""

    queries: list[NonEmptyText] = Field(min_length=1)
    """The query texts (at most the server's ``max_batch``)."""


class SelectResponse(_Model):
    """The chosen examples, best first."""

    examples: list[ScoredExample]
    """At most k examples, best first."""


class SelectBatchResponse(_Model):
    """One selection per query, in request order."""

    results: list[SelectResponse]
    """One result per query."""


# -- prompts -------------------------------------------------------------------------------------


class TemplateIn(_Request):
    """Prompt template fields; any field left out keeps its default."""

    instructions: Text | None = None
    """Literal text before the examples (the system message in chat format)."""
    example: Text | None = None
    """Text format: the template of one example, e.g. ``Input: {input}\\nOutput: {output}``."""
    separator: Text | None = None
    """Text format: literal text between parts."""
    query: Text | None = None
    """Text format: the template of the query, e.g. ``Input: {input}\\nOutput:``."""
    example_user: Text | None = None
    """Chat format: an example's user message."""
    example_assistant: Text | None = None
    """Chat format: an example's assistant message."""
    query_user: Text | None = None
    """Chat format: the final user message."""


class _PromptFields(_Request):
    template: TemplateIn | None = None
    """The prompt template; default: ``Input: ...\\nOutput: ...`` blocks."""
    order: Literal["similar_last", "similar_first", "random"] = "similar_last"
    """Where the best example goes: next to the query (default), first, or shuffled."""
    max_tokens: int | None = Field(None, ge=1)
    """Token budget of the whole prompt; the lowest-ranked examples are dropped to fit."""
    format: Literal["text", "chat"] = "text"
    """One text prompt, or chat messages."""
    seed: int = 0
    """Seed of the ``random`` order."""


class PromptRequest(SelectRequest, _PromptFields):
    """Select examples for a query and assemble the prompt."""


class PromptBatchRequest(SelectBatchRequest, _PromptFields):
    """Select and assemble for many queries in one call."""


class PromptResponse(_Model):
    """An assembled prompt."""

    format: Literal["text", "chat"]
    """``text`` or ``chat``."""
    text: str | None
    """The prompt (text format)."""
    messages: list[dict[str, str]] | None
    """The messages (chat format)."""
    examples: list[ScoredExample]
    """The examples used, in prompt order."""
    dropped_ids: list[str]
    """Selected examples left out to fit ``max_tokens``, lowest-ranked first."""
    token_count: int
    """Tokens of the final prompt, counted with the server's tokenizer."""
    max_tokens: int | None
    """The budget applied, if any."""
    tokenizer: str
    """The tokenizer that counted."""


class PromptBatchResponse(_Model):
    """One prompt per query, in request order."""

    prompts: list[PromptResponse]
    """One prompt per query."""


# -- service -------------------------------------------------------------------------------------


class HealthResponse(_Model):
    """Liveness or readiness."""

    status: str
    """``ok``, ``ready`` or ``loading``."""


class IndexInfo(_Model):
    """What the served index holds."""

    count: int
    """Live examples."""
    labels: dict[str, int]
    """Examples per label."""
    fields: list[str]
    """Fields filters can use."""
    encoder: str
    """The embedding model."""
    dimension: int
    """The embedding dimension."""
    factory: str
    """The FAISS factory string."""
    nprobe: int | None
    """IVF probes, for IVF indexes."""
    kshot_version: str
    """The server's kshot version."""


class SelectorInfo(_Model):
    """One registered selector."""

    name: str
    """Its registered name."""
    description: str
    """What it does."""
    params: dict[str, dict[str, Any]]
    """Parameter name -> JSON-schema-like description (type, default, range)."""


class SelectorsResponse(_Model):
    """Every registered selector."""

    selectors: list[SelectorInfo]
    """Sorted by name."""
