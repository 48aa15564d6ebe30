"""What a quality run will cost, said before it starts: arms, prompt passes, training steps, time.

The time is a rough guess from stated per-pass times, measured on the committed runs (the
bundled SmolLM2-135M on one torch thread of a shared 2-core CPU): scoring one prompt costs about
``0.25 s + 0.015 s`` per label ``+ 0.003 s`` per prompt token, a prompt holds about
``40 + 25 k`` tokens, and one fine-tuning step of 16 rows about 12 s. A GPU, another model or a
busy machine moves every figure; an endpoint's answer time is unknown and assumed to be 1 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kshot.bench.quality.arms import Arm, plan
from kshot.bench.quality.config import QualityConfig

__all__ = ["Estimate", "estimate"]

#: The stated per-pass times (seconds) behind the guess; see the module docstring.
PROMPT_SECONDS = 0.25
LABEL_SECONDS = 0.015
TOKEN_SECONDS = 0.003
STEP_SECONDS_PER_ROW = 12.0 / 16
ENDPOINT_SECONDS = 1.0


@dataclass(frozen=True)
class Estimate:
    """The planned work of a run and a rough time for it."""

    arms: int
    finished: int
    """Arms with a file in ``<out>/arms`` already (skipped when their settings are unchanged)."""
    queries: int
    labels: int
    train_rows: int
    prompt_passes: int
    """Prompts the language model (or the endpoint) answers, content-free prompts included."""
    train_steps: int
    seconds: float

    def describe(self, config: QualityConfig) -> str:
        """The estimate as the few lines the command prints before starting."""
        who = (
            f"endpoint requests at an assumed {ENDPOINT_SECONDS:.0f} s each"
            if config.endpoint_model
            else "prompt scorings (SmolLM2-135M on one CPU thread, measured)"
        )
        lines = [
            f"plan: {self.arms} arms on {self.queries} test queries, {self.labels} labels, "
            f"{self.train_rows} training rows ({self.finished} arms already have results in "
            f"{Path(config.out_dir) / 'arms'}; they are skipped if their settings are unchanged)",
            f"  {self.prompt_passes} {who}",
        ]
        if self.train_steps:
            lines.append(
                f"  {self.train_steps} fine-tuning steps of {config.train_batch_size} rows (about "
                f"{STEP_SECONDS_PER_ROW * config.train_batch_size:.0f} s each on a CPU); the "
                "fine-tuning baselines run unless --baselines leaves them out (logreg,knn)"
            )
        lines.append(
            f"  estimated time: {_duration(self.seconds)} (a rough guess from the stated per-pass "
            "times; a GPU is much faster, a busy machine slower)"
        )
        return "\n".join(lines)


def estimate(config: QualityConfig, queries: int, labels: int, train_rows: int) -> Estimate:
    """The work of ``config`` on ``queries`` test rows of ``labels`` labels, and its time."""
    arms = plan(config)
    folder = Path(config.out_dir) / "arms"
    finished = sum((folder / f"{arm.id}.json").is_file() for arm in arms)
    passes = 0
    steps = 0
    seconds = 0.0
    for arm in arms:
        if arm.kind == "embedding":
            continue
        n = _passes(config, arm, queries)
        passes += n
        seconds += n * _pass_seconds(config, labels, arm.k)
        if arm.kind == "finetune":
            arm_steps = config.train_steps(arm.name, train_rows)
            steps += arm_steps
            seconds += arm_steps * STEP_SECONDS_PER_ROW * config.train_batch_size
    return Estimate(len(arms), finished, queries, labels, train_rows, passes, steps, seconds)


def _passes(config: QualityConfig, arm: Arm, queries: int) -> int:
    """The prompts an LM arm has answered: its queries, their content-free twins, a dev split."""
    if arm.mode is not None:
        spec = config.mode(arm.mode)
        n = queries + (config.dev_queries if spec.tune_prior else 0)
        return 2 * n if spec.options.calibration == "content-free" else n
    calibrated = arm.kind != "finetune" and (config.calibrate or arm.calibrated)
    return 2 * queries if calibrated else queries


def _pass_seconds(config: QualityConfig, labels: int, k: int) -> float:
    if config.endpoint_model is not None:
        return ENDPOINT_SECONDS
    tokens = 40 + 25 * k
    return PROMPT_SECONDS + LABEL_SECONDS * labels + TOKEN_SECONDS * tokens


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"about {seconds:.0f} s"
    if seconds < 5400:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"
