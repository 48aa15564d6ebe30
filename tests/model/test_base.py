from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kshot.errors import ConfigError
from kshot.model import LanguageModel, calibrate, log_softmax
from kshot.model.base import as_prompt_input, is_single_prompt
from kshot.types import Prompt


def test_log_softmax_normalises() -> None:
    out = log_softmax(np.array([[0.0, np.log(3.0)], [-1000.0, -1000.0]]))
    np.testing.assert_allclose(np.exp(out), [[0.25, 0.75], [0.5, 0.5]])


@given(arrays(np.float64, (3, 4), elements=st.floats(-50, 0)))
def test_calibrate_returns_distributions(scores: np.ndarray) -> None:
    out = calibrate(scores, scores[0])
    np.testing.assert_allclose(np.exp(out).sum(-1), 1.0)
    # the content-free prompt itself becomes uniform
    np.testing.assert_allclose(np.exp(out[0]), 0.25)


def test_calibrate_divides_by_content_free_probability() -> None:
    scores = np.log([[0.7, 0.3], [0.6, 0.4]])
    content_free = np.log([[0.8, 0.2], [0.5, 0.5]])  # one per prompt
    out = np.exp(calibrate(scores, content_free))
    expected0 = np.array([0.7 / 0.8, 0.3 / 0.2])
    np.testing.assert_allclose(out[0], expected0 / expected0.sum())
    np.testing.assert_allclose(out[1], [0.6, 0.4])
    assert out[0].argmax() == 1  # the bias towards label 0 is removed


def test_calibrate_shape_mismatch() -> None:
    with pytest.raises(ConfigError, match="do not match"):
        calibrate(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ConfigError):
        calibrate(np.zeros((2, 3)), np.zeros(2))


def test_prompt_inputs() -> None:
    assert as_prompt_input("x") == "x"
    p = Prompt("chat", None, ({"role": "user", "content": "hi"},), (), (), 3)
    assert as_prompt_input(p) == [{"role": "user", "content": "hi"}]
    assert as_prompt_input(Prompt("text", "t", None, (), (), 1)) == "t"
    with pytest.raises(ConfigError, match="'role' and 'content'"):
        as_prompt_input([{"content": "x"}])
    with pytest.raises(ConfigError):
        as_prompt_input(3)  # type: ignore[arg-type]
    assert is_single_prompt("x") and is_single_prompt([{"role": "user", "content": "x"}])
    assert not is_single_prompt(["x", "y"]) and not is_single_prompt([])


def test_protocol_is_runtime_checkable() -> None:
    class Fake:
        name = "fake"

        def generate(self, prompts, *, max_new_tokens=32, stop=None):  # type: ignore[no-untyped-def]
            return ["" for _ in prompts]

        def score_labels(self, prompts, labels):  # type: ignore[no-untyped-def]
            return np.zeros((len(prompts), len(labels)))

    assert isinstance(Fake(), LanguageModel)
    assert not isinstance(object(), LanguageModel)
