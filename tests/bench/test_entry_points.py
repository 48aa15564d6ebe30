"""The benchmarks' command lines keep their options: ``kshot bench ...`` and the scripts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def _help(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


QUALITY_OPTIONS = ("--config", "--dataset", "--train-file", "--ks", "--baselines", "--calibrate")
SPEED_OPTIONS = ("--sizes", "--scale", "--no-compare", "--onnx-path", "--nltk-path", "--threads")


@pytest.mark.parametrize(
    "command",
    [("-m", "kshot.cli", "bench", "quality"), ("-m", "benchmarks.quality.run")],
    ids=["kshot-bench-quality", "benchmarks-quality-run"],
)
def test_quality_help(command: tuple[str, ...]) -> None:
    text = _help(*command)
    assert "usage: kshot-bench-quality" in text
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
