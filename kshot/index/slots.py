"""The selectors' view of an :class:`~kshot.index.ExampleIndex`: slot-level reads, nothing else.

Selectors read an index by slot (see :mod:`kshot.index.columns`) through the
:class:`~kshot.selector.view.IndexView` protocol. :class:`SlotView` is the index's implementation
of it: ``index.view`` hands out one, and ``build_selector(index, "mmr")`` asks for it, so these
reads are not part of the index's own public API (which speaks of examples and ids).

Why a separate object instead of methods on the index: the index's public surface stays the
user's (build, load, save, writes, ids), the selectors' surface stays theirs, and a selector
cannot reach past its protocol into writes or persistence. Why callables instead of the parts
themselves: an index swaps its vector index on a rebuild and its store on a save to a new
directory, so the view asks the index for them on each read; it holds no reference to the index
object itself beyond those bound methods, and the index does not keep its views, so an index
dropped without ``close()`` is still collected (and lets go of its writer lock) at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager

import numpy as np
import numpy.typing as npt

from kshot.index.columns import Columns
from kshot.index.lexical import LexicalIndex
from kshot.index.vectors import VectorIndex, exact_search
from kshot.types import Example, Filter, Mask

__all__ = ["EXACT_BATCH_MIN", "EXACT_FILTER_LIMIT", "SlotView"]

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]

#: Filtered searches over at most this many allowed examples scan them exactly in numpy.
EXACT_FILTER_LIMIT = 50_000
#: Batches of at least this many queries over an exact index are scored with BLAS blocks.
EXACT_BATCH_MIN = 8


class SlotView:
    """Slot-level reads of one index, for selectors; call them inside :meth:`reading`."""

    __slots__ = ("_columns", "_encode", "_fetch", "_lexical", "_reading", "_stored", "_vectors")

    def __init__(
        self,
        columns: Columns,
        *,
        reading: Callable[[], AbstractContextManager[None]],
        encode: Callable[[Sequence[str]], Floats],
        vectors: Callable[[], VectorIndex],
        fetch: Callable[[list[int]], list[Example]],
        lexical: Callable[[], LexicalIndex],
        stored_vectors: Callable[[Ints], Floats],
    ) -> None:
        self._columns = columns
        self._reading = reading
        self._encode = encode
        self._vectors = vectors
        self._fetch = fetch
        self._lexical = lexical
        # Exact vectors of store rows, for indexes whose columns keep none in memory.
        self._stored = stored_vectors

    def __len__(self) -> int:
        """How many live examples the index holds."""
        return self._columns.live

    def reading(self) -> AbstractContextManager[None]:
        """Hold the index still (no write lands) while a request reads it."""
        return self._reading()

    def resolve(self, filter: Filter | None = None, exclude: Iterable[str] = ()) -> Mask | None:
        """The mask of slots a request may return, or ``None`` for every live example."""
        return self._columns.resolve(filter, exclude)

    def live_slots(self, mask: Mask | None) -> npt.NDArray[np.intp]:
        """Every live slot inside ``mask``, ascending."""
        return self._columns.live_slots(mask)

    def encode_queries(self, queries: Sequence[str]) -> Floats:
        """Validate and encode query texts (empty or whitespace-only queries raise)."""
        return self._encode(queries)

    def vector_search(self, queries: Floats, k: int, mask: Mask | None) -> tuple[Floats, Ints]:
        """Top-k live slots by cosine similarity, inside ``mask``; ``-1`` pads short rows."""
        cols = self._columns
        m = len(queries)
        scores = np.full((m, k), -np.inf, np.float32)
        slots = np.full((m, k), -1, np.int64)
        if k <= 0:
            return scores, slots
        allowed = None if mask is None else np.flatnonzero(mask)
        if not cols.keep_vectors:
            return self._search_on_disk(queries, k, allowed, scores, slots)
        if allowed is not None and len(allowed) <= EXACT_FILTER_LIMIT:
            found_scores, positions = exact_search(queries, cols.vectors[allowed], k)
            width = found_scores.shape[1]
            scores[:, :width] = found_scores
            slots[:, :width] = allowed[positions]
            return scores, slots
        vectors = self._vectors()
        if vectors.factory == "Flat" and (mask is not None or m >= EXACT_BATCH_MIN):
            # An exact index gains nothing from FAISS here: one BLAS product per block of queries
            # beats FAISS's per-query scan, and a mask needs no id selector.
            valid = mask if mask is not None else (cols.alive[: cols.n] if cols.dead else None)
            found_scores, positions = exact_search(queries, cols.vectors[: cols.n], k, valid=valid)
            width = found_scores.shape[1]
            scores[:, :width] = found_scores
            slots[:, :width] = positions
            return scores, slots
        allowed_rows = None if allowed is None else cols.rows[allowed]
        found_scores, rows = vectors.search(queries, k, allowed_rows=allowed_rows)
        valid = rows >= 0
        scores[valid] = found_scores[valid]
        slots[valid] = cols.slots_of_rows(rows[valid])
        return scores, slots

    def _search_on_disk(
        self,
        queries: Floats,
        k: int,
        allowed: npt.NDArray[np.intp] | None,
        scores: Floats,
        slots: Ints,
    ) -> tuple[Floats, Ints]:
        """:meth:`vector_search` where the columns keep no vectors: FAISS, re-scored exactly.

        A filter allowing few examples probes every list, so that it still finds k of them.
        """
        cols = self._columns
        found_scores, rows = self._vectors().search_refined(
            queries,
            k,
            self._stored,
            allowed_rows=None if allowed is None else cols.rows[allowed],
            exhaustive=allowed is not None and len(allowed) <= EXACT_FILTER_LIMIT,
        )
        valid = rows >= 0
        scores[valid] = found_scores[valid]
        slots[valid] = cols.slots_of_rows(rows[valid])
        return scores, slots

    def slot_vectors(self, slots: npt.ArrayLike) -> Floats:
        """The stored vectors at ``slots`` (any shape; one vector per entry)."""
        at = np.asarray(slots, np.intp)
        cols = self._columns
        if cols.keep_vectors:
            return cols.vectors[at]
        rows, where = np.unique(cols.rows[at.ravel()], return_inverse=True)
        return self._stored(rows)[where].reshape(*at.shape, cols.dim)

    def slot_text(self, slot: int) -> str:
        """The input text at ``slot``."""
        return self._columns.inputs[slot]

    def slot_text_code(self, slot: int) -> int:
        """A code equal for two slots exactly when their inputs are the same text."""
        return int(self._columns.text_codes[slot])

    def slot_labels(self, slots: Sequence[int]) -> list[str | None]:
        """The labels at ``slots`` (``None`` for an unlabelled example), in order."""
        codes = self._columns.label_codes
        names = self._columns.label_names
        return [None if (code := int(codes[s])) < 0 else names[code] for s in slots]

    def slot_rows(self, slots: npt.ArrayLike) -> Ints:
        """The store rows at ``slots`` (the keys of the lexical index)."""
        return self._columns.rows[np.asarray(slots, np.intp)]

    def slots_of_rows(self, rows: Ints) -> npt.NDArray[np.intp]:
        """The slots holding store ``rows``."""
        return self._columns.slots_of_rows(rows)

    def slots_matching_text(self, text: str) -> list[int]:
        """Live slots whose input equals ``text`` after :func:`~kshot.index.normalize_text`."""
        return self._columns.slots_matching_text(text)

    @property
    def lexical(self) -> LexicalIndex:
        """The lexical index over example inputs, built on first use and kept in step."""
        return self._lexical()

    def examples_at(self, slots: Sequence[int]) -> list[Example]:
        """The examples at ``slots``, in order."""
        rows = self._columns.rows
        return self._fetch([int(rows[s]) for s in slots])
