"""One caching encoder for benchmarks and tests: a table of vectors in front of a real encoder.

Benchmarks time selection "with the query vector in hand" (every text answered from a table of
precomputed vectors) and end to end (the real model on every call); tests repeat queries and
should encode each text once. :class:`LookupEncoder` does all three:

- with ``lookup = True`` (the default) a text in the table is answered from it, and a text
  outside it is encoded by ``inner`` and remembered (an error without ``inner``);
- with ``lookup = False`` every call goes to ``inner`` and nothing is remembered, so timings
  include the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from kshot.errors import ConfigError
from kshot.index.encoder import Encoder

__all__ = ["LookupEncoder"]

Matrix = npt.NDArray[np.float32]


class LookupEncoder:
    """A kshot :class:`~kshot.index.encoder.Encoder` answering from a table of vectors.

    Args:
        inner: the real encoder for texts outside the table (and for ``lookup = False``).
        table: precomputed vectors by text.
        name: the name recorded by an index; default ``inner``'s (give the real model's name
            when there is no ``inner``, so the index records the real encoder).
        dim: the dimension; default ``inner``'s, or the table's.
    """

    def __init__(
        self,
        inner: Encoder | None = None,
        *,
        table: Mapping[str, npt.ArrayLike] | None = None,
        name: str | None = None,
        dim: int | None = None,
    ) -> None:
        self.inner = inner
        self.table: dict[str, Matrix] = {
            text: np.asarray(vector, dtype=np.float32) for text, vector in (table or {}).items()
        }
        self.lookup = True
        if name is None and inner is None:
            raise ConfigError("give LookupEncoder a name, or an inner encoder to take it from")
        self._name = name if name is not None else inner.name if inner is not None else ""
        if dim is None:
            if inner is not None:
                dim = inner.dim
            elif self.table:
                dim = int(next(iter(self.table.values())).shape[-1])
            else:
                raise ConfigError("give LookupEncoder a dim, a table or an inner encoder")
        self._dim = dim

    @property
    def name(self) -> str:
        """The name an index records (the real model's)."""
        return self._name

    @property
    def dim(self) -> int:
        """The vectors' dimension."""
        return self._dim

    def remember(self, texts: Sequence[str], *, batch_size: int = 256) -> None:
        """Encode the texts not yet in the table with ``inner`` and add them."""
        new = list(dict.fromkeys(t for t in texts if t not in self.table))
        if new:
            vectors = self._inner().encode(new, batch_size=batch_size)
            self.table.update(zip(new, np.asarray(vectors, dtype=np.float32), strict=True))

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool | None = None
    ) -> Matrix:
        """Answer from the table (encoding and remembering misses), or from ``inner``."""
        if not self.lookup:
            out: Matrix = self._inner().encode(
                list(texts), batch_size=batch_size, show_progress=show_progress
            )
            return out
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        missing = [t for t in texts if t not in self.table]
        if missing:
            if self.inner is None:
                raise ConfigError(
                    f"{missing[0]!r} is not in the lookup table and there is no encoder for it"
                )
            self.remember(missing, batch_size=batch_size)
        return np.stack([self.table[t] for t in texts]).astype(np.float32, copy=False)

    def _inner(self) -> Encoder:
        if self.inner is None:
            raise ConfigError("this LookupEncoder has no inner encoder; set lookup = True")
        return self.inner
