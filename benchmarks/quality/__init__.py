"""Quality benchmark: dynamic in-context examples against fine-tuned baselines.

The implementation lives in :mod:`kshot.bench.quality`; this package holds the runner script and
the configs of the committed runs (results under ``benchmarks/results/quality/``).
"""
