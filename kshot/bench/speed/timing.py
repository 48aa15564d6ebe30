"""Timers and resident memory: wall and CPU time per call, summaries, ratios."""

from __future__ import annotations

import importlib
import logging
import os
import resource
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
