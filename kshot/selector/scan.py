"""The small-index fast path: a scan of byte codes that provably keeps the exact top-n.

On a small exact index one query's cost is mostly the scan of every stored vector: 15 MB of
float32 at 10k x 384, read once per query. Here the selectors scan byte codes of the vectors
instead (:mod:`kshot.selector.codes`: a quarter of the bytes, FAISS's integer SIMD arithmetic),
keep a generous candidate set, and re-score the candidates exactly from the stored vectors.

The candidates are proven to hold the exact top-n. Each approximate score is within a margin of
the exact one, computed per query from the recorded quantisation residuals. Say the scan kept
the ``m`` best by approximate score. Every vector left out scores at most the ``m``-th
approximate score plus the margin; when that bound is below the ``n``-th best exact score
among the candidates, no vector left out can reach the top-n, ties included. Otherwise
the scan asks again for :data:`_WIDEN` times more candidates, up to every allowed vector.
So the result is the exact top-n by the re-computed score, ties by slot (insertion order),
whatever the codes' rounding.

For an exact index of at most :data:`SCAN_MAX_CODES` vector entries, the codes are built on the
first query (:func:`codes_for`), extended as slots are appended, and dropped with the index.
Batches of :data:`SCAN_MAX_QUERIES` or more go to the index's own search, whose matrix products
over blocks of queries do well. Narrow filters go to the index too, which gathers the few
allowed vectors.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from kshot.selector.codes import ByteCodes, QueryCodes
from kshot.selector.view import IndexView
from kshot.types import Mask

__all__ = [
    "SCAN_MAX_CODES",
    "SCAN_MAX_QUERIES",
    "BoundedScan",
    "codes_for",
    "exact_scan",
    "rescored",
]

#: Indexes with more vector entries than this (64 MiB of byte codes) are searched by the index.
SCAN_MAX_CODES = 1 << 26
#: Batches of at least this many queries are searched by the index (BLAS blocks of queries).
SCAN_MAX_QUERIES = 8
#: A filter letting through fewer than one slot in this many: the index gathers those instead.
_NARROW_FILTER = 8
#: Candidates kept beyond the ``n`` asked for. At 10k real MiniLM vectors and n = 8 the proof
#: needed at most 26 (300 held-out queries), so one pass nearly always settles a query.
_EXTRA = 32
#: How much wider each further pass is, for a query the first did not settle.
_WIDEN = 4

Floats = npt.NDArray[np.float32]
Doubles = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

_NO_SLOT = np.iinfo(np.int64).max
_GATHER_FLOATS = 1 << 24  # 64 MiB of float32 candidate vectors per block

_CODES: weakref.WeakKeyDictionary[object, ByteCodes] = weakref.WeakKeyDictionary()
_CODES_LOCK = threading.Lock()


def codes_for(owner: object, n: int, read: Callable[[int, int], Floats]) -> ByteCodes:
    """The byte codes of slots ``0..n``, cached by ``owner``.

    Slots only grow and a slot's vector never changes for one owner (see
    :meth:`~kshot.selector.view.IndexView.slot_matrix`), so cached codes are extended by the new
    slots, read with ``read``, not rebuilt, unless the new vectors fall outside the coded ranges.
    An extension is a new object: a search running on the old one is not disturbed.
    """
    codes = _CODES.get(owner)
    if codes is not None and codes.n == n:  # the usual case: nothing appended since
        return codes
    with _CODES_LOCK:
        codes = _CODES.get(owner)
        if codes is not None and codes.n < n:
            codes = codes.extended(read(codes.n, n))
        if codes is None or codes.n != n:
            codes = ByteCodes.build(read(0, n))
        _CODES[owner] = codes
        return codes


class BoundedScan:
    """The exact top-n of a few queries over one index's codes; :meth:`top` at any depth."""

    __slots__ = ("_allowed", "_codes", "_index", "_queries", "_valid", "_vectors")

    def __init__(
        self,
        index: IndexView,
        codes: ByteCodes,
        vectors: Floats,
        valid: Mask | None,
        allowed: int,
    ) -> None:
        self._index = index
        self._codes = codes
        self._vectors = vectors
        self._queries: QueryCodes = codes.queries(vectors)
        self._valid = valid
        self._allowed = allowed

    def top(self, n: int) -> tuple[Doubles, Ints]:
        """Exact top-``n`` per query: float64 scores and slots, best first, ties by slot.

        ``-1`` slots (score ``-inf``) pad rows with fewer than ``n`` allowed slots.
        """
        if n <= 0 or not self._allowed:
            shape = (len(self._vectors), max(n, 0))
            return np.full(shape, -np.inf), np.full(shape, -1, np.int64)
        m = min(self._allowed, n + _EXTRA)
        scores, slots, settled = self._pass(slice(None), m, n)
        while settled is not None and not settled.all():
            todo = np.flatnonzero(~settled)
            m = min(self._allowed, m * _WIDEN)
            scores[todo], slots[todo], again = self._pass(todo, m, n)
            settled[todo] = True if again is None else again
        return scores, slots

    def _pass(
        self, which: slice | Ints, m: int, n: int
    ) -> tuple[Doubles, Ints, npt.NDArray[np.bool_] | None]:
        """The ``m`` best candidates by code of queries ``which``, re-scored, cut to ``n``.

        Also says which queries the candidates settle (``None``: all of them, as every allowed
        slot was a candidate).
        """
        queries = self._queries
        coded, found = self._codes.search(queries.bytes[which], m, self._valid)
        # At most as many candidates as allowed slots: FAISS pads nothing.
        exact, ranked = rescored(self._index, self._vectors[which], found, padded=False)
        settled = None
        if m < self._allowed:
            # Everything left out scores at most the m-th approximate score plus the margin.
            bound = queries.offset[which] + queries.alpha[which] * coded[:, m - 1]
            settled = bound + queries.margin[which] < exact[:, n - 1]
        if m < n:  # fewer allowed slots than asked for: pad
            pad = ((0, 0), (0, n - m))
            exact = np.pad(exact, pad, constant_values=-np.inf)
            ranked = np.pad(ranked, pad, constant_values=-1)
        return exact[:, :n], ranked[:, :n], settled


def exact_scan(index: IndexView, vectors: Floats, mask: Mask | None) -> BoundedScan | None:
    """The scan of ``vectors`` over every slot inside ``mask``, where the fast path applies.

    ``None`` (search the index instead) for an approximate or large index, for a batch of
    :data:`SCAN_MAX_QUERIES` or more queries, and for a filter so narrow that gathering the few
    allowed vectors costs less than scanning all of them.
    """
    if len(vectors) >= SCAN_MAX_QUERIES:
        return None
    found = index.slot_matrix()
    if found is None:
        return None
    owner, n, read, alive = found
    if n * vectors.shape[1] > SCAN_MAX_CODES or n == 0:
        return None
    valid = mask if mask is not None else alive
    allowed = n if valid is None else int(np.count_nonzero(valid))
    if mask is not None and allowed * _NARROW_FILTER < n:
        return None
    codes = codes_for(owner, n, read)
    queries = np.ascontiguousarray(vectors, dtype=np.float32)
    return BoundedScan(index, codes, queries, valid, allowed)


def rescored(
    index: IndexView, vectors: Floats, slots: Ints, *, padded: bool = True
) -> tuple[Doubles, Ints]:
    """Candidate ``slots`` (``-1``: none) with exact float64 scores, best first, ties by slot.

    The scores are element-wise products of the stored float32 vectors, summed in float64, so a
    query's scores depend neither on the batch it came in nor on the path that found them.
    ``padded=False`` promises that no slot is ``-1`` (the checks are skipped).
    """
    valid = slots >= 0 if padded else None
    if valid is not None and valid.all():
        valid = None  # nothing padded after all
    wanted = slots if valid is None else np.where(valid, slots, 0)
    # Gather candidate vectors a block of queries at a time: (m, n, d) at once can be gigabytes.
    step = max(1, _GATHER_FLOATS // max(1, slots.shape[1] * vectors.shape[1]))
    if len(slots) <= step:
        scores = _products(index.slot_vectors(wanted), vectors)
    else:
        scores = np.empty(slots.shape)
        for start in range(0, len(slots), step):
            block = slice(start, start + step)
            scores[block] = _products(index.slot_vectors(wanted[block]), vectors[block])
    if valid is None:
        order = np.lexsort((slots, -scores))
    else:
        scores[~valid] = -np.inf
        order = np.lexsort((np.where(valid, slots, _NO_SLOT), -scores))
    rows = np.arange(len(slots))[:, None]
    return scores[rows, order], slots[rows, order]


def _products(candidates: Floats, vectors: Floats) -> Doubles:
    """``(m, n)`` float64 dot products of ``(m, n, d)`` candidates with ``(m, d)`` queries."""
    out: Doubles = np.vecdot(candidates, vectors[:, None, :], dtype=np.float64)
    return out
