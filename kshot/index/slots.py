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

from kshot.index.columns import Columns, text_code
from kshot.index.filters import normalize_text
from kshot.index.lexical import LexicalIndex
from kshot.index.vectors import VectorIndex, exact_search
from kshot.types import Example, Filter, Mask

__all__ = ["EXACT_FILTER_LIMIT", "SlotView"]

Floats = npt.NDArray[np.float32]
#: ``read(start, stop)``: the vectors of a range of slots.
SlotReader = Callable[[int, int], Floats]
Ints = npt.NDArray[np.int64]

#: Filtered searches over at most this many allowed examples scan them exactly in numpy.
EXACT_FILTER_LIMIT = 50_000


class SlotView:
    """Slot-level reads of one index, for selectors; call them inside :meth:`reading`."""

    __slots__ = (
        "_columns",
        "_encode",
        "_fetch",
        "_lexical",
        "_reading",
        "_slots_of_ids",
        "_stored",
        "_texts",
        "_vectors",
    )

    def __init__(
        self,
        columns: Columns,
        *,
        reading: Callable[[], AbstractContextManager[None]],
        encode: Callable[[Sequence[str]], Floats],
        vectors: Callable[[], VectorIndex],
        fetch: Callable[[list[int]], list[Example]],
        texts: Callable[[list[int]], list[str]],
        slots_of_ids: Callable[[Iterable[str]], list[int]],
        lexical: Callable[[], LexicalIndex],
        stored_vectors: Callable[[Ints], Floats],
    ) -> None:
        self._columns = columns
        self._reading = reading
        self._encode = encode
        self._vectors = vectors
        self._fetch = fetch
        self._texts = texts
        self._slots_of_ids = slots_of_ids
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
        return self._columns.resolve(filter, self._slots_of_ids(exclude) if exclude else ())

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
        vectors = self._vectors()
        allowed = None if mask is None else np.flatnonzero(mask)
        if not vectors.holds_exact_vectors:
            return self._search_on_disk(queries, k, allowed, scores, slots)
        if allowed is not None and len(allowed) <= EXACT_FILTER_LIMIT:
            found = vectors.reconstruct(cols.rows[allowed])
            found_scores, positions = exact_search(queries, found, k)
            width = found_scores.shape[1]
            scores[:, :width] = found_scores
            slots[:, :width] = allowed[positions]
            return scores, slots
        flat = vectors.flat_matrix()
        if flat is not None:
            # An exact index gains nothing from FAISS's own search: one BLAS product per block
            # of queries, over FAISS's array itself (no copy), beats its per-query scan, and a
            # mask needs no id selector. Positions map to slots through their rows.
            held, matrix = flat
            valid = None if mask is None else mask[cols.slots_of_rows(held)]
            found_scores, positions = exact_search(queries, matrix, k, valid=valid)
            width = found_scores.shape[1]
            scores[:, :width] = found_scores
            slots[:, :width] = cols.slots_of_rows(held[positions])
            return scores, slots
        allowed_rows = None if allowed is None else cols.rows[allowed]
        found_scores, rows = vectors.search(queries, k, allowed_rows=allowed_rows)
        valid_rows = rows >= 0
        scores[valid_rows] = found_scores[valid_rows]
        slots[valid_rows] = cols.slots_of_rows(rows[valid_rows])
        return scores, slots

    def slot_matrix(self) -> tuple[object, int, SlotReader, Mask | None] | None:
        """Every slot's vector for an exact scan, or ``None`` where the vector index is not exact.

        ``(owner, n, read, alive)``: ``n`` slots, tombstones included; ``read(start, stop)`` the
        vectors of slots ``start..stop`` (zeros at tombstones, read from FAISS: the columns hold
        no vectors); ``alive`` the live slots (``None`` when all are live). ``owner`` is the same
        object for as long as a slot's vector cannot change (slots only grow), so a selector can
        cache a layout and read only the slots appended since.
        """
        vectors = self._vectors()
        if vectors.factory != "Flat" or not vectors.holds_exact_vectors:
            return None
        cols = self._columns
        n = cols.n
        return cols, n, self._read_slots, cols.alive[:n] if cols.dead else None

    def _read_slots(self, start: int, stop: int) -> Floats:
        return self.slot_vectors(np.arange(start, stop))

    def slot_vectors(self, slots: npt.ArrayLike) -> Floats:
        """The exact stored vectors at ``slots`` (any shape; zeros at tombstones).

        Read from FAISS where it holds them exactly in memory (the columns keep no copy), else
        (compressed or memory-mapped indexes) from the store.
        """
        cols = self._columns
        wanted = np.asarray(slots, np.intp)
        # Without tombstones every slot is held: no liveness gather, no zero-filled copy.
        held = cols.alive[wanted] if cols.dead else None
        if held is not None and not held.all():
            out = np.zeros((*wanted.shape, cols.dim), np.float32)
            if held.any():
                out[held] = self._exact_vectors(wanted[held])
            return out
        return self._exact_vectors(wanted.ravel()).reshape(*wanted.shape, cols.dim)

    def _exact_vectors(self, slots: npt.NDArray[np.intp]) -> Floats:
        """The vectors of live ``slots`` (1-D): from FAISS where it holds them, else the store."""
        rows = self._columns.rows[slots]
        vectors = self._vectors()
        if vectors.holds_exact_vectors:
            return vectors.reconstruct(rows)
        unique, where = np.unique(rows, return_inverse=True)
        found: Floats = self._stored(unique)[where]
        return found

    def _search_on_disk(
        self,
        queries: Floats,
        k: int,
        allowed: npt.NDArray[np.intp] | None,
        scores: Floats,
        slots: Ints,
    ) -> tuple[Floats, Ints]:
        """:meth:`vector_search` where FAISS holds no exact vectors: its candidates re-scored.

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

    def slot_text(self, slot: int) -> str:
        """The input text at ``slot``, read from the store (texts are not kept in memory)."""
        return self._texts([int(self._columns.rows[slot])])[0]

    def slot_text_code(self, slot: int) -> int:
        """A code equal for two slots exactly when their inputs are the same text."""
        return int(self._columns.texts.values[slot])

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
        slots = self._columns.slots_with_text_code(text_code(text))
        if not slots:
            return slots
        # A code match is a text match but for a hash collision: the store's texts settle it.
        key = normalize_text(text)
        texts = self._texts([int(r) for r in self._columns.rows[slots]])
        return [s for s, found in zip(slots, texts, strict=True) if normalize_text(found) == key]

    @property
    def lexical(self) -> LexicalIndex:
        """The lexical index over example inputs, built on first use and kept in step."""
        return self._lexical()

    def examples_at(self, slots: Sequence[int]) -> list[Example]:
        """The examples at ``slots``, in order."""
        rows = self._columns.rows
        return self._fetch([int(rows[s]) for s in slots])
