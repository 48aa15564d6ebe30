"""Generation options and the stop-sequence scanner used by streaming generation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kshot.errors import ConfigError
from kshot.model.base import cut_at_stop
from kshot.model.generation import GenerationOptions, StopScanner


def stream(chunks: list[str], stop: list[str]) -> tuple[str, bool]:
    scanner = StopScanner(stop)
    out = "".join(scanner.feed(c) for c in chunks)
    return (out if scanner.stopped else out + scanner.flush()), scanner.stopped


def test_a_stop_split_over_chunks_is_cut_and_nothing_of_it_leaks() -> None:
    scanner = StopScanner(["\nQ:"])
    assert scanner.feed("Paris.\n") == "Paris."  # "\n" might start the stop: held
    assert scanner.feed("Q") == ""
    assert scanner.feed(": next") == ""
    assert scanner.stopped


def test_a_false_start_is_released() -> None:
    scanner = StopScanner(["END"])
    assert scanner.feed("the EN") == "the "
    assert scanner.feed("D?") == "" and scanner.stopped
    assert stream(["the EN", "tire"], ["END"]) == ("the ENtire", False)


@given(
    st.text(alphabet="abc\n", max_size=30),
    st.lists(st.text(alphabet="abc\n", min_size=1, max_size=3), max_size=3),
    st.lists(st.integers(1, 5), max_size=10),
)
def test_streamed_equals_cut_of_the_whole(text: str, stop: list[str], sizes: list[int]) -> None:
    chunks, i = [], 0
    for n in sizes:
        chunks.append(text[i : i + n])
        i += n
    chunks.append(text[i:])
    out, stopped = stream(chunks, stop)
    assert out == cut_at_stop(text, stop)
    assert stopped == any(s in text for s in stop)


@pytest.mark.parametrize("chunks", [["aca"], ["a", "c", "a"], ["ac", "a"]])
def test_the_stop_that_completes_first_wins(chunks: list[str]) -> None:
    # "c" is complete after two characters, before "aca" could be: generation ends there.
    assert cut_at_stop("aca", ["c", "aca"]) == "a"
    assert stream(chunks, ["c", "aca"]) == ("a", True)


@pytest.mark.parametrize(
    "bad",
    [{"max_new_tokens": 0}, {"temperature": -1}, {"top_p": 0}, {"top_p": 1.5}, {"stop": "x"}],
)
def test_bad_options_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        GenerationOptions(**bad)  # type: ignore[arg-type]
