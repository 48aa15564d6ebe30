"""What a benchmark ran on: one capture shared by the quality and the speed benchmark.

:func:`capture_environment` returns four keys, the same for every benchmark:

- ``config``: the run's settings, as given;
- ``versions``: Python and each package that can change a number (``None``: not installed);
- ``machine``: platform, processor, CPUs, memory, load average, torch and FAISS threads, and
  the GPU's name when the device is cuda;
- ``device``: where the models ran (``cpu``, ``cuda``, ``mps``).
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path

__all__ = ["PACKAGES", "capture_environment"]

#: Distributions whose versions every benchmark records.
PACKAGES: tuple[str, ...] = (
    "kshot",
    "numpy",
    "faiss-cpu",
    "bm25s",
    "torch",
    "transformers",
    "peft",
    "sentence-transformers",
    "scikit-learn",
    "langchain-core",
    "langchain-community",
    "onnxruntime",
    "onnx",
    "nltk",
    "matplotlib",
    "tqdm",
)


def capture_environment(
    config: Mapping[str, object], device: str, *, packages: Iterable[str] = PACKAGES
) -> dict[str, object]:
    """Return ``{"config", "versions", "machine", "device"}`` for a run on ``device``."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist in packages:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "config": dict(config),
        "versions": versions,
        "machine": _machine(device),
        "device": device,
    }


def _machine(device: str) -> dict[str, object]:
    machine: dict[str, object] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        machine["memory_gib"] = round(pages * page_size / 2**30, 1)
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        pass
    with contextlib.suppress(OSError):
        machine["load_average_at_start"] = list(os.getloadavg())
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                machine["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(ImportError):
        import torch

        machine["torch_threads"] = torch.get_num_threads()
        if device.startswith("cuda") and torch.cuda.is_available():
            machine["gpu"] = torch.cuda.get_device_name(0)
    with contextlib.suppress(ImportError):
        import faiss

        machine["faiss_threads"] = faiss.omp_get_max_threads()
    return machine
