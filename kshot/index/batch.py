"""Examples as columns: what a build or an add stores, without one object per row.

A corpus of a million rows spends more time making a frozen :class:`~kshot.types.Example` per
row than SQLite spends storing it, and the index keeps none of those objects: the store takes
the fields, the columns take codes. :func:`batch_of_rows` turns the rows a caller gives into
one :class:`ExampleBatch` of lists, checking each column at C speed (``map``, ``set`` of types)
when the rows are of the common shapes: plain dicts whose fields are strings (or null), or
:class:`Example` values. Anything else goes through :func:`~kshot.types.as_example` row by row,
so every row reaches the index by the same rule and a bad row raises the same error, naming the
same row, as it always has; the fast path only ever accepts rows that rule accepts, with the
same result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from types import MappingProxyType
from typing import Any

from kshot.errors import DataError
from kshot.types import Example, as_example

__all__ = ["ExampleBatch", "batch_of_rows", "check_unique_ids"]

_TEXT = {str}
_TEXT_OR_NULL = {str, type(None)}
_OBJECT_OR_NULL = {dict, type(None)}
_FIELDS = attrgetter("id", "input", "output", "label", "metadata")
_NO_METADATA: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class ExampleBatch:
    """Examples as five parallel columns, one entry per example, as the index stores them.

    An empty ``id`` is assigned by the store; ``label`` ``None`` is no label.
    """

    ids: Sequence[str]
    inputs: Sequence[str]
    outputs: Sequence[str]
    labels: Sequence[str | None]
    metadata: Sequence[Mapping[str, Any]]

    def __len__(self) -> int:
        return len(self.inputs)

    @classmethod
    def of(cls, examples: Sequence[Example]) -> ExampleBatch:
        """The batch of examples already checked (by :func:`~kshot.types.as_example`)."""
        if not examples:
            return cls([], [], [], [], [])
        ids, inputs, outputs, labels, metadata = zip(*map(_FIELDS, examples), strict=True)
        return cls(ids, inputs, outputs, labels, metadata)

    def slice(self, start: int, stop: int) -> ExampleBatch:
        """The examples ``start`` to ``stop`` (a view of lists, not a copy of the texts)."""
        return ExampleBatch(
            self.ids[start:stop],
            self.inputs[start:stop],
            self.outputs[start:stop],
            self.labels[start:stop],
            self.metadata[start:stop],
        )


def batch_of_rows(rows: Iterable[Example | Mapping[str, Any]]) -> ExampleBatch:
    """The rows (``Example`` values or mappings) as a batch, each converted by ``as_example``.

    The rule is :meth:`Example.from_mapping`'s; rows it would refuse raise its error, which names
    the row by its position.
    """
    listed = rows if isinstance(rows, list) else list(rows)
    kinds = set(map(type, listed))
    fast: ExampleBatch | None = None
    if kinds == {dict}:
        fast = _dict_batch(listed)
    elif kinds == {Example}:
        fast = _example_batch(listed)
    if fast is not None:
        return fast
    return ExampleBatch.of([as_example(row, i) for i, row in enumerate(listed)])


def _dict_batch(rows: list[Any]) -> ExampleBatch | None:
    """Plain dict rows whose fields are strings or null, converted as ``from_mapping`` does.

    ``None`` (take the row-by-row path) for anything else: a missing or blank input, a number
    to write as text, metadata that is not an object.
    """
    try:
        inputs = [row["input"] for row in rows]
    except KeyError:
        return None
    if set(map(type, inputs)) != _TEXT or not all(map(str.strip, inputs)):
        return None
    ids = [row.get("id") for row in rows]
    outputs = [row.get("output") for row in rows]
    labels = [row.get("label") for row in rows]
    nested = [row.get("metadata") for row in rows]
    if not (
        set(map(type, ids)) <= _TEXT_OR_NULL
        and set(map(type, outputs)) <= _TEXT_OR_NULL
        and set(map(type, labels)) <= _TEXT_OR_NULL
        and set(map(type, nested)) <= _OBJECT_OR_NULL
    ):
        return None
    # An id is stripped, a null output is "", an empty label is none. The metadata objects are
    # only read (stored as JSON, coded into the columns), so they are not copied, and rows
    # without any share one empty mapping instead of a new dict each.
    return ExampleBatch(
        ids=["" if i is None else i.strip() for i in ids],
        inputs=inputs,
        outputs=["" if o is None else o for o in outputs],
        labels=[label or None for label in labels],
        metadata=[_NO_METADATA if m is None else m for m in nested],
    )


def _example_batch(rows: list[Any]) -> ExampleBatch | None:
    """``Example`` rows with a text input, taken as they are (an empty label is none)."""
    batch = ExampleBatch.of(rows)
    if set(map(type, batch.inputs)) != _TEXT or not all(map(str.strip, batch.inputs)):
        return None
    if "" in batch.labels:
        batch = ExampleBatch(
            batch.ids,
            batch.inputs,
            batch.outputs,
            [label or None for label in batch.labels],
            batch.metadata,
        )
    return batch


def check_unique_ids(ids: Sequence[str]) -> None:
    """Refuse a batch that gives one id twice (empty ids are assigned, so they may repeat)."""
    given = [i for i in ids if i]
    if len(set(given)) == len(given):
        return
    seen: dict[str, int] = {}
    for position, example_id in enumerate(ids):
        if not example_id:
            continue
        if example_id in seen:
            raise DataError(
                f"duplicate example id {example_id!r} at examples {seen[example_id]} and "
                f"{position}; ids must be unique"
            )
        seen[example_id] = position
