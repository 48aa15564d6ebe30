"""The in-memory columns of an index: one entry per slot, in insertion order.

A slot is a position in these columns. Deleting an example leaves its slot as a tombstone (its
``alive`` entry false), so slots never move while an index lives and a
:data:`~kshot.types.Mask` over them stays valid. The columns answer the questions a request asks
of the corpus without touching SQLite: which slots a filter allows, which inputs equal a query,
how many examples carry each label.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from kshot.errors import FilterError
from kshot.index.filters import (
    LABEL_FIELD,
    check_value_kinds,
    filter_values,
    normalize_text,
    value_key,
)
from kshot.index.store import StoredBatch
from kshot.types import Example, Filter, Mask

__all__ = ["Columns", "batch_of"]

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]


def batch_of(rows: Ints, ids: list[str], items: Sequence[Example], vectors: Floats) -> StoredBatch:
    """The batch that ``items``, just stored at ``rows`` with ``ids``, append to the columns."""
    return StoredBatch(
        rows=rows,
        ids=ids,
        inputs=[ex.input for ex in items],
        labels=[ex.label for ex in items],
        metadata=[dict(ex.metadata) for ex in items],
        embeddings=vectors,
    )


class Columns:
    """Store rows, vectors, ids, inputs, label codes and metadata postings, by slot."""

    def __init__(self, dim: int, *, keep_vectors: bool = True) -> None:
        self.dim = dim
        #: Whether ``vectors`` holds every slot's vector; an index whose vectors stay on disk
        #: (compressed or memory-mapped, :func:`~kshot.index.factories.holds_vectors`) reads
        #: them from the store instead.
        self.keep_vectors = keep_vectors
        self.n = 0
        self.rows = np.empty(0, np.int64)
        self.vectors = np.empty((0, dim), np.float32)
        self.alive = np.empty(0, np.bool_)
        self.label_codes = np.empty(0, np.int32)
        # One code per distinct normalised input, so that the selectors' duplicate check compares
        # integers instead of normalising every candidate's text on every query.
        self.text_codes = np.empty(0, np.int64)
        self.ids: list[str] = []
        self.inputs: list[str] = []
        self.label_names: list[str] = []
        self.label_index: dict[str, int] = {}
        self.slot_of_id: dict[str, int] = {}
        self.slots_of_text: dict[str, list[int]] = {}
        self.text_code: dict[str, int] = {}
        self.postings: dict[str, dict[str, list[int]]] = {}
        self.dead = 0

    @property
    def live(self) -> int:
        """How many slots hold a live example."""
        return self.n - self.dead

    def _reserve(self, extra: int) -> None:
        need = self.n + extra
        if need <= len(self.rows):
            return
        capacity = max(need, 2 * len(self.rows), 1024)
        for name in ("rows", "alive", "label_codes", "text_codes"):
            old = getattr(self, name)
            grown = np.zeros(capacity, old.dtype)
            grown[: self.n] = old[: self.n]
            setattr(self, name, grown)
        if not self.keep_vectors:
            return
        vectors = np.zeros((capacity, self.dim), np.float32)
        vectors[: self.n] = self.vectors[: self.n]
        self.vectors = vectors

    def append(self, batch: StoredBatch) -> None:
        """Append stored examples as new live slots."""
        count = len(batch.ids)
        self._reserve(count)
        start, end = self.n, self.n + count
        self.rows[start:end] = batch.rows
        if self.keep_vectors:
            self.vectors[start:end] = batch.embeddings
        self.alive[start:end] = True
        codes = self.label_codes
        for offset, (ex_id, text, label, meta) in enumerate(
            zip(batch.ids, batch.inputs, batch.labels, batch.metadata, strict=True)
        ):
            slot = start + offset
            self.ids.append(ex_id)
            self.inputs.append(text)
            self.slot_of_id[ex_id] = slot
            key = normalize_text(text)
            self.slots_of_text.setdefault(key, []).append(slot)
            self.text_codes[slot] = self.text_code.setdefault(key, len(self.text_code))
            if label is None:
                codes[slot] = -1
            else:
                code = self.label_index.get(label)
                if code is None:
                    code = self.label_index[label] = len(self.label_names)
                    self.label_names.append(label)
                codes[slot] = code
            for key, value in meta.items():
                self.postings.setdefault(str(key), {}).setdefault(value_key(value), []).append(slot)
        self.n = end

    def kill(self, slots: Iterable[int]) -> None:
        """Turn ``slots`` into tombstones."""
        for slot in slots:
            if self.alive[slot]:
                self.alive[slot] = False
                self.dead += 1
                del self.slot_of_id[self.ids[slot]]

    def slots_of_rows(self, rows: Ints) -> npt.NDArray[np.intp]:
        """The slots holding store ``rows`` (rows only grow, so the column is sorted)."""
        return np.searchsorted(self.rows[: self.n], rows).astype(np.intp)

    def live_slots(self, mask: Mask | None = None) -> npt.NDArray[np.intp]:
        """Every live slot inside ``mask``, ascending."""
        alive = self.alive[: self.n]
        return np.flatnonzero(alive if mask is None else alive & mask)

    def live_arrays(self) -> tuple[Ints, Floats]:
        """The store rows and vectors of every live slot, in slot order (``keep_vectors`` only)."""
        live = self.live_slots()
        return self.rows[live], self.vectors[live]

    def fields(self) -> list[str]:
        """The fields filters can use: ``label`` and every metadata key seen."""
        return [LABEL_FIELD, *sorted(self.postings)]

    def label_counts(self) -> dict[str, int]:
        """How many live examples carry each label."""
        codes = self.label_codes[: self.n][self.alive[: self.n]]
        counts = np.bincount(codes[codes >= 0], minlength=len(self.label_names))
        return {name: int(c) for name, c in zip(self.label_names, counts, strict=True) if c}

    def resolve(self, filter: Filter | None = None, exclude: Iterable[str] = ()) -> Mask | None:
        """The mask of slots a request may return, or ``None`` for every live example."""
        wanted = filter_values(filter)
        excluded = [self.slot_of_id[i] for i in exclude if i in self.slot_of_id]
        if not wanted and not excluded:
            return None
        mask = self.alive[: self.n].copy()
        for field, values in wanted.items():
            mask &= self._field_mask(field, values)
        if excluded:
            mask[excluded] = False
        return mask

    def _field_mask(self, field: str, values: list[Any]) -> Mask:
        if field == LABEL_FIELD:
            codes = [self.label_index[str(v)] for v in values if str(v) in self.label_index]
            return np.isin(self.label_codes[: self.n], np.array(codes, np.int32))
        postings = self.postings.get(field)
        if postings is None:
            raise FilterError(
                f"no example has the field {field!r}; fields you can filter on: {self.fields()}"
            )
        mask = np.zeros(self.n, np.bool_)
        for value in values:
            slots = postings.get(value_key(value))
            if slots:
                mask[slots] = True
        if not mask.any():
            check_value_kinds(field, values, postings)
        return mask

    def slots_matching_text(self, text: str) -> list[int]:
        """Live slots whose input equals ``text`` after :func:`normalize_text`."""
        slots = self.slots_of_text.get(normalize_text(text), [])
        return [s for s in slots if self.alive[s]]
