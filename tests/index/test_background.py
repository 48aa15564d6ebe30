"""Background: one call on its own thread, its value or its error handed to result()."""

from __future__ import annotations

import threading

import pytest

from kshot.index.background import Background


def test_result_is_the_calls_value_computed_on_another_thread() -> None:
    caller = threading.get_ident()
    job = Background(lambda: threading.get_ident(), name="test-background")
    assert job.result() != caller


def test_result_raises_the_calls_error() -> None:
    def fail() -> int:
        raise ValueError("bad vectors")

    job = Background(fail, name="test-background")
    with pytest.raises(ValueError, match="bad vectors"):
        job.result()


def test_result_waits_for_a_call_still_running() -> None:
    release = threading.Event()
    started = threading.Event()

    def wait_for_release() -> str:
        started.set()
        release.wait(5)
        return "done"

    job = Background(wait_for_release, name="test-background")
    assert started.wait(5)
    threading.Timer(0.05, release.set).start()
    assert job.result() == "done"
    assert release.is_set()


def test_the_call_is_dropped_once_run() -> None:
    held = bytearray(8)
    job = Background(lambda: len(held), name="test-background")
    assert job.result() == 8
    assert job._call is None  # what it closed over (a corpus of vectors) can be freed
