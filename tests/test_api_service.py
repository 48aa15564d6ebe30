"""kshot.api as the one service layer: batch and prompt calls, the async API, and its callers."""

from __future__ import annotations

import ast
import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import kshot
from kshot import api
from kshot.index import ExampleIndex, HashingEncoder
from kshot.prompt import PromptTemplate
from kshot.prompt.budget import WhitespaceCounter

ROWS = [
    {"id": f"r{i}", "input": f"{word} question {i}", "output": word, "label": word}
    for i, word in enumerate(["card", "pin", "card", "transfer", "pin", "card"])
]


class GatedEncoder(HashingEncoder):
    """A hashing encoder whose query encodings wait until the test opens the gate.

    If the caller ran the select on the event loop's thread, the loop could never reach the line
    that opens the gate, and the encode gives up with an error instead of hanging the suite.
    """

    def __init__(self, patience: float = 30.0) -> None:
        super().__init__(dim=64)
        self.patience = patience
        self.armed = False
        self.started = threading.Event()
        self.gate = threading.Event()

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool | None = None
    ) -> Any:
        if self.armed:
            self.started.set()
            if not self.gate.wait(self.patience):
                raise RuntimeError("the event loop never opened the gate: it was blocked")
        return super().encode(texts, batch_size=batch_size, show_progress=show_progress)


@pytest.fixture
def index() -> ExampleIndex:
    return ExampleIndex.build(ROWS, HashingEncoder(dim=64))


def test_select_batch_matches_select_per_query(index: ExampleIndex) -> None:
    queries = ["card question", "pin question"]
    batch = api.select_batch(index, queries, 2, selector="mmr", params={"lambda": 0.5})
    single = [api.select(index, q, 2, selector="mmr", params={"lambda": 0.5}) for q in queries]
    assert [[s.example.id for s in r] for r in batch] == [[s.example.id for s in r] for r in single]


def test_build_prompt_is_select_then_assemble(index: ExampleIndex) -> None:
    template = PromptTemplate(instructions="Answer.")
    counter = WhitespaceCounter()
    found = api.select(index, "card question", 3, filter={"label": "card"})
    expected = api.assemble("card question", found, template=template, tokenizer=counter)
    prompt = api.build_prompt(
        index, "card question", 3, filter={"label": "card"}, template=template, tokenizer=counter
    )
    assert prompt == expected
    assert prompt.text is not None and prompt.text.startswith("Answer.")
    assert {s.example.label for s in prompt.examples} == {"card"}


def test_the_async_api_answers_as_the_sync_one(index: ExampleIndex) -> None:
    async def run() -> tuple[Any, Any, Any]:
        one = await api.aselect(index, "pin question", 2, exclude=["r1"])
        many = await api.aselect_batch(index, ["pin question"], 2, exclude=["r1"])
        prompt = await api.aassemble("pin question", one, tokenizer=WhitespaceCounter())
        return one, many, prompt

    one, many, prompt = asyncio.run(run())
    assert one == api.select(index, "pin question", 2, exclude=["r1"])
    assert many == [one]
    assert prompt == api.assemble("pin question", one, tokenizer=WhitespaceCounter())


@pytest.mark.parametrize("call", ["aselect", "aselect_batch"])
def test_the_event_loop_runs_while_a_select_encodes(call: str) -> None:
    encoder = GatedEncoder()
    index = ExampleIndex.build(ROWS, encoder)
    encoder.armed = True

    async def run() -> Any:
        if call == "aselect":
            task = asyncio.create_task(api.aselect(index, "card question", 2))
        else:
            task = asyncio.create_task(api.aselect_batch(index, ["card question"], 2))
        # The loop keeps turning while the worker thread sits in encode.
        while not encoder.started.is_set():
            await asyncio.sleep(0.01)
        assert not task.done()
        encoder.gate.set()
        return await task

    found = asyncio.run(run())
    assert found


def test_a_sync_select_on_the_loop_would_block_it() -> None:
    # The gate itself works: run on the loop's thread, the select holds the loop, the callback
    # that would open the gate never runs, and the encode gives up.
    encoder = GatedEncoder(patience=0.5)
    index = ExampleIndex.build(ROWS, encoder)
    encoder.armed = True

    async def run() -> None:
        asyncio.get_running_loop().call_soon(encoder.gate.set)
        api.select(index, "card question", 2)

    with pytest.raises(RuntimeError, match="blocked"):
        asyncio.run(run())


WIRING = {"build_selector", "PromptAssembler"}
CALLERS = ["server", "cli", "demo.py", "integrations", "distributed"]


def test_only_the_api_wires_selection_and_assembly() -> None:
    package = Path(kshot.__file__).parent
    files = [
        path
        for caller in CALLERS
        for path in (
            [package / caller] if caller.endswith(".py") else (package / caller).rglob("*.py")
        )
    ]
    found = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                found += [f"{path.name}: {a.name}" for a in node.names if a.name in WIRING]
    assert not found, f"call kshot.api instead of wiring selectors or assemblers: {found}"


def test_langchain_aselect_examples_matches_select_examples() -> None:
    from kshot.integrations.langchain import KshotExampleSelector

    selector = KshotExampleSelector.from_examples(ROWS, HashingEncoder(dim=64), "mmr", k=2)
    variables = {"input": "transfer question"}
    assert asyncio.run(selector.aselect_examples(variables)) == selector.select_examples(variables)
    assert len(selector.select_examples(variables)) == 2
