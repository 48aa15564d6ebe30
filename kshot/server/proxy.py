"""The OpenAI-compatible surface: ``/v1/chat/completions`` with examples, ``/v1/models``, ...

How the parts compose (one of ``--upstream`` and ``--local-model``, see ``ServerSettings``):

- ``--upstream URL``: ``POST /v1/chat/completions`` selects examples from the served index for
  the last user message, inserts them as user/assistant turns after the leading system
  message(s), and forwards the request to ``URL``; ``GET /v1/models`` is the upstream's list.
- ``--local-model [NAME]`` with an index: the same proxy, whose upstream is the local model in
  this process (no HTTP hop); ``POST /v1/completions`` is the local model as it is.
- ``--local-model`` without an index: a plain OpenAI-compatible model server (no examples).
- neither: these routes answer 404 saying how to start a server that has them.

The answer is the upstream's, unchanged (streamed through when ``"stream": true``), with the
inserted examples' ids, best first and percent-encoded, in the ``x-kshot-example-ids`` header.
Per-request options are the body field ``"kshot"`` (:class:`KshotOptions`), removed before the
request is forwarded; ``"kshot": {"k": 0}`` forwards the request untouched.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response

from kshot.model.transformers_lm import TransformersLM
from kshot.server.collections import Collection
from kshot.server.deps import ReadAccess, ServerState, state_of
from kshot.server.errors import ApiError
from kshot.server.local_model import LocalModel
from kshot.server.openai_schemas import (
    CompletionRequest,
    KshotOptions,
    ProxiedChat,
    message_text,
    parse,
)
from kshot.server.responses import BODY, INDEX, PROXY, READ, errors, request_body
from kshot.server.service import assemble_prompts, select_all
from kshot.server.settings import BUNDLED_LOCAL_MODEL, CollectionConfig, ServerSettings
from kshot.server.upstream import HttpUpstream, LocalUpstream, Upstream
from kshot.types import Prompt, Scored

__all__ = ["EXAMPLE_IDS_HEADER", "ProxyState", "insert_examples", "router"]

#: The response header that lists the inserted examples' ids (comma-separated, best first).
EXAMPLE_IDS_HEADER = "x-kshot-example-ids"

#: Roles that stay ahead of the inserted examples.
_LEADING_ROLES = frozenset({"system", "developer"})


@dataclass
class ProxyState:
    """The upstream (and the local model, when one is served) of one application."""

    upstream: Upstream | None = None
    local: LocalModel | None = None

    def load(self, settings: ServerSettings, lm: TransformersLM | None = None) -> None:
        """Load the local model (unless ``lm`` is given) and open the upstream's client."""
        if lm is not None or settings.local_model is not None:
            if lm is None:
                name = None if settings.local_model == BUNDLED_LOCAL_MODEL else settings.local_model
                lm = TransformersLM(name, device=settings.device)
            self.local = LocalModel(lm)
            self.upstream = LocalUpstream(self.local)
        elif settings.upstream is not None:
            key = settings.upstream_api_key
            self.upstream = HttpUpstream(
                settings.upstream,
                key.get_secret_value() if key is not None else None,
                timeout=settings.upstream_timeout,
                retries=settings.upstream_retries,
            )

    async def aclose(self) -> None:
        """Close the upstream's connections."""
        if self.upstream is not None:
            await self.upstream.aclose()


def _proxy(request: Request) -> ProxyState:
    proxy: ProxyState = request.app.state.proxy
    return proxy


def _upstream(request: Request) -> Upstream:
    upstream = _proxy(request).upstream
    if upstream is None:
        raise ApiError(
            404,
            "no_upstream",
            f"{request.url.path} needs a model behind it: start the server with "
            "--upstream URL (KSHOT_UPSTREAM) or --local-model (KSHOT_LOCAL_MODEL)",
        )
    return upstream


async def _read_json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise ApiError(400, "invalid_json", "the request body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise ApiError(422, "validation_error", "the request body must be a JSON object")
    return body


def insert_examples(
    messages: list[dict[str, Any]], examples: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``messages`` with ``examples`` after the leading system/developer messages."""
    start = 0
    while start < len(messages) and messages[start].get("role") in _LEADING_ROLES:
        start += 1
    return [*messages[:start], *examples, *messages[start:]]


def _collection_for(state: ServerState, options: KshotOptions) -> Collection:
    """The collection ``options`` names; 404 naming the known ones (or saying there are none)."""
    if not state.collections.by_name:
        raise ApiError(
            404,
            "no_index",
            "this server serves a model but no index to select examples from; start it with "
            'an index, or send "kshot": {"k": 0}',
        )
    return state.collections.get(options.collection)


def _examples_for(
    state: ServerState, collection: Collection, query: str, options: KshotOptions
) -> tuple[list[dict[str, Any]], list[str]]:
    """The example turns for ``query`` within the budget, and their ids best first.

    Selection and assembly are the ``/v1/prompt`` route's own (chat format, default template);
    the budget is the assembled prompt's count minus that of the query alone, so that it
    counts exactly the tokens the examples add. Options the request leaves unset take the
    collection's defaults, then the server's.
    """
    settings = state.settings
    defaults = collection.config or CollectionConfig(path=Path())
    k = options.k if options.k is not None else defaults.k
    budget = options.max_example_tokens or defaults.max_example_tokens
    selector = options.selector or defaults.selector or settings.proxy_selector
    # The collection's params belong to its selector: a request naming another gets none.
    own = options.selector is not None or "params" in options.model_fields_set
    found = select_all(
        collection.index, settings, [query], k=settings.proxy_k if k is None else k,
        selector=selector, params=options.params if own else defaults.params,
        filter=options.filter, exclude=(),
    )  # fmt: skip

    def assemble(max_tokens: int | None, examples: Sequence[Scored]) -> Prompt:
        return assemble_prompts(
            state.counter, [query], [examples], template=None, order="similar_last",
            max_tokens=max_tokens, format="chat", seed=0,
        )[0]  # fmt: skip

    bare = assemble(None, ()).token_count
    prompt = assemble(bare + (budget or settings.max_example_tokens), found[0])
    kept = {s.example.id for s in prompt.examples}
    ids = [s.example.id for s in found[0] if s.example.id in kept]
    assert prompt.messages is not None  # the chat format
    return [dict(m) for m in prompt.messages[:-1]], ids


router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[ReadAccess])


@router.post(
    "/chat/completions",
    responses=errors(READ, BODY, PROXY, INDEX, passthrough=True),
    openapi_extra=request_body(ProxiedChat),
)
async def chat_completions(request: Request) -> Response:
    """An OpenAI chat completion with examples for the last user message (see module doc)."""
    upstream = _upstream(request)
    body = await _read_json(request)
    chat = parse(ProxiedChat, body)
    options = chat.kshot or KshotOptions()
    body.pop("kshot", None)
    state = state_of(request)
    ids: list[str] = []
    passthrough = options.k == 0 or (not state.collections.by_name and chat.kshot is None)
    if not passthrough:
        collection = _collection_for(state, options)
        users = [m for m in chat.messages if m.role == "user"]
        if not users:
            raise ApiError(
                422,
                "validation_error",
                "messages: the proxy selects examples for the last user message and there is "
                'none; add one, or send "kshot": {"k": 0} to forward the request as it is',
            )
        query = message_text(users[-1].content)
        examples, ids = await anyio.to_thread.run_sync(
            _examples_for, state, collection, query, options
        )
        body["messages"] = insert_examples(body["messages"], examples)
    response = await upstream.send("POST", "/chat/completions", body)
    response.headers[EXAMPLE_IDS_HEADER] = ",".join(quote(i, safe="") for i in ids)
    return response


@router.get("/models", responses=errors(READ, PROXY, passthrough=True))
async def models(request: Request) -> Response:
    """The models the upstream serves (its answer, passed through)."""
    return await _upstream(request).send("GET", "/models", None)


@router.post(
    "/completions",
    responses=errors(READ, BODY, PROXY, passthrough=True),
    openapi_extra=request_body(CompletionRequest),
)
async def completions(request: Request) -> Response:
    """A text completion, forwarded as it is (no examples: a text prompt has no turns)."""
    return await _upstream(request).send("POST", "/completions", await _read_json(request))
