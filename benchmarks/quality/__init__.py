"""Quality benchmark: dynamic in-context examples against fine-tuned baselines.

The implementation lives in the :mod:`kshot.bench.quality` package; this package holds the runner
script and the configs of the committed runs (results under ``benchmarks/results/quality/``).
"""
