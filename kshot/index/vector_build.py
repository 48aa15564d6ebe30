"""Building a vector index from the stored embeddings: train, fill, tune, the same way every time.

:func:`build_vectors` is what a build and every rebuild (a load whose vector file lags or is
lost, a compaction) run, as :class:`BuildParams` records in the manifest. It trains an IVF index
on a seeded sample, fills it (other threads may share the assignment to lists:
:mod:`kshot.index.assign`), and tunes ``nprobe`` on held-out stored rows against their exact
neighbours (:func:`held_out_neighbours`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kshot._ranking import top_k
from kshot.index.assign import SharedAssignment
from kshot.index.factories import fit_factory
from kshot.index.vectors import SCORE_BLOCK_FLOATS, VectorIndex

__all__ = ["BuildParams", "build_vectors", "held_out_neighbours"]

logger = logging.getLogger(__name__)

#: Held-out stored rows the build measures recall@10 on (their exact neighbours cost one pass
#: over the corpus).
_RECALL_QUERIES = 200

Floats = npt.NDArray[np.float32]


def held_out_neighbours(
    queries: Floats, vectors: Floats, k: int, hidden: npt.NDArray[np.intp]
) -> npt.NDArray[np.int64]:
    """Positions of each query's exact top-k among ``vectors`` outside ``hidden``, best first.

    The positions :func:`~kshot.index.vectors.exact_search` returns with ``valid`` everywhere but
    ``hidden`` (ties to the lower position), computed for a few hundred queries over a whole
    corpus, as the recall measurement of a build needs: the vectors go through in blocks, each
    read once (not once per block of queries), and after the first block a vector becomes a
    candidate only when it scores at least a query's k-th best so far, so the rest of the corpus
    costs one matrix product and one comparison, not a partition per query.
    """
    n, m = len(vectors), len(queries)
    hide = np.zeros(n, np.bool_)
    hide[hidden] = True
    k = min(k, n - int(hide.sum()))
    best_scores = np.full((m, k), -np.inf, np.float32)
    # Padding sorts after every real position, so it never wins a tie.
    best = np.full((m, k), n, np.int64)
    step = max(1024, SCORE_BLOCK_FLOATS // max(m, 1))
    for start in range(0, n if k else 0, step):
        block = queries @ vectors[start : start + step].T
        block[:, hide[start : start + step]] = -np.inf
        floor = best_scores[:, -1]
        if np.isneginf(floor).any():
            picked = top_k(block, k)
            rows = np.repeat(np.arange(m), picked.shape[1])
            cols = picked.ravel()
        else:
            rows, cols = np.nonzero(block >= floor[:, None])
        scores = np.concatenate([best_scores.ravel(), block[rows, cols]])
        positions = np.concatenate([best.ravel(), cols.astype(np.int64) + start])
        owners = np.concatenate([np.repeat(np.arange(m), k), rows])
        order = np.lexsort((positions, -scores, owners))
        # Each query owns at least k entries (its current best): keep the first k of each.
        first = np.searchsorted(owners[order], np.arange(m))
        keep = order[(first[:, None] + np.arange(k)).ravel()]
        best_scores = scores[keep].reshape(m, k)
        best = positions[keep].reshape(m, k)
    return best


@dataclass(frozen=True)
class BuildParams:
    """How the vector index was built, recorded in the manifest so that rebuilds do the same.

    ``factory`` is the one asked for (``None``: chosen by size); the manifest's ``factory`` is the
    one in use, which a small index may have had to scale down.
    """

    factory: str | None = None
    recall_target: float = 0.95
    seed: int = 0
    #: Whether loads map the vector file instead of reading it (see :mod:`kshot.index.factories`).
    mmap: bool = False


def build_vectors(
    dim: int,
    rows: npt.NDArray[np.int64],
    vectors: npt.NDArray[np.float32],
    factory: str,
    recall_target: float,
    seed: int,
    problem: str = "",
    *,
    fallback: bool = False,
    assignment: SharedAssignment | None = None,
) -> tuple[VectorIndex, float | None]:
    """Build the vector index of ``vectors`` keyed by ``rows``; return it and its recall@10.

    A factory too big for the rows falls back with one warning. ``problem`` (why the build
    happens, if not asked for) goes into that one warning, so that a rebuild that also falls back
    says both in one line. IVF indexes get ``nprobe`` tuned to ``recall_target`` on held-out rows,
    compressed ones their recall measured there. With ``fallback`` (the factory was only chosen
    by size, not asked for) an IVF index that needs more than a quarter of its lists probed is
    replaced by an exact one. ``rows`` must be ascending. ``assignment`` (of ``vectors``) lets
    other threads help assign them to IVF lists; it is opened or closed before this returns.
    """
    assignment = SharedAssignment(vectors) if assignment is None else assignment
    try:
        notes = [problem] if problem else []
        fitted = fit_factory(factory, len(vectors))
        if fitted != factory:
            notes.append(
                f"{factory} needs at least as many vectors as lists and there are {len(vectors)}: "
                f"using {fitted}"
            )
        index = VectorIndex.create(dim, fitted)
        rng = np.random.default_rng(seed)
        if not index.is_trained:
            # k-means needs about 40 points per list (FAISS warns below 39); more only costs time.
            size = min(len(vectors), max(40 * index.nlist, 10_000))
            try:
                index.train(vectors[rng.choice(len(vectors), size=size, replace=False)])
            except RuntimeError as exc:  # FAISS asserts: too few vectors for its codebooks
                notes.append(
                    f"{fitted} cannot be trained on {len(vectors)} vectors "
                    f"({str(exc).strip().splitlines()[-1]}): using an exact index"
                )
                index = VectorIndex.create(dim, "Flat")
        if notes:
            logger.warning("; ".join(notes))
        quantizer = index.quantizer
        if quantizer is None:
            assignment.close()
            index.add(rows, vectors)
        else:
            assignment.open(quantizer)
            index.add_assigned(rows, vectors, assignment.lists())
        if index.factory.startswith("IVF") or index.compressed:
            picks = rng.choice(
                len(vectors), size=min(len(vectors) // 2, _RECALL_QUERIES), replace=False
            )
            exact = held_out_neighbours(vectors[picks], vectors, 10, picks)
            stats = index.tune(
                vectors[picks],
                rows[exact],
                10,
                recall_target,
                vectors_of=lambda wanted: vectors[np.searchsorted(rows, wanted)],
                held_out=rows[picks],
            )
            if fallback and index.nprobe and index.nprobe > index.nlist // 4:
                # Vectors without cluster structure: IVF would scan most lists anyway, slower
                # than an exact scan.
                logger.warning(
                    "%s needs nprobe %d of %d lists for recall@10 %.2f; using an exact index",
                    fitted,
                    index.nprobe,
                    index.nlist,
                    recall_target,
                )
                return build_vectors(dim, rows, vectors, "Flat", recall_target, seed)
            return index, stats.recall_at_10
        return index, None
    finally:
        assignment.close()  # helpers waiting on an index that failed to build go back to work
