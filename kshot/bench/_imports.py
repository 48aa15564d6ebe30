"""Importing optional packages from a folder that is not on the import path.

The speed benchmark can measure ONNX Runtime and LangChain's NGramOverlap selector with
packages kept outside the environment (``--onnx-path``, ``--nltk-path``). Appending the folder
to ``sys.path`` for the rest of the process would let every later import resolve from it; here
the folder is searched first only while the named packages (and what they import at import
time) load, and the import path is restored afterwards.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

__all__ = ["import_from"]


def import_from(folder: str, *names: str) -> list[ModuleType]:
    """Import ``names`` with ``folder`` searched first; return the modules.

    Raises:
        ImportError: a package is neither in ``folder`` nor installed.
    """
    saved = list(sys.path)
    sys.path.insert(0, folder)
    try:
        return [importlib.import_module(name) for name in names]
    finally:
        sys.path[:] = saved
