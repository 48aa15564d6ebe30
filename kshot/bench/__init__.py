"""Benchmarks shipped with kshot: the quality benchmark (in-context examples vs fine-tuning).

Importing this package is cheap; torch, transformers, peft, scikit-learn and matplotlib are
imported only when a benchmark runs.
"""

from kshot.bench.quality import QualityConfig, run_quality

__all__ = ["QualityConfig", "run_quality"]
