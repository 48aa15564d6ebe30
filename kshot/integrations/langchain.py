"""LangChain adapter: any kshot selector as a ``langchain_core`` example selector.

>>> selector = KshotExampleSelector.from_examples(examples, selector="mmr", k=4)
>>> prompt = FewShotPromptTemplate(example_selector=selector, example_prompt=..., ...)

Unlike LangChain's own MMR selector, filters stay applied for every strategy, and the query's own
text and duplicate inputs are never returned (see :mod:`kshot.selector.base`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kshot._ranking import check_k
from kshot.api import aselect, select
from kshot.errors import ConfigError, QueryError, missing_extra
from kshot.index.encoder import Encoder
from kshot.index.example_index import ExampleIndex
from kshot.selector.base import SelectorSpec, selector_class
from kshot.selector.params import SelectorParams
from kshot.types import Example, Scored

try:
    from langchain_core.example_selectors import BaseExampleSelector
    from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
except ImportError as exc:  # pragma: no cover - exercised by hiding the module in a test
    raise missing_extra("langchain-core", "langchain") from exc

__all__ = ["KshotExampleSelector"]


class KshotExampleSelector(BaseExampleSelector, BaseModel):
    """Select few-shot examples for a LangChain prompt with a kshot index and selector.

    Example rows come back keyed by ``input_key``, ``output_key`` and ``label_key`` (a missing
    label is ``""``), plus the example's metadata fields, which therefore must not reuse those
    three names to be visible; a prompt template may use any of them.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    index: ExampleIndex
    """The kshot index the examples come from; :meth:`add_example` writes to it."""

    selector: str = "similarity"
    """The registered selector name (see ``kshot.available_selectors()``)."""

    params: dict[str, Any] = Field(default_factory=dict)
    """The selector's parameters by name (``{"lambda": 0.3}``), validated on creation."""

    k: int = 4
    """How many examples to select."""

    input_key: str = "input"
    """The input variable holding the query, and the key of each row's input."""

    output_key: str = "output"
    """The key of each row's output."""

    label_key: str = "label"
    """The key of each row's label."""

    filter: dict[str, Any] | None = None
    """A kshot filter (``label`` / metadata equality or membership) applied to every selection."""

    _params: SelectorParams = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        """Validate the fields, then build the selector: a bad name or parameter fails here.

        The selector's name and parameters are checked after pydantic's validation rather than
        inside it, so that their errors reach the caller as kshot errors (ConfigError,
        UnknownSelectorError); selection itself is :func:`kshot.api.select`.
        """
        super().__init__(**data)
        try:
            check_k(self.k)
        except QueryError as exc:
            raise ConfigError(str(exc)) from exc
        keys = {self.input_key, self.output_key, self.label_key}
        if len(keys) != 3:
            raise ConfigError(
                f"input_key, output_key and label_key must differ, got {self.input_key!r}, "
                f"{self.output_key!r}, {self.label_key!r}"
            )
        spec = SelectorSpec(self.selector, self.params)
        self._params = selector_class(spec.name).Params.from_mapping(
            spec.params, selector=spec.name
        )

    @classmethod
    def from_examples(
        cls,
        examples: Iterable[Mapping[str, Any]],
        encoder: Encoder | None = None,
        selector: str = "similarity",
        k: int = 4,
        *,
        params: Mapping[str, Any] | None = None,
        input_key: str = "input",
        output_key: str = "output",
        label_key: str = "label",
        filter: Mapping[str, Any] | None = None,
        **index_kwargs: Any,
    ) -> KshotExampleSelector:
        """Index LangChain-style example dicts and wrap them in a selector.

        Each dict needs ``input_key``; ``output_key``, ``label_key`` and ``id`` are optional, and
        any other key becomes metadata (as do the entries of a ``metadata`` dict). ``encoder``
        defaults to the bundled all-MiniLM-L6-v2 model; ``index_kwargs`` go to
        :meth:`ExampleIndex.build` (for example ``path=``).
        """
        if encoder is None:
            from kshot.index.encoder import SentenceTransformerEncoder

            encoder = SentenceTransformerEncoder()
        keys = (input_key, output_key, label_key)
        rows = [_to_example(row, keys, position) for position, row in enumerate(examples)]
        index = ExampleIndex.build(rows, encoder, **index_kwargs)
        return cls(
            index=index,
            selector=selector,
            params=dict(params or {}),
            k=k,
            input_key=input_key,
            output_key=output_key,
            label_key=label_key,
            filter=None if filter is None else dict(filter),
        )

    def select_examples(self, input_variables: dict[str, Any]) -> list[dict[str, Any]]:
        """Select examples for the prompt's input variables (the query is ``input_key``)."""
        return [self._row(found) for found in self.select_scored(input_variables)]

    async def aselect_examples(self, input_variables: dict[str, Any]) -> list[dict[str, Any]]:
        """:meth:`select_examples` for async chains: encoding and search run in a worker thread."""
        found = await aselect(
            self.index,
            self._query(input_variables),
            self.k,
            selector=self.selector,
            params=self._params,
            filter=self.filter,
        )
        return [self._row(s) for s in found]

    def select_scored(self, input_variables: Mapping[str, Any]) -> list[Scored]:
        """Like :meth:`select_examples`, but kshot's scored examples."""
        return select(
            self.index,
            self._query(input_variables),
            self.k,
            selector=self.selector,
            params=self._params,
            filter=self.filter,
        )

    def _query(self, input_variables: Mapping[str, Any]) -> str:
        if self.input_key not in input_variables:
            raise QueryError(
                f"the input variables have no {self.input_key!r} (they have: "
                f"{sorted(input_variables)}); set input_key to the variable holding the query"
            )
        return str(input_variables[self.input_key])

    def add_example(self, example: dict[str, Any]) -> str:
        """Add one example dict (keys as in :meth:`from_examples`) to the index; return its id."""
        keys = (self.input_key, self.output_key, self.label_key)
        return self.index.add([_to_example(example, keys, 0)])[0]

    def _row(self, found: Scored) -> dict[str, Any]:
        example = found.example
        return {
            **example.metadata,
            self.input_key: example.input,
            self.output_key: example.output,
            self.label_key: "" if example.label is None else example.label,
        }


def _to_example(row: Mapping[str, Any], keys: tuple[str, str, str], position: int) -> Example:
    input_key, output_key, label_key = keys
    # Keys other than the three, ``id`` and ``metadata`` are metadata too: a LangChain row is flat.
    flat = (
        {key: value for key, value in row.items() if key not in {*keys, "id", "metadata"}}
        if isinstance(row, Mapping)
        else {}
    )
    return Example.from_mapping(
        row,
        input_key=input_key,
        output_key=output_key,
        label_key=label_key,
        extra_metadata=flat,
        where=f"example {position}",
        hint="set input_key to the field holding the example's input",
    )
