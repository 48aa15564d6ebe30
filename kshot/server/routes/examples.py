"""``/v1/examples``: add, read, change and delete examples. Writes are durable on return."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from kshot.server.deps import (
    IndexDep,
    ReadAccess,
    SettingsDep,
    StateDep,
    WriteAccess,
    check_batch,
    check_query,
)
from kshot.server.responses import BODY, EXAMPLE, INDEX, READ, WRITE, errors
from kshot.server.schemas import (
    AddExamplesRequest,
    AddExamplesResponse,
    DeleteResponse,
    ExampleOut,
    PatchExampleRequest,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1/examples", tags=["examples"])


@router.post(
    "",
    response_model=AddExamplesResponse,
    status_code=201,
    dependencies=[WriteAccess],
    responses=errors(WRITE, BODY, INDEX),
)
def add_examples(
    body: AddExamplesRequest, index: IndexDep, settings: SettingsDep, state: StateDep
) -> dict[str, Any]:
    """Embed and add examples; the response returns once they are committed to the store."""
    check_batch(settings, len(body.examples), "examples")
    for example in body.examples:
        check_query(settings, example.input, "example input")
    ids = index.add([e.model_dump() for e in body.examples])
    state.count_write()
    return {"ids": ids}


@router.get(
    "/{example_id:path}",
    response_model=ExampleOut,
    dependencies=[ReadAccess],
    responses=errors(READ, INDEX, EXAMPLE),
)
def get_example(example_id: str, index: IndexDep) -> dict[str, Any]:
    """One example by id (404 when the index does not hold it)."""
    return index.get([example_id])[0].to_dict()


@router.patch(
    "/{example_id:path}",
    response_model=ExampleOut,
    dependencies=[WriteAccess],
    responses=errors(WRITE, BODY, INDEX, EXAMPLE),
)
def patch_example(
    example_id: str,
    body: PatchExampleRequest,
    index: IndexDep,
    settings: SettingsDep,
    state: StateDep,
) -> dict[str, Any]:
    """Change fields of one example; a new input is re-embedded. Durable on return."""
    if body.input is not None:
        check_query(settings, body.input, "example input")
    new = index.update(
        example_id, input=body.input, output=body.output, label=body.label, metadata=body.metadata
    )
    state.count_write()
    return new.to_dict()


@router.delete(
    "/{example_id:path}",
    response_model=DeleteResponse,
    dependencies=[WriteAccess],
    responses=errors(WRITE, INDEX, EXAMPLE),
)
def delete_example(example_id: str, index: IndexDep, state: StateDep) -> dict[str, Any]:
    """Delete one example (404 when the index does not hold it). Durable on return."""
    index.delete([example_id])
    state.count_write()
    return {"deleted": example_id}
