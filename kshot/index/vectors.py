"""The FAISS vector index: a cache of the stored embeddings, keyed by store row.

Inner product over L2-normalised vectors (cosine similarity). The index type is a FAISS factory
string (:mod:`kshot.index.factories`): exact ``Flat`` below
:data:`~kshot.index.factories.APPROX_THRESHOLD` vectors, an inverted-file index above, or a
compressed one (``SQ8``, ``IVF1024,PQ48``, ...) when asked for.
:func:`~kshot.index.vector_build.build_vectors` builds (trains, fills and tunes) one from the
stored embeddings; :meth:`VectorIndex.tune` is the tuning of ``nprobe`` to a recall target.

A compressed index returns :data:`REFINE` times the asked-for candidates, which the caller
re-scores with the exact vectors (:meth:`VectorIndex.search_refined`). A file read with
``mmap`` stays on disk, paged in by the OS; FAISS cannot change a mapped index (it aborts the
process), so the first add or remove copies it into memory.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from kshot._ranking import top_k
from kshot.errors import ConfigError, IndexFormatError
from kshot.index.factories import (
    APPROX_THRESHOLD,
    choose_factory,
    fit_factory,
    holds_vectors,
    is_compressed,
    validate_factory,
)

__all__ = [
    "APPROX_THRESHOLD",
    "REFINE",
    "SCORE_BLOCK_FLOATS",
    "VectorIndex",
    "caller_threads",
    "choose_factory",
    "exact_search",
    "faiss_threads",
    "fit_factory",
    "threads_for",
]

logger = logging.getLogger(__name__)

#: The fewest inverted lists an IVF search probes, whatever build-time tuning measured.
MIN_NPROBE = 16
#: Candidates per result a compressed index returns for exact re-scoring: its codes misrank
#: neighbours that lie close together, and re-scoring a few times more of them recovers most.
REFINE = 4
#: A compressed IVF index stops doubling ``nprobe`` once recall gains less than this: its codes
#: bound the recall, so probing more lists would only cost time.
_PLATEAU = 0.005
_PARALLEL_MIN_QUERIES = 16
#: The score-matrix block of an exact scan (exact_search, held_out_neighbours): 64 MiB of float32.
SCORE_BLOCK_FLOATS = 1 << 24
#: k-means iterations of the IVF lists' training, FAISS's 25 cut to 10: on the speed benchmark's
#: corpus (300k, IVF1024) recall@10 on held-out queries was the same at every nprobe (0.953 and
#: 0.957 at nprobe 16) for half the training time, a third of a 1M build before.
_KMEANS_ITERATIONS = 10

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]
#: Exact vectors of store rows (sorted, unique), one row each.
VectorsOf = Callable[[Ints], Floats]


def exact_search(
    queries: Floats, vectors: Floats, k: int, *, valid: npt.NDArray[np.bool_] | None = None
) -> tuple[Floats, npt.NDArray[np.int64]]:
    """Exact top-k inner product of each query against ``vectors``; ties by lower position.

    Rows of ``vectors`` outside ``valid`` are never returned. Queries go through in blocks, so a
    batch costs one matrix product per block (BLAS), not one scan per query. Returns
    ``(scores, positions)`` of shape ``(m, min(k, candidates))``.
    """
    n = vectors.shape[0]
    k = min(k, n if valid is None else int(valid.sum()))
    m = len(queries)
    scores_out = np.empty((m, k), np.float32)
    positions = np.empty((m, k), np.int64)
    if k == 0:
        return scores_out, positions
    step = max(1, SCORE_BLOCK_FLOATS // max(n, 1))
    for start in range(0, m, step):
        block = queries[start : start + step] @ vectors.T
        if valid is not None:
            block[:, ~valid] = -np.inf
        picked = top_k(block, k)
        positions[start : start + step] = picked
        scores_out[start : start + step] = np.take_along_axis(block, picked, axis=1)
    return scores_out, positions


@contextlib.contextmanager
def threads_for(n_queries: int) -> Iterator[None]:
    """Run FAISS on one thread for a handful of queries.

    A single query's scan is too short to share: OpenMP's hand-off and spinning threads cost more
    than they save, and on a busy machine they cost 10-50x (measured). The OpenMP thread count
    is per calling thread, so concurrent searches in other threads are unaffected.
    """
    if n_queries >= _PARALLEL_MIN_QUERIES:
        yield
        return
    with faiss_threads(1):
        yield


def caller_threads() -> int:
    """The FAISS (OpenMP) thread count set for the calling thread.

    OpenMP keeps the count per thread and a new thread starts from the process default, so work
    handed to another thread runs under :func:`faiss_threads` of this to keep the caller's
    ``faiss.omp_set_num_threads``.
    """
    return int(faiss.omp_get_max_threads())


@contextlib.contextmanager
def faiss_threads(n: int) -> Iterator[None]:
    """Run FAISS on ``n`` threads in the calling thread, restoring its count after."""
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


@dataclass
class SearchStats:
    """What build-time tuning measured, recorded in the manifest."""

    nprobe: int | None = None
    recall_at_10: float | None = None


class VectorIndex:
    """A FAISS index of unit vectors keyed by int64 store rows."""

    def __init__(
        self, index: Any, factory: str, *, nprobe: int | None = None, mapped: bool = False
    ) -> None:
        self._index = index
        self.factory = factory
        self.nprobe = nprobe
        self.mapped = mapped
        self._dead: set[int] = set()
        self._lock = threading.Lock()
        self._flat: tuple[Any, Any] | bool | None = False  # False: not looked at yet

    @classmethod
    def create(cls, dim: int, factory: str) -> VectorIndex:
        """Make an empty index from a FAISS factory string (``Flat``, ``IVF1024,PQ48``, ...)."""
        validate_factory(factory, dim)
        description = factory if factory.startswith("IVF") else f"IDMap2,{factory}"
        try:
            index = faiss.index_factory(dim, description, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise ConfigError(
                f"FAISS cannot build factory string {factory!r}: {str(exc).splitlines()[0]}; "
                "try 'Flat', 'IVF1024,Flat', 'HNSW32,Flat', 'SQ8' or 'IVF1024,PQ48'"
            ) from exc
        _keep_direct_map(index)
        return cls(index, factory)

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self._index.d)

    @property
    def ntotal(self) -> int:
        """How many vectors the index holds (deleted ones included where FAISS cannot remove)."""
        return int(self._index.ntotal)

    @property
    def nlist(self) -> int:
        """How many inverted lists an IVF index has (1 for other index types)."""
        if not self.factory.startswith("IVF"):
            return 1
        return int(faiss.extract_index_ivf(self._index).nlist)

    @property
    def exact(self) -> bool:
        """Whether every search finds the true neighbours (a flat scan of exact vectors)."""
        return self.factory == "Flat"

    @property
    def compressed(self) -> bool:
        """Whether the index ranks by lossy codes (its callers re-score with exact vectors)."""
        return is_compressed(self.factory)

    @property
    def holds_exact_vectors(self) -> bool:
        """Whether FAISS holds every vector exactly in memory (not compressed, not mapped).

        Then the selectors re-score from it (the one in-memory copy of the vectors); otherwise
        they read their candidates' exact vectors from the store.
        """
        return holds_vectors(self.factory, self.mapped)

    @property
    def refine(self) -> int:
        """Candidates per result :meth:`search_refined` asks FAISS for."""
        return REFINE if self.compressed else 1

    @property
    def is_trained(self) -> bool:
        """Whether the index needs no (more) training."""
        return bool(self._index.is_trained)

    def train(self, sample: Floats) -> None:
        """Train an approximate index on a sample of vectors."""
        if not self.is_trained:
            if self.factory.startswith("IVF"):
                faiss.extract_index_ivf(self._index).cp.niter = _KMEANS_ITERATIONS
            self._index.train(np.ascontiguousarray(sample, dtype=np.float32))

    def add(self, rows: Ints, vectors: Floats) -> None:
        """Add vectors under their rows."""
        if vectors.shape[1] != self.dim:
            raise ConfigError(
                f"vectors have dimension {vectors.shape[1]}, the index holds dimension {self.dim}"
            )
        with self._lock:
            self._own()
            self._index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32),
                np.ascontiguousarray(rows, dtype=np.int64),
            )

    @property
    def quantizer(self) -> Any:
        """The trained coarse quantizer of a bare IVF index, else ``None``.

        "Bare": the index is the IVF itself, with no transform before it (``OPQ16,IVF...``),
        so a vector's list is the quantizer's answer for the vector as given.
        """
        top = faiss.downcast_index(self._index)
        if not isinstance(top, faiss.IndexIVF) or not self.is_trained:
            return None
        return top.quantizer

    def add_assigned(self, rows: Ints, vectors: Floats, lists: Ints) -> None:
        """Add vectors to the IVF lists given (their :attr:`quantizer` answers, computed ahead).

        The second half of FAISS's own ``add``, whose first half is the assignment: see
        :mod:`kshot.index.assign`.
        """
        ivf: Any = faiss.downcast_index(self._index)  # an IndexIVF, unlike its stub's Index
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.ascontiguousarray(rows, dtype=np.int64)
        assigned = np.ascontiguousarray(lists, dtype=np.int64)
        with self._lock:
            self._own()
            ivf.add_core(len(x), faiss.swig_ptr(x), faiss.swig_ptr(ids), faiss.swig_ptr(assigned))

    def reconstruct(self, rows: Ints) -> Floats:
        """The vectors held under ``rows``, in order; every row must be held.

        The index is the one in-memory copy of the vectors (the columns keep none), so the
        selectors' re-scoring reads them here: IDMap2 and IVF indexes look a row up directly.
        """
        keys = np.ascontiguousarray(rows, dtype=np.int64).ravel()
        if not len(keys):
            return np.empty((0, self.dim), np.float32)
        return np.asarray(self._index.reconstruct_batch(keys), dtype=np.float32)

    def flat_matrix(self) -> tuple[Ints, Floats] | None:
        """An exact index's rows and vectors by position, as views of FAISS's own arrays.

        ``None`` for other index types. The views are valid until the next add or remove, so
        callers use them inside the index's read lock; no copy is made.
        """
        if self._flat is False:
            # Looked up once: a downcast makes a new SWIG wrapper each time (microseconds).
            top: Any = faiss.downcast_index(self._index)
            within = faiss.downcast_index(top.index) if isinstance(top, faiss.IndexIDMap2) else None
            self._flat = (top, within) if isinstance(within, faiss.IndexFlat) else None
        if not isinstance(self._flat, tuple):
            return None
        outer, inner = self._flat
        n = int(outer.ntotal)
        if n == 0:
            return np.empty(0, np.int64), np.empty((0, self.dim), np.float32)
        rows = faiss.rev_swig_ptr(outer.id_map.data(), n)
        matrix = faiss.rev_swig_ptr(inner.get_xb(), n * self.dim).reshape(n, self.dim)
        return rows, matrix

    def _own(self) -> None:
        """Copy a memory-mapped index into memory: FAISS aborts on changing a mapped one."""
        if self.mapped:
            logger.info("copying the memory-mapped %s index into memory to change it", self.factory)
            self._index = faiss.deserialize_index(faiss.serialize_index(self._index))
            _keep_direct_map(self._index)
            self._flat = False  # the wrappers flat_matrix cached belong to the mapped copy
            self.mapped = False

    def row_ids(self) -> Ints | None:
        """The sorted rows the index holds (hidden ones left out), or ``None`` if unlistable."""
        index = faiss.downcast_index(self._index)
        if hasattr(index, "id_map"):
            held = faiss.vector_to_array(index.id_map).astype(np.int64)
        else:
            try:
                ivf = faiss.extract_index_ivf(self._index)
            except RuntimeError:
                return None
            lists: Any = ivf.invlists
            parts = [np.empty(0, np.int64)]
            for i in range(ivf.nlist):
                size = lists.list_size(i)
                if size:
                    ids = lists.get_ids(i)
                    parts.append(faiss.rev_swig_ptr(ids, size).astype(np.int64))
                    lists.release_ids(i, ids)
            held = np.concatenate(parts)
        held = np.sort(held)
        if self._dead:
            held = np.setdiff1d(held, np.fromiter(self._dead, np.int64, len(self._dead)))
        return held

    def remove(self, rows: Ints) -> None:
        """Remove rows; index types that cannot remove hide them from searches instead."""
        with self._lock:
            self._own()
            try:
                self._index.remove_ids(np.ascontiguousarray(rows, dtype=np.int64))
            except RuntimeError:
                self._dead.update(int(r) for r in rows)

    def search(
        self,
        queries: Floats,
        k: int,
        *,
        allowed_rows: Ints | None = None,
        excluded_rows: Ints | None = None,
        exhaustive: bool = False,
    ) -> tuple[Floats, Ints]:
        """Top-k rows per query by FAISS's scores (``-1`` pads short rows).

        Results lie inside ``allowed_rows`` when given, and never in ``excluded_rows``.
        ``exhaustive`` probes every inverted list, so that a search inside a few allowed rows
        finds them wherever they lie.
        """
        selector: Any = None
        hidden = np.fromiter(self._dead, dtype=np.int64, count=len(self._dead))
        if excluded_rows is not None:
            hidden = np.concatenate([hidden, np.asarray(excluded_rows, np.int64)])
        if allowed_rows is not None:
            allowed = np.asarray(allowed_rows, np.int64)
            if len(hidden):
                allowed = np.setdiff1d(allowed, hidden)
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed))
        elif len(hidden):
            selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.ascontiguousarray(hidden)))
        # `selector` stays referenced here for the whole search, as FAISS requires.
        params: Any = None
        if self.factory.startswith("IVF"):
            params = faiss.SearchParametersIVF()
            params.nprobe = self.nlist if exhaustive else self.nprobe or 1
        elif selector is not None:
            params = faiss.SearchParameters()
        if selector is not None:
            params.sel = selector
        with threads_for(len(queries)):
            scores, rows = self._index.search(
                np.ascontiguousarray(queries, dtype=np.float32), k, params=params
            )
        return scores.astype(np.float32), rows.astype(np.int64)

    def search_refined(
        self,
        queries: Floats,
        k: int,
        vectors_of: VectorsOf | None,
        *,
        allowed_rows: Ints | None = None,
        excluded_rows: Ints | None = None,
        exhaustive: bool = False,
    ) -> tuple[Floats, Ints]:
        """Top-k rows per query by exact score among :attr:`refine` times k FAISS candidates.

        ``vectors_of`` gives the exact vectors of the candidate rows; the scores returned are
        theirs, ties to the lower row. Without it, or for an index that needs no re-scoring
        (:attr:`refine` 1), this is :meth:`search`. ``-1`` pads short rows (score ``-inf``).
        """
        if vectors_of is None or self.refine == 1:
            return self.search(
                queries,
                k,
                allowed_rows=allowed_rows,
                excluded_rows=excluded_rows,
                exhaustive=exhaustive,
            )
        _, rows = self.search(
            queries,
            k * self.refine,
            allowed_rows=allowed_rows,
            excluded_rows=excluded_rows,
            exhaustive=exhaustive,
        )
        valid = rows >= 0
        found = np.unique(rows[valid])
        scores = np.full(rows.shape, -np.inf, np.float32)
        if len(found):
            exact = vectors_of(found)
            where = np.searchsorted(found, np.where(valid, rows, found[0]))
            scores = np.einsum("mnd,md->mn", exact[where], queries).astype(np.float32)
            scores[~valid] = -np.inf
        order = np.lexsort((np.where(valid, rows, np.iinfo(np.int64).max), -scores), axis=-1)
        order = order[:, :k]
        return np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)

    def tune(
        self,
        queries: Floats,
        exact_rows: Ints,
        k: int,
        target: float,
        *,
        vectors_of: VectorsOf | None = None,
        held_out: Ints | None = None,
    ) -> SearchStats:
        """Measure recall@k against ``exact_rows``; an IVF index raises ``nprobe`` to ``target``.

        An exact index is not measured (its recall is 1); the others, graphs included, are.

        The recall is that of :meth:`search_refined` (what selectors get) with ``vectors_of``
        giving exact vectors, or of FAISS's own ranking without it. When ``queries`` are stored
        vectors, pass their rows as ``held_out``: they are hidden from the search (and must be
        absent from ``exact_rows``), since a query that can find itself, in the very list it was
        assigned to, overstates the recall of new queries. A compressed IVF index stops where
        more lists stop helping.
        """

        def recall_now() -> float:
            _, found = self.search_refined(queries, k, vectors_of, excluded_rows=held_out)
            hits = sum(len(set(a) & set(b)) for a, b in zip(found, exact_rows, strict=True))
            return hits / exact_rows.size

        if not self.factory.startswith("IVF"):
            if self.exact:
                return SearchStats()
            recall = recall_now()
            logger.info("measured %s: recall@%d %.3f", self.factory, k, recall)
            return SearchStats(recall_at_10=recall)
        nlist = self.nlist
        # Held-out rows still overstate recall on corpora full of near-duplicates (their twins
        # share a list); probing at least MIN_NPROBE lists costs little and guards against it.
        nprobe = min(nlist, MIN_NPROBE)
        previous: tuple[int, float] | None = None
        while True:
            self.nprobe = nprobe
            recall = recall_now()
            if recall >= target or nprobe >= nlist:
                break
            if self.compressed and previous is not None and recall - previous[1] < _PLATEAU:
                nprobe, recall = previous
                self.nprobe = nprobe
                break
            previous = (nprobe, recall)
            nprobe = min(nlist, nprobe * 2)
        logger.info("tuned %s: nprobe %d, recall@%d %.3f", self.factory, nprobe, k, recall)
        return SearchStats(nprobe=nprobe, recall_at_10=recall)

    def save(self, path: Path) -> None:
        """Write the index to ``path`` (the caller makes the write atomic)."""
        if self._dead:
            raise ConfigError(
                f"{self.factory} cannot remove vectors; rebuild the index before saving"
            )
        faiss.write_index(self._index, str(path))

    @classmethod
    def load(
        cls, path: Path, factory: str, *, nprobe: int | None = None, mmap: bool = False
    ) -> VectorIndex:
        """Read an index file, or map it (``mmap``: its codes stay on disk, paged in on use).

        A file FAISS cannot read raises :class:`IndexFormatError`.
        """
        try:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mmap else 0)
        except RuntimeError as exc:
            raise IndexFormatError(f"{path} is not a readable FAISS index") from exc
        if not mmap:  # a mapped index reads exact vectors from the store, not from FAISS
            _keep_direct_map(index)
        return cls(index, factory, nprobe=nprobe, mapped=mmap)


def _keep_direct_map(index: Any) -> None:
    """Let an IVF index look vectors up by row (:meth:`VectorIndex.reconstruct`).

    A hash table (row -> list and offset, about 40 bytes a row), since rows are not 0..n-1; a
    file written without one gets it on load. Other index types need nothing.
    """
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return
    direct: Any = getattr(faiss, "DirectMap")  # noqa: B009 (not in faiss's type stubs)
    if ivf.direct_map.type == direct.NoMap:
        ivf.set_direct_map_type(direct.Hashtable)
