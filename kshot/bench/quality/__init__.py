"""Quality benchmark: dynamic in-context examples against fine-tuned baselines.

One run takes a labelled data set (a registered name such as ``banking77``, or JSONL train and
test files), a causal language model (default: the bundled SmolLM2-135M-Instruct) and an embedding
model (default: the bundled all-MiniLM-L6-v2), and measures on the same test queries:

- **in-context arms**, all fed to the same language model: zero-shot (no examples); ``random``
  (several seeds: mean and spread); ``jaccard``, ``bm25``, ``similarity``, ``mmr``, ``balanced``
  (any registered selector) at each ``k``;
- **fine-tuned baselines** on the same training split: the same language model fully fine-tuned,
  with LoRA (peft) and with prompt tuning (peft soft prompts), each predicting with the same label
  scoring on the zero-shot prompt; plus a logistic regression and a k-nearest-neighbour vote on the
  sentence embeddings the index holds.

The modules, each one job: :mod:`~kshot.bench.quality.config` (the settings),
:mod:`~kshot.bench.quality.data` (splits, limits, leakage guard),
:mod:`~kshot.bench.quality.arms` (the plan, arm keys, arm files and claims),
:mod:`~kshot.bench.quality.icl` (in-context evaluation), :mod:`~kshot.bench.quality.embedding`
(embedding baselines), :mod:`~kshot.bench.quality.finetune` (LM baselines and their weight
cache), :mod:`~kshot.bench.quality.cache` (files and the embedding cache),
:mod:`~kshot.bench.quality.metrics`, :mod:`~kshot.bench.quality.report` and
:mod:`~kshot.bench.quality.plot` (results.md and the plot), :mod:`~kshot.bench.quality.runner`
(one run) and :mod:`~kshot.bench.quality.cli` (the command line). Label prediction and the
soft-prompt model live in :mod:`kshot.model`.
"""

from kshot.bench.quality.cli import build_parser, main, run_from_argv
from kshot.bench.quality.config import BASELINES, SCHEMA_VERSION, QualityConfig
from kshot.bench.quality.data import (
    LeakageError,
    assert_no_leak,
    remove_leaks,
    stratified_limit,
)
from kshot.bench.quality.runner import run_quality

__all__ = [
    "BASELINES",
    "SCHEMA_VERSION",
    "LeakageError",
    "QualityConfig",
    "assert_no_leak",
    "build_parser",
    "main",
    "remove_leaks",
    "run_from_argv",
    "run_quality",
    "stratified_limit",
]
