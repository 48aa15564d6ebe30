"""The benchmarks' command lines keep their options: ``kshot bench ...`` and the scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def _help(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args, "--help"],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


QUALITY_OPTIONS = ("--config", "--dataset", "--train-file", "--ks", "--baselines", "--calibrate")
QUALITY_OPTIONS += (
    "--input-field",
    "--label-field",
    "--output-field",
    "--base-url",
    "--instruction",
)
SPEED_OPTIONS = ("--sizes", "--scale", "--no-compare", "--onnx-path", "--nltk-path", "--threads")


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        (("-m", "kshot.cli", "bench", "quality"), "Usage: python -m kshot.cli bench quality"),
        (("-m", "benchmarks.quality.run"), "Usage: python -m benchmarks.quality.run"),
    ],
    ids=["kshot-bench-quality", "benchmarks-quality-run"],
)
def test_quality_help(command: tuple[str, ...], usage: str) -> None:
    text = _help(*command)
    assert usage in text
    assert "In-context arms vs fine-tuned baselines" in text
    for option in QUALITY_OPTIONS:
        assert option in text


@pytest.mark.parametrize(
    "command",
    [("-m", "kshot.cli", "bench", "speed"), ("-m", "benchmarks.speed.run")],
    ids=["kshot-bench-speed", "benchmarks-speed-run"],
)
def test_speed_help(command: tuple[str, ...]) -> None:
    text = _help(*command)
    assert "usage: kshot-bench-speed" in text
    assert "Speed benchmark: kshot against LangChain's example selectors" in text
    for option in SPEED_OPTIONS:
        assert option in text


@pytest.mark.parametrize(
    "command",
    [("-m", "kshot.cli", "bench", "quality"), ("-m", "benchmarks.quality.run")],
    ids=["kshot-bench-quality", "benchmarks-quality-run"],
)
def test_quality_bad_setting_is_one_line_and_exit_2(command: tuple[str, ...]) -> None:
    done = subprocess.run(
        [sys.executable, *command, "--dataset", "banking77", "--ks", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: every k must be at least 1 (k = 0 is the zero-shot arm): (0,)"
    ]
