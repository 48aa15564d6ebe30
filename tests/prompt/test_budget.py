from __future__ import annotations

import pytest

from kshot.errors import ConfigError
from kshot.prompt import (
    ChatTokenCounter,
    HFTokenCounter,
    PromptAssembler,
    TokenCounter,
    WhitespaceCounter,
)
from kshot.types import Example, Scored


def test_whitespace_counter() -> None:
    c = WhitespaceCounter()
    assert isinstance(c, ChatTokenCounter)
    assert c.count(" a  b\nc ") == 3
    assert (
        c.count_messages([{"role": "user", "content": "a b"}, {"role": "x", "content": "c"}]) == 3
    )


def test_smollm2_counter_counts_real_tokens(smollm2_counter: HFTokenCounter) -> None:
    c = smollm2_counter
    assert isinstance(c, TokenCounter)
    assert c.count("hello world") == 2
    assert c.count_batch(["hello world", "a"]) == [2, 1]
    assert c.count("") == 0


def test_smollm2_chat_count_includes_the_template(smollm2_counter: HFTokenCounter) -> None:
    c = smollm2_counter
    msgs = [{"role": "user", "content": "hi"}]
    expected = c.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert c.count_messages(msgs) == len(c.tokenizer(expected, add_special_tokens=False).input_ids)
    assert c.count_messages(msgs) > c.count("hi") + 5


def test_counter_from_a_path_and_a_loaded_tokenizer(
    smollm2_counter: HFTokenCounter, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    smollm2_counter.tokenizer.save_pretrained(tmp_path)
    c = HFTokenCounter(tmp_path)
    assert c.count("The capital of France is") == smollm2_counter.count("The capital of France is")
    with pytest.raises(ConfigError, match="not a tokenizer"):
        HFTokenCounter(object())


def test_chat_budget_uses_the_chat_template(smollm2_counter: HFTokenCounter) -> None:
    a = PromptAssembler(counter=smollm2_counter)
    ranked = [Scored(Example(f"question {i}", f"answer {i}", id=str(i)), 1.0) for i in range(6)]
    p = a.assemble("final question", ranked, format="chat", max_tokens=60)
    assert p.messages is not None
    assert p.token_count == smollm2_counter.count_messages(p.messages) <= 60
    assert p.dropped_ids  # the template's own tokens count against the budget


def test_default_counter_is_the_smollm2_tokenizer(smollm2_counter: HFTokenCounter) -> None:
    p = PromptAssembler().assemble("The capital of France is", [])
    assert p.token_count == smollm2_counter.count("Input: The capital of France is\nOutput:")
