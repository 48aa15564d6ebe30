"""``POST /v1/prompt`` and ``POST /v1/prompt:batch``: select, then assemble the prompt."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from kshot.server.deps import IndexDep, ReadAccess, SettingsDep, StateDep
from kshot.server.responses import BODY, INDEX, READ, errors, json_response
from kshot.server.schemas import (
    PromptBatchRequest,
    PromptBatchResponse,
    PromptRequest,
    PromptResponse,
)
from kshot.server.service import assemble_all, select_all

__all__ = ["router"]

router = APIRouter(
    prefix="/v1",
    tags=["prompt"],
    dependencies=[ReadAccess],
    responses=errors(READ, BODY, INDEX),
)


@router.post("/prompt", response_model=PromptResponse)
def prompt(
    body: PromptRequest, index: IndexDep, settings: SettingsDep, state: StateDep
) -> Response:
    """Select examples for the query and assemble them into a prompt within the token budget."""
    found = select_all(
        index, settings, [body.query], k=body.k, selector=body.selector, params=body.params,
        filter=body.filter, exclude=body.exclude,
    )  # fmt: skip
    return json_response(assemble_all(
        state.counter, [body.query], found, template=body.template, order=body.order,
        max_tokens=body.max_tokens, format=body.format, seed=body.seed,
    )[0])  # fmt: skip


@router.post("/prompt:batch", response_model=PromptBatchResponse)
def prompt_batch(
    body: PromptBatchRequest, index: IndexDep, settings: SettingsDep, state: StateDep
) -> Response:
    """Select and assemble a prompt for each of many queries (one encoder call)."""
    found = select_all(
        index, settings, body.queries, k=body.k, selector=body.selector, params=body.params,
        filter=body.filter, exclude=body.exclude,
    )  # fmt: skip
    prompts = assemble_all(
        state.counter, body.queries, found, template=body.template, order=body.order,
        max_tokens=body.max_tokens, format=body.format, seed=body.seed,
    )  # fmt: skip
    return json_response({"prompts": prompts})
