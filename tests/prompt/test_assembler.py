from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kshot.errors import BudgetError, ConfigError, TemplateError
from kshot.prompt import HFTokenCounter, Order, PromptAssembler, PromptTemplate, WhitespaceCounter
from kshot.types import Example, Scored

INSTRUCTIONS = "Classify the banking question."


@pytest.fixture
def ranked() -> list[Scored]:
    return [
        Scored(Example("I lost my card", "lost_card", id="a"), 0.9),
        Scored(Example("Card not here yet", "card_arrival", id="b"), 0.5),
        Scored(Example("Fee on transfer?", "transfer_fee", id="c"), 0.1),
    ]


@pytest.fixture
def assembler() -> PromptAssembler:
    return PromptAssembler(PromptTemplate(instructions=INSTRUCTIONS), WhitespaceCounter())


def test_golden_text_similar_last(assembler: PromptAssembler, ranked: list[Scored]) -> None:
    p = assembler.assemble("where is my card", ranked)
    assert p.format == "text" and p.messages is None
    assert p.text == (
        "Classify the banking question.\n\n"
        "Input: Fee on transfer?\nOutput: transfer_fee\n\n"
        "Input: Card not here yet\nOutput: card_arrival\n\n"
        "Input: I lost my card\nOutput: lost_card\n\n"
        "Input: where is my card\nOutput:"
    )
    assert [s.example.id for s in p.examples] == ["c", "b", "a"]
    assert p.dropped_ids == ()
    assert p.token_count == 30
    assert p.max_tokens is None


def test_golden_text_similar_first_without_instructions(ranked: list[Scored]) -> None:
    a = PromptAssembler(
        PromptTemplate(example="Q: {input}\nA: {output}", query="Q: {input}\nA:", separator="\n"),
        WhitespaceCounter(),
    )
    p = a.assemble("hello", ranked[:2], order="similar_first")
    assert (
        p.text
        == "Q: I lost my card\nA: lost_card\nQ: Card not here yet\nA: card_arrival\nQ: hello\nA:"
    )


def test_golden_chat(assembler: PromptAssembler, ranked: list[Scored]) -> None:
    p = assembler.assemble("where is my card", ranked, format="chat")
    assert p.format == "chat" and p.text is None
    assert p.messages == (
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": "Fee on transfer?"},
        {"role": "assistant", "content": "transfer_fee"},
        {"role": "user", "content": "Card not here yet"},
        {"role": "assistant", "content": "card_arrival"},
        {"role": "user", "content": "I lost my card"},
        {"role": "assistant", "content": "lost_card"},
        {"role": "user", "content": "where is my card"},
    )
    assert p.token_count == 4 + 3 + 1 + 4 + 1 + 4 + 1 + 4


def test_chat_without_instructions_has_no_system_message(ranked: list[Scored]) -> None:
    a = PromptAssembler(
        PromptTemplate(
            example_user="Q: {input}", example_assistant="A: {label}", query_user="Q: {input}"
        ),
        WhitespaceCounter(),
    )
    ranked = [Scored(Example("x", "out", label="L", id="1"), 1.0)]
    p = a.assemble("y", ranked, format="chat")
    assert p.messages == (
        {"role": "user", "content": "Q: x"},
        {"role": "assistant", "content": "A: L"},
        {"role": "user", "content": "Q: y"},
    )


def test_random_order_is_seeded(assembler: PromptAssembler) -> None:
    ranked = [Scored(Example(f"q{i}", f"o{i}", id=str(i)), 1.0 - i / 10) for i in range(8)]
    p1 = assembler.assemble("q", ranked, order=Order.RANDOM, seed=3)
    p2 = assembler.assemble("q", ranked, order="random", seed=3)
    p3 = assembler.assemble("q", ranked, order="random", seed=4)
    assert p1 == p2
    assert p1.text != p3.text
    assert sorted(s.example.id for s in p1.examples) == [str(i) for i in range(8)]


def test_budget_drops_lowest_ranked_first(assembler: PromptAssembler, ranked: list[Scored]) -> None:
    p = assembler.assemble("where is my card", ranked, max_tokens=24)
    assert p.dropped_ids == ("c",)
    assert [s.example.id for s in p.examples] == ["b", "a"]
    assert p.token_count == 24 and p.max_tokens == 24
    p = assembler.assemble("where is my card", ranked, max_tokens=23)
    assert p.dropped_ids == ("c", "b")
    assert [s.example.id for s in p.examples] == ["a"]
    assert p.token_count == 17
    p = assembler.assemble("where is my card", ranked, max_tokens=10)
    assert p.examples == () and p.dropped_ids == ("c", "b", "a")
    assert p.text == f"{INSTRUCTIONS}\n\nInput: where is my card\nOutput:"


def test_budget_error_states_count_and_budget(
    assembler: PromptAssembler, ranked: list[Scored]
) -> None:
    with pytest.raises(BudgetError) as info:
        assembler.assemble("where is my card", ranked, max_tokens=9)
    assert "10 tokens" in str(info.value) and "budget of 9" in str(info.value)
    with pytest.raises(BudgetError):
        assembler.assemble("where is my card", [], max_tokens=7, format="chat")


@pytest.mark.parametrize("bad", [0, -5, True])
def test_bad_budget_is_a_config_error(assembler: PromptAssembler, bad: int) -> None:
    with pytest.raises(ConfigError, match="max_tokens"):
        assembler.assemble("q", [], max_tokens=bad)


def test_bad_format_and_order(assembler: PromptAssembler) -> None:
    with pytest.raises(ConfigError, match="text, chat"):
        assembler.assemble("q", [], format="html")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown order"):
        assembler.assemble("q", [], order="worst_first")


def test_unknown_field_raises_template_error(ranked: list[Scored]) -> None:
    a = PromptAssembler(PromptTemplate(example="{input} {topic}"), WhitespaceCounter())
    with pytest.raises(TemplateError, match="topic"):
        a.assemble("q", ranked)


def test_plain_examples_are_accepted(assembler: PromptAssembler) -> None:
    p = assembler.assemble("q", [Example("x", "y", id="e")])  # type: ignore[list-item]
    assert p.examples == (Scored(Example("x", "y", id="e"), 0.0),)


def test_with_query_keeps_examples_and_order(
    assembler: PromptAssembler, ranked: list[Scored]
) -> None:
    p = assembler.assemble("where is my card", ranked, order="random", seed=1, max_tokens=24)
    cf = assembler.with_query(p, "N/A")
    assert cf.examples == p.examples and cf.dropped_ids == p.dropped_ids
    assert cf.text is not None and p.text is not None
    assert cf.text == p.text.replace("where is my card", "N/A")
    chat = assembler.with_query(assembler.assemble("q", ranked, format="chat"), "N/A")
    assert chat.messages is not None and chat.messages[-1] == {"role": "user", "content": "N/A"}


class CallCounter(WhitespaceCounter):
    def __init__(self) -> None:
        self.full_counts = 0

    def count(self, text: str) -> int:
        if "QUERY" in text:
            self.full_counts += 1
        return super().count(text)


def test_fitting_needs_few_full_counts() -> None:
    counter = CallCounter()
    a = PromptAssembler(counter=counter)
    ranked = [Scored(Example(f"w{i} " * (1 + i % 5), "o", id=str(i)), 1.0) for i in range(64)]
    p = a.assemble("QUERY", ranked, max_tokens=150)
    assert 0 < len(p.examples) < 64
    assert counter.full_counts <= 5
    # and the result is the largest prefix that fits
    bigger = a.assemble("QUERY", ranked[: len(p.examples) + 1])
    assert bigger.token_count > 150 >= p.token_count


words = st.text(alphabet="abcdefgh {}\n", min_size=0, max_size=30)
examples_st = st.lists(
    st.builds(lambda i, o, n: (i, o, n), words, words, st.integers(0, 3)), max_size=12
)


def _check_budget(
    a: PromptAssembler,
    rows: list[tuple[str, str, int]],
    query: str,
    budget: int,
    fmt: str,
    order: str,
) -> None:
    ranked = [Scored(Example(i, o, id=f"e{k}"), 1.0 - k / 100) for k, (i, o, _) in enumerate(rows)]
    try:
        p = a.assemble(query, ranked, max_tokens=budget, format=fmt, order=order, seed=7)  # type: ignore[arg-type]
    except BudgetError:
        empty = a.assemble(query, [], format=fmt)  # type: ignore[arg-type]
        assert empty.token_count > budget
        return
    assert p.token_count <= budget
    if fmt == "text":
        assert p.text is not None and p.token_count == a.counter.count(p.text)
    m = len(p.examples)
    kept = sorted(s.example.id for s in p.examples)
    assert kept == sorted(s.example.id for s in ranked[:m])
    assert p.dropped_ids == tuple(s.example.id for s in reversed(ranked[m:]))
    if m < len(ranked):  # the next-ranked example would not have fit
        more = a.assemble(query, ranked[: m + 1], format=fmt, order=order, seed=7)  # type: ignore[arg-type]
        assert more.token_count > budget


@settings(max_examples=300, deadline=None)
@given(
    examples_st,
    words,
    st.integers(1, 80),
    st.sampled_from(["text", "chat"]),
    st.sampled_from([o.value for o in Order]),
    st.text(alphabet="xyz {}\n", max_size=12),
)
def test_property_never_exceeds_budget(
    rows: list[tuple[str, str, int]], query: str, budget: int, fmt: str, order: str, instr: str
) -> None:
    a = PromptAssembler(PromptTemplate(instructions=instr), WhitespaceCounter())
    _check_budget(a, rows, query, budget, fmt, order)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    examples_st,
    words,
    st.integers(1, 200),
    st.sampled_from(["text", "chat"]),
    st.sampled_from([o.value for o in Order]),
)
def test_property_never_exceeds_budget_smollm2(
    smollm2_counter: HFTokenCounter,
    rows: list[tuple[str, str, int]],
    query: str,
    budget: int,
    fmt: str,
    order: str,
) -> None:
    a = PromptAssembler(PromptTemplate(instructions="Answer."), smollm2_counter)
    _check_budget(a, rows, query, budget, fmt, order)
