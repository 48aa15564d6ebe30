"""Prompt templates that fill named fields only.

A template is a :class:`str.format` string restricted to plain named fields: ``{input}``,
``{output}``, ``{label}``, ``{id}`` and the keys of an example's ``metadata``. Attribute or index
access (``{x.y}``, ``{x[0]}``), conversions (``{x!r}``), format specs (``{x:>10}``) and positional
fields (``{}``, ``{0}``) are refused with a :class:`~kshot.errors.TemplateError`, so a template can
never reach into Python objects. Literal braces are written ``{{`` and ``}}``.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kshot.errors import TemplateError
from kshot.types import Example

__all__ = ["BUILTIN_FIELDS", "PromptTemplate", "TemplateString", "example_fields", "query_fields"]

#: Fields every example provides; metadata keys come on top of these.
BUILTIN_FIELDS: tuple[str, ...] = ("input", "output", "label", "id")

_FORMATTER = string.Formatter()


@dataclass(frozen=True)
class TemplateString:
    """One validated template string, parsed once into literal text and field names.

    ``name`` says which template this is (``"example"``, ``"query"``, ...) so that errors can
    name it.
    """

    name: str
    source: str
    parts: tuple[tuple[str, str | None], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", _parse(self.name, self.source))

    @property
    def fields(self) -> tuple[str, ...]:
        """The field names this template uses, in order of first appearance."""
        seen: dict[str, None] = {}
        for _, name in self.parts:
            if name is not None:
                seen.setdefault(name)
        return tuple(seen)

    def render(self, values: Mapping[str, Any]) -> str:
        """Fill the fields from ``values``; ``None`` renders as an empty string.

        Raises:
            TemplateError: a field is not in ``values``; the message lists the available fields.
        """
        out: list[str] = []
        for literal, name in self.parts:
            out.append(literal)
            if name is None:
                continue
            try:
                value = values[name]
            except KeyError:
                available = ", ".join(sorted(values))
                raise TemplateError(
                    f"template {self.name!r} uses unknown field {{{name}}}; "
                    f"available fields: {available}"
                ) from None
            out.append("" if value is None else str(value))
        return "".join(out)


def _parse(name: str, source: str) -> tuple[tuple[str, str | None], ...]:
    if not isinstance(source, str):
        raise TemplateError(f"template {name!r} must be a string, got {type(source).__name__}")
    try:
        parsed = list(_FORMATTER.parse(source))
    except ValueError as exc:
        raise TemplateError(f"template {name!r} is malformed ({exc}): {source!r}") from None
    parts: list[tuple[str, str | None]] = []
    for literal, field_name, spec, conversion in parsed:
        if field_name is None:
            parts.append((literal, None))
            continue
        shown = "{" + field_name + (f"!{conversion}" if conversion else "")
        shown += (f":{spec}" if spec else "") + "}"
        if field_name == "" or field_name.isdigit():
            raise TemplateError(
                f"template {name!r} uses positional field {shown}; use a named field such as "
                f"{{input}} ({source!r})"
            )
        if "." in field_name or "[" in field_name:
            raise TemplateError(
                f"template {name!r} uses attribute or index access in field {shown}; only plain "
                f"named fields are allowed ({source!r})"
            )
        if conversion:
            raise TemplateError(
                f"template {name!r} uses a conversion in field {shown}; only plain named fields "
                f"are allowed ({source!r})"
            )
        if spec:
            raise TemplateError(
                f"template {name!r} uses a format spec in field {shown}; only plain named fields "
                f"are allowed ({source!r})"
            )
        parts.append((literal, field_name))
    return tuple(parts)


def example_fields(example: Example) -> dict[str, Any]:
    """Return the values a template can use for ``example``: metadata, then the built-in fields.

    Built-in fields win over metadata keys of the same name.
    """
    values: dict[str, Any] = dict(example.metadata)
    values.update(input=example.input, output=example.output, label=example.label, id=example.id)
    return values


_TEMPLATE_NAMES = ("example", "query", "example_user", "example_assistant", "query_user")


@dataclass(frozen=True)
class PromptTemplate:
    """How examples and the query become a prompt.

    Text format: ``instructions``, then each example rendered with ``example``, then the query
    rendered with ``query``, all joined by ``separator`` (an empty ``instructions`` is left out).

    Chat format: ``instructions`` becomes the system message (none when empty); each example
    becomes a user message (``example_user``) and an assistant message (``example_assistant``);
    the query becomes the final user message (``query_user``).

    ``instructions`` and ``separator`` are literal text, not templates. Example templates may use
    ``input``, ``output``, ``label``, ``id`` and metadata keys; a query given as a string provides
    ``input`` only (pass an :class:`~kshot.types.Example` to provide more). Syntax is checked at
    construction; field names are checked when a prompt is rendered, because metadata keys vary.
    """

    instructions: str = ""
    example: str = "Input: {input}\nOutput: {output}"
    separator: str = "\n\n"
    query: str = "Input: {input}\nOutput:"
    example_user: str = "{input}"
    example_assistant: str = "{output}"
    query_user: str = "{input}"
    _compiled: dict[str, TemplateString] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        for name in ("instructions", "separator"):
            if not isinstance(getattr(self, name), str):
                raise TemplateError(f"template {name!r} must be a string")
        for name in _TEMPLATE_NAMES:
            self._compiled[name] = TemplateString(name, getattr(self, name))

    def compiled(self, name: str) -> TemplateString:
        """Return the parsed template called ``name`` (``"example"``, ``"query"``, ...)."""
        try:
            return self._compiled[name]
        except KeyError:
            raise TemplateError(
                f"no template named {name!r}; templates: {', '.join(_TEMPLATE_NAMES)}"
            ) from None

    def render_example(self, example: Example) -> str:
        """Render one example with the text-format ``example`` template."""
        return self.compiled("example").render(example_fields(example))

    def render_query(self, query: str | Example) -> str:
        """Render the query with the text-format ``query`` template."""
        return self.compiled("query").render(query_fields(query))


def query_fields(query: str | Example) -> dict[str, Any]:
    """Return the values a query template can use."""
    if isinstance(query, Example):
        return example_fields(query)
    return {"input": query}
