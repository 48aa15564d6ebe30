"""Timers and resident memory: wall and CPU time per call, summaries, ratios."""

from __future__ import annotations

import importlib
import logging
import os
import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

Floats = npt.NDArray[np.float32]


@dataclass
class Timer:
    """Wall and thread-CPU seconds per call."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @contextmanager
    def __call__(self) -> Iterator[None]:
        """Time the ``with`` block: append its wall and CPU seconds."""
        c0, w0 = time.process_time(), time.perf_counter()
        yield
        self.wall.append(time.perf_counter() - w0)
        self.cpu.append(time.process_time() - c0)

    def summary(self) -> dict[str, float]:
        """p50/p99/mean of wall and CPU, in milliseconds."""
        w, c = np.asarray(self.wall) * 1e3, np.asarray(self.cpu) * 1e3
        return {
            "n": len(w),
            "p50_ms": float(np.percentile(w, 50)),
            "p99_ms": float(np.percentile(w, 99)),
            "mean_ms": float(w.mean()),
            "cpu_p50_ms": float(np.percentile(c, 50)),
            "cpu_p99_ms": float(np.percentile(c, 99)),
            "cpu_mean_ms": float(c.mean()),
        }


def rss_mb() -> float:
    """The resident memory of this process now, in MiB."""
    try:
        psutil: Any = importlib.import_module("psutil")
        return float(psutil.Process().memory_info().rss) / 2**20
    except ImportError:  # pragma: no cover - psutil is in the bench extra's environment
        return float("nan")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds another process ``pid`` has used so far (Linux ``/proc``).

    For server processes under a benchmark's load: a busy machine makes every wake-up wait for
    a core, which wall time counts and CPU time does not.
    """
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb() -> float:
    """The peak resident memory of this process so far, in MiB."""
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def rss_anon_mb() -> float:
    """The anonymous part of this process's resident memory now (Linux), in MiB; NaN elsewhere.

    Unlike the whole resident set it leaves out the pages of memory-mapped files, which count as
    resident once read but which the OS drops when memory runs short.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class AnonPeak:
    """The highest anonymous resident memory seen while a ``with`` block runs, in MiB.

    The kernel keeps a high-water mark of the whole resident set only (``ru_maxrss``), which
    counts the pages of memory-mapped input files; this samples :func:`rss_anon_mb` on a thread
    every ``interval`` seconds, so a peak that lasts less than that can be missed.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak_mb = float("nan")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="kshot-anon-peak", daemon=True)

    def _sample(self) -> None:
        while True:
            now = rss_anon_mb()
            if not now <= self.peak_mb:  # also replaces the first NaN
                self.peak_mb = now
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        now = rss_anon_mb()  # the block's last moment, after the thread's last sample
        if not now <= self.peak_mb:
            self.peak_mb = now


def ratio(slow: float, fast: float) -> float:
    """``slow / fast`` (infinite when ``fast`` took no time)."""
    return float(slow / fast) if fast > 0 else float("inf")


def lc_summary(timer: Timer) -> dict[str, float]:
    """Same as :meth:`Timer.summary` (named for readability at the call sites)."""
    return timer.summary()


def batch_summary(kshot: Timer, lc: Timer, batch: int) -> dict[str, float]:
    """Queries per second of each side's batch call and their ratio."""
    kw, lw = min(kshot.wall), min(lc.wall)
    kc, lcpu = min(kshot.cpu), min(lc.cpu)
    return {
        "batch": batch,
        "kshot_qps": batch / kw,
        "langchain_qps": batch / lw,
        "kshot_qps_cpu": batch / kc if kc else float("inf"),
        "langchain_qps_cpu": batch / lcpu if lcpu else float("inf"),
        "throughput_ratio": ratio(lw, kw),
        "throughput_ratio_cpu": ratio(lcpu, kc),
    }
