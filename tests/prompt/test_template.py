from __future__ import annotations

import pytest

from kshot.errors import ConfigError, TemplateError
from kshot.prompt import PromptTemplate
from kshot.types import Example


def test_default_templates_render_example_and_query() -> None:
    t = PromptTemplate()
    ex = Example("2+2?", "4", label="math", id="a")
    assert t.render_example(ex) == "Input: 2+2?\nOutput: 4"
    assert t.render_query("3+3?") == "Input: 3+3?\nOutput:"


def test_fields_label_id_metadata_and_none_label() -> None:
    t = PromptTemplate(example="[{id}] {input} ({topic}, n={n}) -> {label}")
    ex = Example("hi", "hello", label=None, metadata={"topic": "greet", "n": 3}, id="x1")
    assert t.render_example(ex) == "[x1] hi (greet, n=3) -> "


def test_builtin_fields_win_over_metadata() -> None:
    t = PromptTemplate(example="{input}")
    assert t.render_example(Example("real", metadata={"input": "fake"})) == "real"


def test_literal_braces() -> None:
    t = PromptTemplate(example='{{"text": "{input}"}}', query="{{{input}}}")
    assert t.render_example(Example("a")) == '{"text": "a"}'
    assert t.render_query("q") == "{q}"


def test_query_as_example_provides_metadata() -> None:
    t = PromptTemplate(query="[{topic}] {input}")
    assert t.render_query(Example("q", metadata={"topic": "t"})) == "[t] q"


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("{input.__class__}", "attribute or index access in field {input.__class__}"),
        ("{input[0]}", "attribute or index access in field {input[0]}"),
        ("{input!r}", "conversion in field {input!r}"),
        ("{input:>10}", "format spec in field {input:>10}"),
        ("{}", "positional field {}"),
        ("{0}", "positional field {0}"),
        ("{input", "malformed"),
        ("input}", "malformed"),
    ],
)
def test_forbidden_syntax_is_refused_at_construction(source: str, fragment: str) -> None:
    with pytest.raises(TemplateError) as info:
        PromptTemplate(example=source)
    assert "'example'" in str(info.value)
    assert fragment in str(info.value)


def test_forbidden_syntax_in_query_names_the_query_template() -> None:
    with pytest.raises(TemplateError, match="template 'query_user'"):
        PromptTemplate(query_user="{input.upper}")


def test_unknown_field_names_field_and_lists_available() -> None:
    t = PromptTemplate(example="{input} {nope}")
    with pytest.raises(TemplateError) as info:
        t.render_example(Example("a", metadata={"topic": "x"}))
    msg = str(info.value)
    assert "{nope}" in msg and "'example'" in msg
    assert "available fields: id, input, label, output, topic" in msg


def test_string_query_provides_input_only() -> None:
    t = PromptTemplate(query="{input} {label}")
    with pytest.raises(TemplateError, match=r"\{label\}.*available fields: input"):
        t.render_query("q")


def test_template_error_is_a_config_error_and_value_error() -> None:
    with pytest.raises(ConfigError):
        PromptTemplate(example="{}")
    with pytest.raises(ValueError):
        PromptTemplate(example="{}")


def test_templates_are_frozen_and_comparable() -> None:
    assert PromptTemplate() == PromptTemplate()
    with pytest.raises(AttributeError):
        PromptTemplate().example = "x"  # type: ignore[misc]
