"""The quality benchmark's on-disk helpers: JSON files, cache keys, the embedding cache.

Trained weights and embeddings are cached under ``weights_dir`` (default ``$KSHOT_CACHE/bench``
or ``~/.cache/kshot/bench``), keyed by everything that determines them, so a rerun does not
retrain or re-encode. Every write is atomic (written aside, then renamed).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kshot._files import atomic_write_bytes
from kshot.index.encoder import Encoder

__all__ = ["Embedded", "cache_key", "cache_root", "embed_cached", "write_json"]

Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Embedded:
    """The vectors of one split and the seconds their first encoding took."""

    vectors: Matrix
    seconds: float


def write_json(path: Path, value: object) -> None:
    """Write ``value`` as indented JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=False) + "\n").encode("utf-8"))


def cache_key(value: object) -> str:
    """A short digest of a JSON value (sorted keys): the name of what it determines."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def cache_root(weights_dir: str | None) -> Path:
    """The cache folder: ``weights_dir``, or ``$KSHOT_CACHE/bench``, or ``~/.cache/kshot/bench``."""
    if weights_dir is not None:
        return Path(weights_dir).expanduser()
    env = os.environ.get("KSHOT_CACHE")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "kshot"
    return base / "bench"


def embed_cached(
    encoder: Encoder, texts: Sequence[str], path: Path, *, show_progress: bool
) -> Embedded:
    """Encode ``texts``, or read their vectors from ``path`` (an ``.npz``) if a run stored them."""
    if path.is_file():
        with np.load(path) as stored:
            return Embedded(stored["vectors"].astype(np.float32), float(stored["seconds"]))
    started = time.perf_counter()
    vectors = encoder.encode(list(texts), show_progress=show_progress)
    seconds = time.perf_counter() - started
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, vectors=vectors, seconds=seconds)
    os.replace(tmp, path)
    return Embedded(np.asarray(vectors, dtype=np.float32), seconds)
