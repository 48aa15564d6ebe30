"""Byte codes of the stored vectors, scanned by FAISS, with a bound on how wrong each score is.

A vector ``x`` is stored as one byte per dimension, ``c = round((x - lo) / step)`` clipped to
``0..255`` (``lo`` and ``step`` per dimension, from the vectors' range), so ``x`` is
``lo + step * c`` up to a residual ``e`` whose norm is recorded. A query ``q`` becomes one byte per
dimension too: with ``w = q * step`` and a scale ``alpha = max|w| / 127``,
``Q = round(w / alpha) + 128``, up to a residual ``r``. FAISS's ``QT_8bit_direct`` scalar
quantizer then computes ``sum(Q * c)`` as an integer dot product (AVX2 byte arithmetic over a
quarter of the bytes of a float32 scan: at 10k x 384, inside the selection flow, about half the
CPU time of a BLAS scan of the float32 vectors and a third of FAISS's flat scan, measured).

That sum carries a term ``128 * sum(c)`` that differs between vectors. Pad dimensions remove it:
each vector gets extra code bytes that bring its code sum to one constant ``total``, and the query
puts 128 in those dimensions, so FAISS's score is ``sum((Q - 128) * c) + 128 * total`` and ranks
the vectors exactly as the approximate score

    approx(x) = q . lo + alpha * (faiss(x) - 128 * total) + r . center

does (``center``: the mean code per dimension). The exact score differs from it by

    q . x - approx(x) = q . e + r . (c - center) + (FAISS's rounding),

at most ``|q| * max|e| + |r| * max|c - center| + rounding`` over every stored vector:
:attr:`QueryCodes.margin`, per query. :mod:`kshot.selector.scan` uses it to prove that its
candidates hold the exact top-n.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from kshot.index.vectors import threads_for
from kshot.types import Mask

__all__ = ["ByteCodes", "QueryCodes"]

Floats = npt.NDArray[np.float32]
Doubles = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

_LEVELS = 255
_MIDDLE = 128
#: FAISS's byte arithmetic runs over blocks of 16 dimensions, so codes are padded to a multiple.
_BLOCK = 16
#: Appended vectors whose residuals outgrow the build's by this factor trigger a re-encoding (new
#: ranges), so that one outlying append cannot loosen the bound for good.
_REBUILD_GROWTH = 1.5
#: float32 unit roundoff: FAISS may accumulate the byte products in float32.
_UNIT = 2.0**-24
_TINY = 1e-300


@dataclass(frozen=True)
class QueryCodes:
    """Queries as FAISS query bytes, with what turns FAISS's scores into bounded estimates."""

    bytes: Floats
    """``(m, width)`` byte values (integers in float32), pad dimensions included."""
    offset: Doubles
    """Per query: ``approx = offset + alpha * faiss``."""
    alpha: Doubles
    margin: Doubles
    """Per query: the largest ``|exact - approx|`` over every coded vector."""


class ByteCodes:
    """The byte codes of a run of vectors in a FAISS index, immutable once made.

    Extending makes a new object over a new FAISS index (a copy of the codes plus the new ones),
    so a search running on this one in another thread is never disturbed.
    """

    __slots__ = (
        "_built_residual",
        "_built_spread",
        "_pad_bytes",
        "_residual_bound",
        "_rounding",
        "center",
        "dim",
        "index",
        "lo",
        "n",
        "norm",
        "pad",
        "residual",
        "spread",
        "step",
        "total",
    )

    def __init__(
        self,
        index: faiss.IndexScalarQuantizer,
        *,
        lo: Doubles,
        step: Doubles,
        center: Doubles,
        pad: int,
        total: int,
        stats: tuple[float, float, float],
        built: tuple[float, float],
    ) -> None:
        self.index = index
        self.n = int(index.ntotal)
        self.dim = len(lo)
        self.lo, self.step, self.center = lo, step, center
        self.pad, self.total = pad, total
        #: The largest residual ``|x - (lo + step * c)|``, ``|c - center|`` and ``|x|``.
        self.residual, self.spread, self.norm = stats
        self._built_residual, self._built_spread = built
        width = self.dim + pad
        self._pad_bytes = _MIDDLE * width  # sum(Q) = sum(levels) + 128 * width
        self._rounding = 2 * (width + 1) * _UNIT * _LEVELS
        # Float64 rounding in this module's arithmetic, far below 1e-9 of |q| |x|.
        self._residual_bound = self.residual + 1e-9 * self.norm

    @classmethod
    def build(cls, vectors: Floats) -> ByteCodes:
        """Codes of ``vectors`` with ranges, pad and code total fitted to them."""
        x = np.asarray(vectors, np.float64)
        n, dim = x.shape
        lo = x.min(axis=0) if n else np.zeros(dim)
        step = ((x.max(axis=0) - lo) / _LEVELS) if n else np.zeros(dim)
        codes = _quantise(x, lo, step)
        sums = codes.sum(axis=1)
        spread = int(sums.max() - sums.min()) if n else 0
        # Room for twice the build's spread of code sums (appends vary too), in whole blocks.
        pad = -dim % _BLOCK
        while pad * _LEVELS < 2 * spread + _LEVELS:
            pad += _BLOCK
        total = (int(sums.max()) if n else 0) + (pad * _LEVELS - spread) // 2
        center = codes.mean(axis=0) if n else np.zeros(dim)
        residual, code_spread, norm = _stats(x, codes, lo, step, center)
        index = _code_index(dim + pad)
        if n:
            index.add_sa_codes(_padded(codes, total, pad))
        return cls(
            index,
            lo=lo,
            step=step,
            center=center,
            pad=pad,
            total=total,
            stats=(residual, code_spread, norm),
            built=(residual, code_spread),
        )

    def extended(self, vectors: Floats) -> ByteCodes | None:
        """These codes plus ``vectors``'; ``None`` when they do not fit (re-encode everything).

        They do not fit when their code sums leave the pad's room, or when their residuals grow
        past :data:`_REBUILD_GROWTH` times the build's (vectors outside the coded ranges).
        """
        x = np.asarray(vectors, np.float64)
        codes = _quantise(x, self.lo, self.step)
        fill = self.total - codes.sum(axis=1)
        if len(x) and (fill.min() < 0 or fill.max() > self.pad * _LEVELS):
            return None
        residual, spread, norm = _stats(x, codes, self.lo, self.step, self.center)
        if (
            residual > _REBUILD_GROWTH * self._built_residual
            or spread > _REBUILD_GROWTH * self._built_spread
        ):
            return None
        width = self.dim + self.pad
        index = _code_index(width)
        if self.n:
            held = faiss.rev_swig_ptr(self.index.codes.data(), self.n * width)
            index.add_sa_codes(held.reshape(self.n, width))
        if len(x):
            index.add_sa_codes(_padded(codes, self.total, self.pad))
        return ByteCodes(
            index,
            lo=self.lo,
            step=self.step,
            center=self.center,
            pad=self.pad,
            total=self.total,
            stats=(
                max(self.residual, residual),
                max(self.spread, spread),
                max(self.norm, norm),
            ),
            built=(self._built_residual, self._built_spread),
        )

    def queries(self, vectors: Floats) -> QueryCodes:
        """The query bytes and bounds of ``vectors`` (``(m, dim)``)."""
        q = np.asarray(vectors, np.float64)
        w = q * self.step
        # alpha: the largest |w| at 127 levels (any positive value when w is all zero).
        alpha = np.abs(w).max(axis=1)
        np.maximum(alpha, _TINY, out=alpha)
        alpha *= 1 / (_MIDDLE - 1)
        levels = np.rint(w / alpha[:, None])
        w -= alpha[:, None] * levels  # now the residual r
        query_bytes = np.full((len(q), self.dim + self.pad), _MIDDLE, np.float32)
        query_bytes[:, : self.dim] += levels
        offset = q @ self.lo + w @ self.center - alpha * (_MIDDLE * self.total)
        # FAISS may sum the byte products in float32: relative error at most width * unit on a
        # sum of non-negative terms no larger than 255 * sum(Q); doubled to cover the
        # conversions. The residual term carries the float64 rounding of this module's own
        # arithmetic (see build), the constant the rest.
        byte_sum = levels.sum(axis=1) + self._pad_bytes
        margin = alpha * byte_sum * self._rounding
        margin += np.sqrt(np.vecdot(q, q)) * self._residual_bound
        margin += np.sqrt(np.vecdot(w, w)) * self.spread
        margin += 1e-9
        return QueryCodes(query_bytes, offset, alpha, margin)

    def search(self, query_bytes: Floats, m: int, valid: Mask | None) -> tuple[Floats, Ints]:
        """FAISS's ``m`` best coded vectors per query (positions; ``-1`` pads), inside ``valid``."""
        params = None
        if valid is not None:
            bitmap = np.packbits(valid, bitorder="little")
            params = faiss.SearchParameters()
            # `bitmap` stays referenced for the whole search, as FAISS requires.
            params.sel = faiss.IDSelectorBitmap(len(valid), faiss.swig_ptr(bitmap))
        query_bytes = np.ascontiguousarray(query_bytes, np.float32)  # swig_ptr reads it raw
        count = len(query_bytes)
        scores = np.empty((count, m), np.float32)
        positions = np.empty((count, m), np.int64)
        raw: Any = self.index  # search_c (the wrapper's own call) is not in faiss's type stubs
        # A few queries' scans are too short to share: FAISS would open its thread team even for
        # one query.
        with threads_for(count):
            raw.search_c(
                count,
                faiss.swig_ptr(query_bytes),
                m,
                faiss.swig_ptr(scores),
                faiss.swig_ptr(positions),
                params,
            )
        return scores, positions

    @property
    def nbytes(self) -> int:
        """Bytes held by the codes."""
        return self.n * (self.dim + self.pad)


def _code_index(width: int) -> faiss.IndexScalarQuantizer:
    """An empty FAISS index of ``width`` raw bytes a vector, scored by integer dot product."""
    return faiss.IndexScalarQuantizer(
        width, faiss.ScalarQuantizer.QT_8bit_direct, faiss.METRIC_INNER_PRODUCT
    )


def _quantise(x: Doubles, lo: Doubles, step: Doubles) -> Doubles:
    """The codes of ``x`` as whole float64 values in ``0..255`` (a flat dimension codes as 0)."""
    inverse = np.divide(1.0, step, out=np.zeros_like(step), where=step > 0)
    codes: Doubles = np.clip(np.rint((x - lo) * inverse), 0, _LEVELS)
    return codes


def _stats(
    x: Doubles, codes: Doubles, lo: Doubles, step: Doubles, center: Doubles
) -> tuple[float, float, float]:
    """Largest residual norm, largest ``|c - center|`` and largest ``|x|`` over the rows."""
    if not len(x):
        return 0.0, 0.0, 0.0
    residual = np.linalg.norm(x - (lo + step * codes), axis=1).max()
    spread = np.linalg.norm(codes - center, axis=1).max()
    return float(residual), float(spread), float(np.linalg.norm(x, axis=1).max())


def _padded(codes: Doubles, total: int, pad: int) -> npt.NDArray[np.uint8]:
    """``codes`` with ``pad`` bytes appended per row that bring each row's sum to ``total``."""
    fill = total - codes.sum(axis=1)
    extra = np.clip(fill[:, None] - _LEVELS * np.arange(pad), 0, _LEVELS)
    return np.ascontiguousarray(np.concatenate([codes, extra], axis=1), dtype=np.uint8)
