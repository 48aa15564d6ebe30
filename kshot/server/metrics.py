"""Request metrics in the Prometheus text exposition format, without a client library."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["BUCKETS", "Metrics"]

#: Latency histogram bucket bounds, in seconds.
BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.n += 1


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


class Metrics:
    """Request counts and latency histograms per route template, method and status.

    ``route`` is the route's path template (``/v1/examples/{example_id}``), never the raw path,
    so the number of series stays bounded; unmatched paths count under ``"unmatched"``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}
        self._latency: dict[tuple[str, str], _Histogram] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one finished request."""
        with self._lock:
            key = (method, route, str(status))
            self._requests[key] = self._requests.get(key, 0) + 1
            hist = self._latency.get((method, route))
            if hist is None:
                hist = self._latency[(method, route)] = _Histogram()
            hist.observe(seconds)

    def render(self, gauges: Iterable[tuple[str, str, Callable[[], float]]] = ()) -> str:
        """The exposition text; ``gauges`` are ``(name, help, read)`` sampled now."""
        with self._lock:
            requests = sorted(self._requests.items())
            latency = sorted(
                (key, list(h.counts), h.total, h.n) for key, h in self._latency.items()
            )
        lines = [
            "# HELP kshot_http_requests_total HTTP requests by method, route template and status.",
            "# TYPE kshot_http_requests_total counter",
        ]
        for (method, route, status), count in requests:
            labels = _labels(method=method, route=route, status=status)
            lines.append(f"kshot_http_requests_total{labels} {count}")
        lines += [
            "# HELP kshot_http_request_duration_seconds HTTP request latency by route template.",
            "# TYPE kshot_http_request_duration_seconds histogram",
        ]
        for (method, route), counts, total, n in latency:
            cumulative = 0
            for bound, count in zip((*BUCKETS, float("inf")), counts, strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                labels = _labels(method=method, route=route, le=le)
                lines.append(f"kshot_http_request_duration_seconds_bucket{labels} {cumulative}")
            labels = _labels(method=method, route=route)
            lines.append(f"kshot_http_request_duration_seconds_sum{labels} {total:.6f}")
            lines.append(f"kshot_http_request_duration_seconds_count{labels} {n}")
        for name, help_text, read in gauges:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {read():g}"]
        return "\n".join(lines) + "\n"
