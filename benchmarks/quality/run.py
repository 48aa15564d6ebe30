"""Run ``kshot bench quality`` as ``python -m benchmarks.quality.run [OPTIONS]``.

Examples::

    python -m benchmarks.quality.run --config benchmarks/quality/configs/banking77.json
    python -m benchmarks.quality.run --dataset movie-sentiment --limit-test 50 --ks 1,4 \
        --max-steps 2 --out /tmp/q
    python -m benchmarks.quality.run --train-file train.csv --test-file test.csv \
        --input-field text --label-field intent --baselines logreg,knn --out out/

Every option given overrides the config file (``--help`` lists them). A rerun with the same
settings resumes: finished arms (``<out>/arms/*.json``) are kept, trained weights reused.
"""

from __future__ import annotations

from kshot.cli.bench import quality_main

if __name__ == "__main__":
    quality_main()
