"""KshotExampleSelector inside real LangChain prompt templates."""

from __future__ import annotations

import importlib
import sys

import pytest
from langchain_core.example_selectors import BaseExampleSelector
from langchain_core.prompts import FewShotPromptTemplate, PromptTemplate
from pydantic import ValidationError

from kshot.errors import (
    ConfigError,
    DataError,
    FilterError,
    MissingDependencyError,
    QueryError,
    UnknownSelectorError,
)
from kshot.index.encoder import HashingEncoder
from kshot.index.example_index import ExampleIndex
from kshot.integrations.langchain import KshotExampleSelector
from kshot.selector import available_selectors

pytestmark = pytest.mark.usefixtures("one_faiss_thread")

EXAMPLES = [
    {"input": "How do I reset my card PIN?", "output": "change pin", "label": "change_pin"},
    {"input": "I forgot the PIN of my debit card", "output": "change pin", "label": "change_pin"},
    {"input": "My card has not arrived yet", "output": "card arrival", "label": "card_arrival"},
    {
        "input": "When will my new card be delivered?",
        "output": "card arrival",
        "label": "card_arrival",
    },
    {
        "input": "Why was I charged a transfer fee?",
        "output": "transfer fee",
        "label": "transfer_fee",
    },
    {"input": "How much does a transfer cost?", "output": "transfer fee", "label": "transfer_fee"},
    {"input": "Can I top up with cash?", "output": "top up", "label": "top_up", "channel": "app"},
    {"input": "My top up failed", "output": "top up", "label": "top_up", "channel": "web"},
]


def make(**kwargs: object) -> KshotExampleSelector:
    return KshotExampleSelector.from_examples(EXAMPLES, HashingEncoder(64), **kwargs)  # type: ignore[arg-type]


def few_shot(selector: KshotExampleSelector) -> FewShotPromptTemplate:
    return FewShotPromptTemplate(
        example_selector=selector,
        example_prompt=PromptTemplate.from_template("Q: {input}\nA: {output}"),
        prefix="Classify the banking question.",
        suffix="Q: {input}\nA:",
        input_variables=["input"],
    )


def test_is_a_langchain_example_selector() -> None:
    selector = make(selector="bm25", k=2)
    assert isinstance(selector, BaseExampleSelector)
    rows = selector.select_examples({"input": "reset my card PIN"})
    assert len(rows) == 2
    assert {row["label"] for row in rows} == {"change_pin"}
    for row in rows:
        assert {"input", "output", "label"} <= row.keys()


def test_real_few_shot_prompt_template_formats_the_selected_examples() -> None:
    prompt = few_shot(make(selector="bm25", k=2))
    text = prompt.format(input="reset my card PIN please")
    assert text.startswith("Classify the banking question.")
    assert text.count("Q: ") == 3  # two examples and the query
    assert "Q: How do I reset my card PIN?\nA: change pin" in text
    assert "Q: I forgot the PIN of my debit card\nA: change pin" in text
    assert text.rstrip().endswith("Q: reset my card PIN please\nA:")
    assert "transfer" not in text


@pytest.mark.parametrize("name", sorted(available_selectors()))
def test_every_selector_works_through_langchain(name: str) -> None:
    prompt = few_shot(make(selector=name, k=3))
    text = prompt.format(input="my card has still not arrived")
    assert text.count("Q: ") == 4


def test_the_query_itself_is_not_a_shot() -> None:
    prompt = few_shot(make(k=3))
    text = prompt.format(input="My card has not arrived yet")
    assert text.count("My card has not arrived yet") == 1


def test_params_filter_and_metadata_rows() -> None:
    selector = make(
        selector="mmr", params={"lambda": 0.9, "fetch_k": 5}, k=4, filter={"label": "top_up"}
    )
    rows = selector.select_examples({"input": "top up"})
    assert [row["label"] for row in rows] == ["top_up", "top_up"]
    assert {row["channel"] for row in rows} == {"app", "web"}
    scored = selector.select_scored({"input": "top up"})
    assert [s.example.input for s in scored] == [row["input"] for row in rows]


def test_custom_keys_round_trip() -> None:
    examples = [
        {"question": f"question about topic {i}", "answer": f"a{i}", "intent": f"t{i % 2}"}
        for i in range(6)
    ]
    selector = KshotExampleSelector.from_examples(
        examples,
        HashingEncoder(32),
        k=2,
        input_key="question",
        output_key="answer",
        label_key="intent",
    )
    prompt = FewShotPromptTemplate(
        example_selector=selector,
        example_prompt=PromptTemplate.from_template("{question} -> {answer} ({intent})"),
        suffix="{question} ->",
        input_variables=["question"],
    )
    text = prompt.format(question="question about topic 3")
    assert "question about topic 3 -> a3" not in text  # the query's own example is left out
    assert text.count("->") == 3
    rows = selector.select_examples({"question": "topic 4"})
    assert all(set(row) == {"question", "answer", "intent"} for row in rows)


def test_add_example_is_selectable() -> None:
    selector = make(k=1)
    new_id = selector.add_example(
        {"input": "Which currencies can I exchange?", "output": "exchange", "label": "fx"}
    )
    assert new_id in {ex.id for ex in selector.index}
    rows = selector.select_examples({"input": "exchange currencies"})
    assert rows == [
        {"input": "Which currencies can I exchange?", "output": "exchange", "label": "fx"}
    ]
    with pytest.raises(DataError, match="'input'"):
        selector.add_example({"text": "no input key"})


def test_an_index_can_be_wrapped_directly() -> None:
    index = ExampleIndex.build(
        [{"input": "hello there", "label": None}, {"input": "general kenobi"}], HashingEncoder(16)
    )
    selector = KshotExampleSelector(index=index, k=5)
    rows = selector.select_examples({"input": "hi"})
    assert len(rows) == 2
    assert all(row["label"] == "" and row["output"] == "" for row in rows)


def test_bad_configuration_fails_at_construction() -> None:
    index = make().index
    with pytest.raises(UnknownSelectorError, match="similarity"):
        KshotExampleSelector(index=index, selector="nearest")
    with pytest.raises(ConfigError, match="'lambda'"):
        KshotExampleSelector(index=index, selector="mmr", params={"lambda": 2})
    with pytest.raises(ConfigError, match="k must be"):
        KshotExampleSelector(index=index, k=0)
    with pytest.raises(ConfigError, match="must differ"):
        KshotExampleSelector(index=index, output_key="input")
    with pytest.raises(ValidationError, match="extra"):
        KshotExampleSelector(index=index, vectorstore=None)  # type: ignore[call-arg]


def test_bad_requests_raise_kshot_errors() -> None:
    selector = make(filter={"colour": "red"})
    with pytest.raises(FilterError, match="colour"):
        selector.select_examples({"input": "card"})
    with pytest.raises(QueryError, match="'input'"):
        make().select_examples({"question": "card"})
    with pytest.raises(QueryError):
        make().select_examples({"input": "   "})


def test_missing_langchain_core_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "langchain_core.example_selectors", None)
    monkeypatch.delitem(sys.modules, "kshot.integrations.langchain")
    with pytest.raises(MissingDependencyError, match=r"kshot\[langchain\]") as err:
        importlib.import_module("kshot.integrations.langchain")
    assert "langchain-core" in str(err.value)
    assert isinstance(err.value, ImportError)


def test_package_import_needs_no_extra() -> None:
    import kshot.integrations as integrations

    assert integrations.KshotExampleSelector is KshotExampleSelector
    with pytest.raises(AttributeError):
        _ = integrations.Nothing  # type: ignore[attr-defined]
