"""The IVF list of every vector of a build, computed by every thread that offers to help.

Adding a million vectors to an IVF index is mostly their assignment to lists: one matrix product
of the vectors with the list centroids (about 23 s of a 40 s build at 1M rows, IVF2048, one
thread). The assignment only reads the trained quantizer, so threads can share it chunk by
chunk. A build's vector thread opens it once training is done; the thread that fills the store
joins in when its own work is over, instead of waiting idle for the vector thread. The vectors
then go into their lists in one call with the assignment given (FAISS's ``add_core``, the second
half of its own ``add``), so the index is the one a plain ``add`` builds.

Each helper runs FAISS on the OpenMP threads set in its own thread (``faiss.omp_set_num_threads``
is per thread), so a caller that asked for one thread gets one per helper.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["SharedAssignment"]

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]

#: Vectors per chunk: 32k rows times 2048 centroids is a 256 MiB score matrix at most, the size
#: FAISS's own blocked search works in, and small enough that two helpers finish close together.
CHUNK = 32_768


class SharedAssignment:
    """The list of each of ``vectors`` under a quantizer opened later, shared among threads.

    The owner calls :meth:`open` with the trained quantizer (or :meth:`close` when nothing needs
    assigning), then :meth:`lists`; any other thread may call :meth:`help` at any time, which
    returns once no chunk is left to take. An error in any helper is raised by :meth:`lists`.
    """

    def __init__(self, vectors: Floats, chunk: int = CHUNK) -> None:
        self._vectors = vectors
        self._chunk = max(1, chunk)
        self._chunks = -(-len(vectors) // self._chunk)
        self._lists = np.full(len(vectors), -1, np.int64)
        self._quantizer: Any = None
        self._opened = threading.Event()
        self._done = threading.Condition()
        self._next = 0
        self._finished = 0
        self._error: BaseException | None = None

    def open(self, quantizer: Any) -> None:
        """Start the assignment under ``quantizer`` (a trained FAISS index of the centroids)."""
        self._quantizer = quantizer
        self._opened.set()

    def close(self) -> None:
        """Let waiting helpers go: no (more) chunks will be opened. Harmless after :meth:`open`."""
        if not self._opened.is_set():
            self._next = self._chunks  # nothing to take
            self._opened.set()

    def help(self) -> None:
        """Wait until the assignment is opened or closed, then assign chunks until none is left."""
        self._opened.wait()
        while True:
            with self._done:
                if self._next >= self._chunks or self._error is not None:
                    return
                index = self._next
                self._next += 1
            start = index * self._chunk
            stop = min(start + self._chunk, len(self._vectors))
            try:
                # FAISS releases the GIL here, so helpers in Python threads run in parallel.
                _, found = self._quantizer.search(self._vectors[start:stop], 1)
                self._lists[start:stop] = found[:, 0]
            except BaseException as exc:  # handed to the owner by lists()
                with self._done:
                    self._error = exc
                    self._done.notify_all()
                return
            with self._done:
                self._finished += 1
                self._done.notify_all()

    def lists(self) -> Ints:
        """Help until no chunk is left, wait for the others' chunks, return every vector's list."""
        self.help()
        with self._done:
            self._done.wait_for(lambda: self._finished >= self._next or self._error is not None)
            if self._error is not None:
                raise self._error
        return self._lists
