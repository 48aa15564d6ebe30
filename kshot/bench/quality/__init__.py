"""Quality benchmark: dynamic in-context examples against fine-tuned baselines.

One run takes a labelled data set (a registered name such as ``banking77``, or a user's train and
test files in any format of ``kshot index build``), a causal language model (default: the bundled
SmolLM2-135M-Instruct; or a model behind an OpenAI-compatible endpoint for the in-context arms,
:mod:`~kshot.bench.quality.endpoint`) and an embedding model (default: the bundled
all-MiniLM-L6-v2), and measures on the same test queries:

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
(one run), :mod:`~kshot.bench.quality.estimate` (the cost said before a run) and
:mod:`~kshot.bench.quality.cli` (the command line's settings and logging). Label prediction and the
soft-prompt model live in :mod:`kshot.model`.
"""

from kshot.bench.quality.cli import config_from_options, run_logged
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
    "config_from_options",
    "remove_leaks",
    "run_logged",
    "run_quality",
    "stratified_limit",
]
