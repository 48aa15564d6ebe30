"""The in-memory columns of an index: one entry per slot, in insertion order, all numpy.

A slot is a position in these columns. Deleting an example leaves its slot as a tombstone (its
``alive`` entry false), so slots never move while an index lives and a
:data:`~kshot.types.Mask` over them stays valid. The columns answer the questions a request asks
of the corpus without touching SQLite: which slots a filter allows, which slots may hold the
query's text, how many examples carry each label.

What they do not hold, by design (memory at a million examples is the reason): the vectors (the
FAISS index holds the one copy, :meth:`~kshot.index.vectors.VectorIndex.reconstruct`), the ids
and the texts (the store has them, indexed, and a request reads only the few it returns). Texts
and metadata values are kept as 64-bit hash codes per slot: equal texts have equal codes, and two
different texts share one with a probability of about ``n**2 / 2**65`` (1e-8 at a million rows).
Where a false match would change an answer (the query's own text), the caller checks the
candidates' texts in the store; the selectors' pairwise duplicate check takes the code as is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from kshot.errors import FilterError
from kshot.index.batch import ExampleBatch
from kshot.index.filters import (
    LABEL_FIELD,
    check_value_kinds,
    filter_values,
    normalize_text,
    value_key,
)
from kshot.index.store import StoredBatch
from kshot.types import Filter, Mask

__all__ = ["Codes", "Columns", "batch_of", "text_code"]

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]

#: The code of a slot that lacks a metadata field. Python's ``hash`` never returns -1.
_ABSENT = -1


def text_code(text: str) -> int:
    """The code of an input text: equal for texts equal after :func:`normalize_text`."""
    return hash(normalize_text(text))


def batch_of(rows: Ints, ids: Sequence[str], batch: ExampleBatch, vectors: Floats) -> StoredBatch:
    """The batch that ``batch``, just stored at ``rows`` with ``ids``, appends to the columns."""
    return StoredBatch(
        rows=rows,
        ids=ids,
        inputs=batch.inputs,
        labels=batch.labels,
        metadata=batch.metadata,
        embeddings=vectors,
    )


def _grown(array: npt.NDArray[Any], need: int) -> npt.NDArray[Any]:
    """``array`` with room for ``need`` entries (doubling, so appends cost amortised O(1))."""
    if need <= len(array):
        return array
    grown = np.empty(max(need, 2 * len(array), 1024), array.dtype)
    grown[: len(array)] = array
    return grown


class Codes:
    """An int64 code per slot, and the slots holding a code, found without a Python dict.

    The first ``base`` slots are kept sorted by code (an argsort, searched with
    ``searchsorted``); slots appended since are scanned directly. A lookup folds the tail into
    the sorted part once it outgrows an eighth of it, so a lookup costs ``O(log n)`` plus a scan
    of at most ``n / 8`` integers, a bulk load sorts once (at its first lookup, not per batch),
    and the column costs 20 bytes a slot.
    """

    __slots__ = ("_lock", "_order", "_sorted", "base", "n", "values")

    def __init__(self, fill: int = _ABSENT, n: int = 0) -> None:
        self.values = np.full(n, fill, np.int64)
        self.n = n
        self.base = 0
        self._sorted = np.empty(0, np.int64)
        self._order = np.empty(0, np.int32)
        # Lookups run under the index's shared read lock, so two may fold at once.
        self._lock = threading.Lock()

    def append(self, codes: Ints) -> None:
        """Append the codes of new slots."""
        end = self.n + len(codes)
        self.values = _grown(self.values, end)
        self.values[self.n : end] = codes
        self.n = end

    def slots_of(self, code: int) -> npt.NDArray[np.intp]:
        """Every slot holding ``code``, ascending (tombstones included)."""
        with self._lock:
            if self.n - self.base > max(4096, self.base // 8):
                order = np.argsort(self.values[: self.n], kind="stable")
                self._order = order.astype(np.int32)
                self._sorted = self.values[: self.n][order]
                self.base = self.n
            base, ordered, order_ = self.base, self._sorted, self._order
        lo = int(ordered.searchsorted(code, "left"))
        if lo == len(ordered) or ordered[lo] != code:  # the usual answer: no slot has it
            head = np.empty(0, np.intp)
        else:
            head = order_[lo : int(ordered.searchsorted(code, "right"))].astype(np.intp)
        if base == self.n:
            return head
        tail = np.flatnonzero(self.values[base : self.n] == code) + base
        return head if not len(tail) else np.concatenate([head, tail])

    @property
    def nbytes(self) -> int:
        """Bytes held by the column and its sorted copy."""
        return int(self.values.nbytes + self._sorted.nbytes + self._order.nbytes)


class Columns:
    """Store rows, liveness, label codes, text codes and metadata value codes, by slot."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.n = 0
        self.rows = np.empty(0, np.int64)
        self.alive = np.empty(0, np.bool_)
        self.label_codes = np.empty(0, np.int32)
        self.label_names: list[str] = []
        self.label_index: dict[str, int] = {}
        # The selectors' duplicate check compares these integers instead of normalising every
        # candidate's text on every query.
        self.texts = Codes()
        #: Per metadata field: the value codes by slot, and one value key per JSON kind held
        #: (what :func:`check_value_kinds` needs to name a filter of the wrong kind).
        self.fields_codes: dict[str, Codes] = {}
        self.field_kinds: dict[str, dict[str, str]] = {}
        self.dead = 0

    @property
    def live(self) -> int:
        """How many slots hold a live example."""
        return self.n - self.dead

    @property
    def text_codes(self) -> Ints:
        """The text code of every slot."""
        return self.texts.values[: self.n]

    def append(self, batch: StoredBatch) -> None:
        """Append stored examples as new live slots."""
        count = len(batch.rows)
        start, end = self.n, self.n + count
        self.rows = _grown(self.rows, end)
        self.alive = _grown(self.alive, end)
        self.label_codes = _grown(self.label_codes, end)
        self.rows[start:end] = batch.rows
        self.alive[start:end] = True
        self.label_codes[start:end] = self._label_codes(batch.labels)
        self.texts.append(np.fromiter(map(text_code, batch.inputs), np.int64, count))
        self._append_metadata(batch.metadata, count)
        self.n = end

    def _label_codes(self, labels: Sequence[str | None]) -> npt.NDArray[np.int32]:
        index = self.label_index
        for label in set(labels) - index.keys():
            if label is not None:
                index[label] = len(self.label_names)
                self.label_names.append(label)
        return np.fromiter(
            (-1 if label is None else index[label] for label in labels), np.int32, len(labels)
        )

    def _append_metadata(self, metadata: Sequence[Mapping[str, Any]], count: int) -> None:
        batch: dict[str, Ints] = {}
        for offset, meta in enumerate(metadata):
            for key, value in meta.items():
                field = str(key)
                codes = batch.get(field)
                if codes is None:
                    codes = batch[field] = np.full(count, _ABSENT, np.int64)
                found = value_key(value)
                codes[offset] = hash(found)
                kinds = self.field_kinds.setdefault(field, {})
                if found[:1] not in kinds:
                    kinds[found[:1]] = found
        for field in batch.keys() - self.fields_codes.keys():
            self.fields_codes[field] = Codes(n=self.n)
        for field, column in self.fields_codes.items():
            column.append(batch.get(field, np.full(count, _ABSENT, np.int64)))

    def kill(self, slots: Iterable[int]) -> None:
        """Turn ``slots`` into tombstones."""
        for slot in slots:
            if self.alive[slot]:
                self.alive[slot] = False
                self.dead += 1

    def slots_of_rows(self, rows: Ints) -> npt.NDArray[np.intp]:
        """The slots holding store ``rows`` (rows only grow, so the column is sorted)."""
        return np.searchsorted(self.rows[: self.n], rows).astype(np.intp)

    def live_slots(self, mask: Mask | None = None) -> npt.NDArray[np.intp]:
        """Every live slot inside ``mask``, ascending."""
        alive = self.alive[: self.n]
        return np.flatnonzero(alive if mask is None else alive & mask)

    def live_rows(self) -> Ints:
        """The store rows of every live slot, in slot order."""
        return self.rows[self.live_slots()]

    def fields(self) -> list[str]:
        """The fields filters can use: ``label`` and every metadata key seen."""
        return [LABEL_FIELD, *sorted(self.fields_codes)]

    def label_counts(self) -> dict[str, int]:
        """How many live examples carry each label."""
        codes = self.label_codes[: self.n][self.alive[: self.n]]
        counts = np.bincount(codes[codes >= 0], minlength=len(self.label_names))
        return {name: int(c) for name, c in zip(self.label_names, counts, strict=True) if c}

    def resolve(self, filter: Filter | None = None, excluded: Sequence[int] = ()) -> Mask | None:
        """The mask of slots a request may return (``excluded`` slots out), ``None`` for all."""
        wanted = filter_values(filter)
        if not wanted and not len(excluded):
            return None
        mask = self.alive[: self.n].copy()
        for field, values in wanted.items():
            mask &= self._field_mask(field, values)
        if len(excluded):
            mask[np.asarray(excluded, np.intp)] = False
        return mask

    def _field_mask(self, field: str, values: list[Any]) -> Mask:
        if field == LABEL_FIELD:
            codes = [self.label_index[str(v)] for v in values if str(v) in self.label_index]
            return np.isin(self.label_codes[: self.n], np.array(codes, np.int32))
        column = self.fields_codes.get(field)
        if column is None:
            raise FilterError(
                f"no example has the field {field!r}; fields you can filter on: {self.fields()}"
            )
        mask = np.zeros(self.n, np.bool_)
        for value in values:
            mask[column.slots_of(hash(value_key(value)))] = True
        if not mask.any():
            check_value_kinds(field, values, self.field_kinds[field].values())
        return mask

    def slots_with_text_code(self, code: int) -> list[int]:
        """Live slots whose input has text code ``code`` (see :func:`text_code`)."""
        slots = self.texts.slots_of(code)
        found: list[int] = slots[self.alive[slots]].tolist()
        return found

    @property
    def nbytes(self) -> int:
        """Bytes held by the numpy columns (the label names aside)."""
        arrays = (self.rows, self.alive, self.label_codes)
        codes = [self.texts, *self.fields_codes.values()]
        return sum(a.nbytes for a in arrays) + sum(c.nbytes for c in codes)
