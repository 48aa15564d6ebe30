"""What a selector reads from an index: a small read-only view, not the index class.

Selectors depend on these protocols only, so the index needs to know nothing of selectors (it
satisfies them structurally) and a selector can run over any object that offers the same reads,
for example a test double or a future sharded index.

An index addresses its examples by *slot*: a position in its in-memory columns, tombstones of
deleted examples included, in insertion order. A :data:`~kshot.types.Mask` has one entry per
slot. Every read below is meant to run inside :meth:`IndexView.reading`, so that a request sees
one consistent state.

Selectors are built over an index, not over its view: ``build_selector(index, "mmr")`` and
``MMRSelector(index)`` take anything with a ``view`` (:class:`HasView`, as
:class:`~kshot.index.ExampleIndex` has) and read that, or an :class:`IndexView` itself (a test
double). :func:`view_of` is that one hand-over, so the index keeps its slot-level reads off its
own public API and the selectors never see the index class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol, cast

import numpy as np
import numpy.typing as npt

from kshot.types import Example, Filter, Mask

__all__ = ["HasView", "IndexView", "LexicalView", "RowResult", "view_of"]

#: ``(store rows, scores)`` of one lexical query, best first.
RowResult = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]


class LexicalView(Protocol):
    """The lexical index's reads: Jaccard and BM25 top-k, and document frequencies."""

    def jaccard_top_k_batch(
        self, queries: Sequence[str], k: int, *, allowed: npt.NDArray[np.int64] | None = None
    ) -> list[RowResult]:
        """Top-``k`` store rows by token-set Jaccard for each query, inside ``allowed`` rows."""
        ...

    def bm25_top_k_batch(
        self, queries: Sequence[str], k: int, *, allowed: npt.NDArray[np.int64] | None = None
    ) -> list[RowResult]:
        """Top-``k`` store rows by BM25 for each query, inside ``allowed`` rows."""
        ...

    def document_frequencies(self, tokens: Sequence[str]) -> dict[str, int]:
        """How many live documents hold each token."""
        ...


class IndexView(Protocol):
    """The reads selectors make; :attr:`kshot.index.ExampleIndex.view` provides them all."""

    def __len__(self) -> int:
        """How many live examples the index holds."""
        ...

    def reading(self) -> AbstractContextManager[None]:
        """Hold the index still (no write lands) while a request reads it."""
        ...

    def resolve(self, filter: Filter | None = None, exclude: Iterable[str] = ()) -> Mask | None:
        """The slots a request may return, or ``None`` for every live example."""
        ...

    def live_slots(self, mask: Mask | None) -> npt.NDArray[np.intp]:
        """Every live slot inside ``mask``, ascending."""
        ...

    def encode_queries(self, queries: Sequence[str]) -> npt.NDArray[np.float32]:
        """The queries' embeddings, L2-normalised, shape ``(len(queries), dim)``."""
        ...

    def vector_search(
        self, queries: npt.NDArray[np.float32], k: int, mask: Mask | None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Top-``k`` live slots by cosine similarity inside ``mask``; ``-1`` pads short rows."""
        ...

    def slot_matrix(
        self,
    ) -> tuple[object, int, Callable[[int, int], npt.NDArray[np.float32]], Mask | None] | None:
        """``(owner, n, read, alive)`` of every slot when the vector index is exact, else ``None``.

        ``n`` slots (tombstones included); ``read(start, stop)`` gives the vectors of slots
        ``start..stop`` (zeros at tombstones); ``alive`` marks the live slots (``None``: all of
        them). The vectors below a given count never change while ``owner`` (a hashable,
        weak-referenceable object) stays the same, so a layout derived from them can be cached
        under it and extended as slots are appended.
        """
        ...

    def slot_vectors(self, slots: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """The stored embeddings at ``slots``."""
        ...

    def slot_text(self, slot: int) -> str:
        """The input text at ``slot``."""
        ...

    def slot_labels(self, slots: Sequence[int]) -> list[str | None]:
        """The labels at ``slots`` (``None`` for an unlabelled example), in order."""
        ...

    def slot_rows(self, slots: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """The store rows at ``slots`` (the keys of the lexical index)."""
        ...

    def slots_of_rows(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
        """The slots holding store ``rows``."""
        ...

    def slot_text_code(self, slot: int) -> int:
        """A code equal for two slots exactly when their inputs are the same text.

        "The same text" is equality after ``normalize_text``, computed once per example when it is
        indexed, not once per candidate per query.
        """
        ...

    def slots_matching_text(self, text: str) -> list[int]:
        """Live slots whose input equals ``text`` after ``normalize_text``."""
        ...

    @property
    def lexical(self) -> LexicalView:
        """The lexical index over the example inputs."""
        ...

    def examples_at(self, slots: Sequence[int]) -> list[Example]:
        """The examples at ``slots``, in order."""
        ...


class HasView(Protocol):
    """An index that hands selectors its view."""

    @property
    def view(self) -> IndexView:
        """The slot-level reads of this index."""
        ...


def view_of(index: IndexView | HasView) -> IndexView:
    """The view a selector reads: ``index.view`` where there is one, else ``index`` itself."""
    view = getattr(index, "view", None)
    return cast(IndexView, index if view is None else view)
