"""The index directory layout and its manifest.

::

    my-index/
      manifest.json   format, versions, encoder name + dim, FAISS factory, count, checksums
      examples.db     SQLite (WAL): examples, metadata, embeddings: the source of truth
      vectors.faiss   the FAISS index, a cache of the stored embeddings
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kshot.errors import IndexFormatError

__all__ = ["FORMAT", "FORMAT_VERSION", "IndexLayout", "Manifest", "atomic_write_bytes", "sha256"]

FORMAT = "kshot-index"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class IndexLayout:
    """Where each file of an index directory lives."""

    root: Path

    @property
    def manifest(self) -> Path:
        """The manifest file."""
        return self.root / "manifest.json"

    @property
    def store(self) -> Path:
        """The SQLite store."""
        return self.root / "examples.db"

    @property
    def vectors(self) -> Path:
        """The FAISS index file."""
        return self.root / "vectors.faiss"


@dataclass(frozen=True)
class Manifest:
    """What an index directory holds; written last on every save."""

    kshot_version: str
    encoder: str
    dim: int
    factory: str
    count: int
    generation: int
    vectors_sha256: str
    nprobe: int | None = None
    recall_at_10: float | None = None
    normalized: bool = True
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialise to pretty JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def read(cls, path: Path) -> Manifest:
        """Read and validate a manifest; anything else raises :class:`IndexFormatError`."""
        if not path.is_file():
            raise IndexFormatError(
                f"{path.parent} is not a kshot index: {path.name} is missing "
                "(build one with `kshot index build`)"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IndexFormatError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise IndexFormatError(f"{path} is not a kshot manifest (no 'format': '{FORMAT}')")
        if data.get("format_version") != FORMAT_VERSION:
            raise IndexFormatError(
                f"{path} has format version {data.get('format_version')!r}; this kshot reads "
                f"version {FORMAT_VERSION}: rebuild the index with this kshot"
            )
        try:
            return cls(**data)
        except TypeError as exc:
            raise IndexFormatError(f"{path} has unexpected or missing fields: {exc}") from exc


def sha256(path: Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
