"""Run the quality benchmark: ``python -m benchmarks.quality.run --config CONFIG [overrides]``.

Examples::

    python -m benchmarks.quality.run --config benchmarks/quality/configs/banking77.json
    python -m benchmarks.quality.run --dataset movie-sentiment --limit-test 50 --ks 1,4 \
        --max-steps 2 --out /tmp/q

Every option of ``kshot.bench.quality.cli.build_parser`` overrides the config file. A rerun with the
same settings resumes: finished arms (``<out>/arms/*.json``) are kept, trained weights reused.
"""

from __future__ import annotations

import sys

from kshot.bench.quality import main

if __name__ == "__main__":
    sys.exit(main())
