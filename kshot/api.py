"""The few calls most users need: build or load an index, select examples, assemble a prompt.

This module is the one place that wires selection (a registered selector over an index) and
assembly (the prompt assembler): the server, the CLI, the OpenAI proxy, the LangChain adapter and
the demo call these functions rather than building selectors and assemblers themselves. The
``a``-prefixed functions are the same calls for asyncio code: the blocking work (encoding,
search, token counting) runs in a worker thread, so the event loop keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kshot.index.encoder import Encoder, SentenceTransformerEncoder
from kshot.index.example_index import ExampleIndex
from kshot.prompt import HFTokenCounter, PromptAssembler, PromptTemplate, TokenCounter
from kshot.selector.base import SelectorSpec, build_selector
from kshot.selector.params import SelectorParams
from kshot.selector.view import HasView, IndexView
from kshot.types import Example, Filter, Prompt, PromptFormat, Scored

__all__ = [
    "aassemble",
    "aselect",
    "aselect_batch",
    "assemble",
    "build_index",
    "build_prompt",
    "load_index",
    "select",
    "select_batch",
]


def build_index(
    examples: Iterable[Example | Mapping[str, Any]],
    path: str | os.PathLike[str] | None = None,
    *,
    model: str | None = None,
    device: str = "auto",
    encoder: Encoder | None = None,
    factory: str | None = None,
    embeddings: Any = None,
    overwrite: bool = False,
    show_progress: bool | None = None,
) -> ExampleIndex:
    """Embed and index examples (dicts or :class:`Example`), saved to ``path`` when given.

    ``model`` is any sentence-transformers name or path (default: the bundled all-MiniLM-L6-v2);
    ``embeddings`` takes precomputed vectors instead of running the model over the corpus. An
    index already at ``path`` is an error unless ``overwrite``, which replaces it atomically once
    the new one is built. ``show_progress`` draws a progress bar while embedding (``None``: for
    more than a few hundred examples when stderr is a terminal and logging is at INFO).
    """
    chosen = encoder or SentenceTransformerEncoder(model, device=device)
    # With overwrite, build in memory and swap the directory in only when the build succeeded.
    index = ExampleIndex.build(
        examples,
        chosen,
        path=None if overwrite else path,
        factory=factory,
        embeddings=embeddings,
        show_progress=show_progress,
    )
    if overwrite and path is not None:
        index.save(path, overwrite=True)
    return index


def load_index(
    path: str | os.PathLike[str],
    *,
    model: str | None = None,
    device: str = "auto",
    read_only: bool = False,
) -> ExampleIndex:
    """Open an index directory as its writer, or ``read_only`` (see :meth:`ExampleIndex.load`)."""
    return ExampleIndex.load(path, model=model, device=device, read_only=read_only)


def select(
    index: IndexView | HasView,
    query: str,
    k: int = 4,
    *,
    selector: str | SelectorSpec = "similarity",
    params: SelectorParams | Mapping[str, Any] | None = None,
    filter: Filter | None = None,
    exclude: Iterable[str] = (),
) -> list[Scored]:
    """Pick up to ``k`` examples for ``query`` with a registered selector and its parameters.

    ``params`` is a mapping by parameter name (``{"lambda": 0.3}``, as over HTTP and with the
    CLI's ``--param``) or the selector's typed parameters (``MMRParams(lambda_=0.3)``); see
    ``kshot selectors`` for every selector's parameters.
    """
    return build_selector(index, selector, params).select(query, k, filter=filter, exclude=exclude)


def select_batch(
    index: IndexView | HasView,
    queries: Sequence[str],
    k: int = 4,
    *,
    selector: str | SelectorSpec = "similarity",
    params: SelectorParams | Mapping[str, Any] | None = None,
    filter: Filter | None = None,
    exclude: Iterable[str] = (),
) -> list[list[Scored]]:
    """Like :func:`select` for many queries at once (one encoder call); one list per query."""
    chosen = build_selector(index, selector, params)
    return chosen.select_batch(list(queries), k, filter=filter, exclude=list(exclude))


def assemble(
    query: str | Example,
    examples: Iterable[Scored],
    *,
    template: PromptTemplate | None = None,
    order: str = "similar_last",
    max_tokens: int | None = None,
    format: PromptFormat = "text",
    tokenizer: str | TokenCounter | None = None,
    seed: int = 0,
) -> Prompt:
    """Assemble a prompt from examples ranked best-first (see :class:`PromptAssembler`).

    ``tokenizer`` is a transformers tokenizer name or path, or a token counter; the default counts
    with the bundled language model's tokenizer.
    """
    counter = HFTokenCounter(tokenizer) if isinstance(tokenizer, str) else tokenizer
    return PromptAssembler(template, counter).assemble(
        query, list(examples), order=order, max_tokens=max_tokens, format=format, seed=seed
    )


def build_prompt(
    index: IndexView | HasView,
    query: str,
    k: int = 4,
    *,
    selector: str | SelectorSpec = "similarity",
    params: SelectorParams | Mapping[str, Any] | None = None,
    filter: Filter | None = None,
    exclude: Iterable[str] = (),
    template: PromptTemplate | None = None,
    order: str = "similar_last",
    max_tokens: int | None = None,
    format: PromptFormat = "text",
    tokenizer: str | TokenCounter | None = None,
    seed: int = 0,
) -> Prompt:
    """Select examples for ``query`` (see :func:`select`) and assemble them (:func:`assemble`)."""
    found = select(
        index, query, k, selector=selector, params=params, filter=filter, exclude=exclude
    )
    return assemble(
        query,
        found,
        template=template,
        order=order,
        max_tokens=max_tokens,
        format=format,
        tokenizer=tokenizer,
        seed=seed,
    )


async def aselect(
    index: IndexView | HasView,
    query: str,
    k: int = 4,
    *,
    selector: str | SelectorSpec = "similarity",
    params: SelectorParams | Mapping[str, Any] | None = None,
    filter: Filter | None = None,
    exclude: Iterable[str] = (),
) -> list[Scored]:
    """:func:`select` in a worker thread: awaiting it never blocks the event loop."""
    return await asyncio.to_thread(
        select, index, query, k, selector=selector, params=params, filter=filter, exclude=exclude
    )


async def aselect_batch(
    index: IndexView | HasView,
    queries: Sequence[str],
    k: int = 4,
    *,
    selector: str | SelectorSpec = "similarity",
    params: SelectorParams | Mapping[str, Any] | None = None,
    filter: Filter | None = None,
    exclude: Iterable[str] = (),
) -> list[list[Scored]]:
    """:func:`select_batch` in a worker thread: awaiting it never blocks the event loop."""
    return await asyncio.to_thread(
        select_batch,
        index,
        queries,
        k,
        selector=selector,
        params=params,
        filter=filter,
        exclude=exclude,
    )


async def aassemble(
    query: str | Example,
    examples: Iterable[Scored],
    *,
    template: PromptTemplate | None = None,
    order: str = "similar_last",
    max_tokens: int | None = None,
    format: PromptFormat = "text",
    tokenizer: str | TokenCounter | None = None,
    seed: int = 0,
) -> Prompt:
    """:func:`assemble` in a worker thread (loading a tokenizer and counting tokens block)."""
    return await asyncio.to_thread(
        assemble,
        query,
        list(examples),
        template=template,
        order=order,
        max_tokens=max_tokens,
        format=format,
        tokenizer=tokenizer,
        seed=seed,
    )
