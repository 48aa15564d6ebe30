"""Speed benchmark runner: ``python benchmarks/speed/run.py --help``.

A thin wrapper over :func:`kshot.bench.speed.run_speed` (the implementation lives in the package
so that ``kshot bench speed`` can call it). Typical invocations::

    python benchmarks/speed/run.py --sizes 10000,100000          # vs LangChain + encoder
    python benchmarks/speed/run.py --sizes '' --no-encoder --scale 1000000   # kshot at 1M

Results are merged into ``benchmarks/results/speed/results.json``.
"""

from __future__ import annotations

import sys

from kshot.bench.speed import SpeedConfig, main, run_speed

__all__ = ["SpeedConfig", "main", "run_speed"]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
