"""Benchmarks shipped with kshot: quality (in-context examples vs fine-tuning) and speed.

- :mod:`kshot.bench.quality`: the quality benchmark, one module per job;
- :mod:`kshot.bench.speed`: latency and throughput against LangChain's selectors;
- :mod:`kshot.bench.environment`: what a run ran on, recorded the same way by every benchmark;
- :mod:`kshot.bench.lookup`: the caching encoder benchmarks and tests share.

Importing this package is cheap; torch, transformers, peft, scikit-learn and matplotlib are
imported only when a benchmark runs.
"""

from kshot.bench.quality import QualityConfig, run_quality

__all__ = ["QualityConfig", "run_quality"]
