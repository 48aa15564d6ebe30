"""FAISS factory strings: the default by size, scaling to small indexes, and what each stores.

A factory string names the FAISS index type, as FAISS's ``index_factory`` reads it: ``Flat``
(exact), ``IVF1024,Flat`` (inverted lists of full vectors), and the compressed ones, which store
codes instead of float32 vectors: ``SQ8`` (one byte per dimension), ``PQ48`` (48 bytes per
vector, 8 bits per sub-quantizer; ``PQ32x4`` has 4 bits each), and their inverted-file forms
``IVF4096,SQ8`` and ``IVF1024,PQ48``.

A compressed index ranks by its codes, so its scores are approximate. kshot re-scores every
candidate it returns with the exact stored vector, read from the store on disk, so it needs no
FAISS refine stage (``RFlat``, ``Refine(...)``): that stage keeps a second, full float32 copy of
every vector in memory, the very thing a compressed index is chosen to avoid.
"""

from __future__ import annotations

import functools
import math
import re

from kshot.errors import ConfigError

__all__ = [
    "APPROX_THRESHOLD",
    "choose_factory",
    "fit_factory",
    "holds_vectors",
    "is_compressed",
    "pq_m_values",
    "validate_factory",
]

#: Below this many vectors an exact flat scan is both fast enough and simplest.
APPROX_THRESHOLD = 50_000

# FAISS components that store lossy codes instead of the float32 vectors.
_CODES = re.compile(r"^(O?PQ|SQ|RQ|LSQ|PRQ|PLSQ|LSH|ITQ)")
_PQ = re.compile(r"^PQ(\d+)(?:x(\d+))?(fs)?")
_REFINE = re.compile(r"^(RFlat|Refine\()")


def choose_factory(n: int) -> str:
    """Pick a FAISS factory string for ``n`` vectors: exact below the threshold, IVF above."""
    if n < APPROX_THRESHOLD:
        return "Flat"
    # About 2 sqrt(n) lists: training and assignment cost grow with the list count, while a
    # search scans nprobe/nlist of the vectors; this keeps both low at a million rows.
    nlist = 2 ** round(math.log2(2 * math.sqrt(n)))
    return f"IVF{nlist},Flat"


def fit_factory(factory: str, n: int) -> str:
    """``factory`` scaled down to ``n`` vectors: FAISS cannot train more IVF lists than vectors.

    With fewer vectors than lists, an ``IVF`` factory keeps one list per 39 vectors (FAISS's
    minimum for a stable k-means), or becomes exact ``Flat`` below two such lists, where a scan
    of so few vectors costs nothing. Other factories are returned unchanged.
    """
    head, sep, rest = factory.partition(",")
    if not head.startswith("IVF") or not head[3:].isdigit() or n >= int(head[3:]):
        return factory
    lists = n // 39
    return f"IVF{lists}{sep}{rest}" if lists >= 2 else "Flat"


def _parts(factory: str) -> list[str]:
    return [part.strip() for part in factory.split(",")]


@functools.lru_cache(maxsize=64)  # asked on every vector read; a regex match per part otherwise
def is_compressed(factory: str) -> bool:
    """Whether the index stores lossy codes (PQ, SQ, ...) rather than the float32 vectors."""
    return any(_CODES.match(part) for part in _parts(factory))


def holds_vectors(factory: str, mmap: bool) -> bool:
    """Whether an index of ``factory`` holds a float32 copy of every vector in memory.

    Not a compressed index (the point is to keep vectors out of memory) nor a memory-mapped one
    (its vector file stays on disk): those read the exact vectors of their candidates from the
    store instead.
    """
    return not mmap and not is_compressed(factory)


def pq_m_values(dim: int) -> list[int]:
    """The sub-quantizer counts ``M`` a ``PQ{M}`` index of ``dim`` dimensions accepts."""
    return [m for m in range(1, dim + 1) if dim % m == 0]


def validate_factory(factory: str, dim: int) -> None:
    """Refuse factory strings kshot cannot use, naming what to write instead.

    FAISS checks the rest when the index is made (:meth:`VectorIndex.create`); these are the
    cases whose FAISS message would not say what to change, or that FAISS accepts but kshot must
    not use.
    """
    parts = _parts(factory)
    for part in parts:
        if _REFINE.match(part):
            raise ConfigError(
                f"factory {factory!r}: kshot re-scores every candidate with its exact stored "
                f"vector, so a refine stage ({part!r}) would only hold a second float32 copy of "
                "every vector in memory; drop it (e.g. 'IVF1024,PQ48')"
            )
        pq = _PQ.match(part)
        if pq is None:
            continue
        m = int(pq.group(1))
        if m == 0 or dim % m:
            valid = ", ".join(str(v) for v in pq_m_values(dim))
            raise ConfigError(
                f"factory {factory!r}: PQ{m} splits each vector into {m} parts, which must "
                f"divide the dimension {dim}; valid M values: {valid}"
            )
        bits = int(pq.group(2) or 8)
        if not 1 <= bits <= 16:
            raise ConfigError(
                f"factory {factory!r}: PQ codes have 1 to 16 bits per part, not {bits} "
                "(e.g. 'PQ48' for 8 bits, 'PQ48x4' for 4)"
            )
        # Both FAISS index types refuse search parameters, which filters need.
        if pq.group(3):
            raise ConfigError(
                f"factory {factory!r}: fast-scan codes ({part!r}) cannot search inside a filter "
                f"in FAISS; use {part.removesuffix('fs')!r}"
            )
        if not any(p.startswith("IVF") for p in parts):
            raise ConfigError(
                f"factory {factory!r}: a flat {part} index cannot search inside a filter in "
                f"FAISS; use it inside inverted lists, e.g. 'IVF1024,{part}' (small indexes get "
                "fewer lists), or 'SQ8'"
            )
