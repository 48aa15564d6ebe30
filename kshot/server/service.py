"""What the selection and prompt routes share: the server's limit checks, then :mod:`kshot.api`.

Selection and assembly themselves are :func:`kshot.api.select_batch` and
:func:`kshot.api.assemble`; this module adds only what is the server's own: its limits, the
503 while the token counter loads, and the response shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from kshot.api import assemble, select_batch
from kshot.index.example_index import ExampleIndex
from kshot.prompt.template import PromptTemplate
from kshot.selector.base import SelectorSpec
from kshot.server.deps import LockedCounter, check_batch, check_k, check_query
from kshot.server.errors import ApiError
from kshot.server.schemas import TemplateIn
from kshot.server.settings import ServerSettings
from kshot.types import Prompt, Scored

__all__ = ["assemble_all", "assemble_prompts", "select_all"]


def select_all(
    index: ExampleIndex,
    settings: ServerSettings,
    queries: Sequence[str],
    *,
    k: int,
    selector: str,
    params: dict[str, Any],
    filter: dict[str, Any] | None,
    exclude: Sequence[str],
) -> list[list[Scored]]:
    """Check the limits, then select for every query in one vectorised call."""
    check_k(settings, k)
    check_batch(settings, len(queries))
    check_batch(settings, len(exclude), "excluded ids")
    for query in queries:
        check_query(settings, query)
    spec = SelectorSpec(selector, params)
    return select_batch(index, queries, k, selector=spec, filter=filter, exclude=exclude)


@lru_cache(maxsize=64)
def _template(fields: tuple[tuple[str, str], ...]) -> PromptTemplate:
    # Parsing five template strings per request cost as much as counting the prompt's tokens;
    # a PromptTemplate is frozen, so one per distinct set of fields serves every request.
    return PromptTemplate(**dict(fields))


def assemble_prompts(
    counter: LockedCounter | None,
    queries: Sequence[str],
    selections: Sequence[Sequence[Scored]],
    *,
    template: TemplateIn | None,
    order: str,
    max_tokens: int | None,
    format: str,
    seed: int,
) -> list[Prompt]:
    """Assemble one prompt per query (503 while the token counter loads)."""
    if counter is None:
        raise ApiError(503, "not_ready", "the token counter is not loaded yet; retry shortly")
    fields = {} if template is None else template.model_dump(exclude_none=True)
    template_ = _template(tuple(sorted(fields.items())))
    return [
        assemble(
            query,
            examples,
            template=template_,
            order=order,
            max_tokens=max_tokens,
            format=format,  # type: ignore[arg-type]
            tokenizer=counter,
            seed=seed,
        )
        for query, examples in zip(queries, selections, strict=True)
    ]


def assemble_all(
    counter: LockedCounter | None,
    queries: Sequence[str],
    selections: Sequence[Sequence[Scored]],
    *,
    template: TemplateIn | None,
    order: str,
    max_tokens: int | None,
    format: str,
    seed: int,
) -> list[dict[str, Any]]:
    """Assemble one prompt per query and return them as response dicts."""
    prompts = assemble_prompts(
        counter, queries, selections, template=template, order=order, max_tokens=max_tokens,
        format=format, seed=seed,
    )  # fmt: skip
    name = counter.name if counter is not None else ""
    return [{**prompt.to_dict(), "tokenizer": name} for prompt in prompts]


def scored_rows(found: Sequence[Scored]) -> list[dict[str, Any]]:
    """Selector output as response rows."""
    return [s.to_dict() for s in found]
