"""TransformersLM with the real bundled SmolLM2-135M-Instruct model."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from kshot.errors import ConfigError
from kshot.model import LanguageModel, TransformersLM
from kshot.model.transformers_lm import _LabelTrie
from kshot.prompt import HFTokenCounter, PromptAssembler, PromptTemplate
from kshot.types import Example, Scored

FEW_SHOT_YES = "Q: Say no.\nA: no\n\nQ: Say yes.\nA: yes\n\nQ: Say no.\nA: no\n\nQ: Say yes.\nA:"


def test_scores_rank_forced_answer_and_equal_naive(smollm2_lm: TransformersLM) -> None:
    """The one real-model test of the default run."""
    lm = smollm2_lm
    assert isinstance(lm, LanguageModel)
    prompts = ["The capital of France is", FEW_SHOT_YES]
    # the last two share the nodes of " London is" in the continuation pass's prefix tree
    labels = [" Paris", " banana", " yes", " no", " London is big", " London is small"]
    scores = lm.score_labels(prompts, labels)
    assert scores.shape == (2, 6) and scores.dtype == np.float64
    assert scores[0, 0] > scores[0, 1] + 5  # Paris >> banana
    assert scores[1].argmax() == 2  # yes
    assert np.all(scores < 0)
    # shared prompt cache (batched, left-padded) == one full forward pass per label
    np.testing.assert_allclose(scores, lm.score_labels_naive(prompts, labels), atol=1e-3)
    # a single prompt takes the expanded (not indexed) cache path
    one = lm.score_labels([FEW_SHOT_YES], labels)
    np.testing.assert_allclose(one, scores[1:], atol=1e-3)


def test_label_trie_shares_prefixes_and_scores_every_later_token() -> None:
    # labels as token ids: [5, 6, 7] and [5, 6, 8] share the node path 5 -> 6
    trie = _LabelTrie([[5, 6, 7], [5, 6, 8], [9], [], [5, 2]])
    assert trie.tokens == [5, 6]  # first tokens come from the prompt's logits, last feed nothing
    assert trie.depths == [0, 1]
    assert trie.ancestors == [[0], [0, 1]]
    assert sorted(trie.picks) == sorted([(0, 6, 0), (1, 7, 0), (0, 6, 1), (1, 8, 1), (0, 2, 4)])
    assert _LabelTrie([[1], [2]]).tokens == []


@pytest.mark.slow
def test_chat_prompts_and_chunked_scoring_equal_naive(smollm2_lm: TransformersLM) -> None:
    lm = smollm2_lm
    chat = [{"role": "user", "content": "What is the capital of France? One word."}]
    prompts = [chat, "Colour of the sky:", FEW_SHOT_YES]
    labels = ["Paris", " blue", " yes", "", " the capital of France", "Banana"]
    scores = lm.score_labels(prompts, labels)
    assert scores[0, 0] > scores[0, [1, 2, 4, 5]].max()  # Paris
    assert scores[:, 3].tolist() == [0.0, 0.0, 0.0]  # an empty label
    naive = lm.score_labels_naive(prompts, labels)
    np.testing.assert_allclose(scores, naive, atol=1e-3)
    old = lm.max_batch_tokens, lm.batch_size
    lm.max_batch_tokens, lm.batch_size = 40, 2  # forces many chunks and prompt batches
    try:
        np.testing.assert_allclose(lm.score_labels(prompts, labels), naive, atol=1e-3)
    finally:
        lm.max_batch_tokens, lm.batch_size = old


@pytest.mark.slow
def test_label_boundary_falls_back_to_label_tokens(smollm2_lm: TransformersLM) -> None:
    lm = smollm2_lm
    prompt = "The capital of France is "  # a trailing space merges with the label
    text, special = lm.prompt_text(prompt)
    ids = lm._encode(text, special)
    conts = lm._label_tokens(ids, text, special, ["Paris", " Paris"])
    assert conts[0] == lm._encode("Paris", False)
    assert all(conts)


@pytest.mark.slow
def test_contextual_calibration(smollm2_lm: TransformersLM) -> None:
    lm = smollm2_lm
    a = PromptAssembler(
        PromptTemplate(
            example="Review: {input}\nSentiment: {output}", query="Review: {input}\nSentiment:"
        ),
        HFTokenCounter(lm.tokenizer),
    )
    shots = [
        Scored(Example("A wonderful, moving film.", "positive", id="1"), 1.0),
        Scored(Example("Dull and far too long.", "negative", id="2"), 0.9),
    ]
    prompt = a.assemble("An absolute delight from start to finish.", shots)
    content_free = a.with_query(prompt, "N/A")
    labels = [" positive", " negative"]
    raw = lm.score_labels([prompt], labels)
    cal = lm.score_labels([prompt], labels, calibrate_with=[content_free])
    np.testing.assert_allclose(np.exp(cal).sum(-1), 1.0)
    cf = lm.score_labels([content_free], labels)
    expected = raw - np.logaddexp.reduce(raw, -1, keepdims=True)
    expected -= cf - np.logaddexp.reduce(cf, -1, keepdims=True)
    expected -= np.logaddexp.reduce(expected, -1, keepdims=True)
    np.testing.assert_allclose(cal, expected, atol=1e-6)
    assert cal[0].argmax() == 0
    with pytest.raises(ConfigError, match="one per prompt"):
        lm.score_labels([prompt], labels, calibrate_with=[content_free, content_free])


@pytest.mark.slow
def test_generate_greedy_new_text_only(smollm2_lm: TransformersLM) -> None:
    lm = smollm2_lm
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    out = lm.generate([FEW_SHOT_YES, chat], max_new_tokens=12)
    assert out[0].startswith(" yes")
    assert "Paris" in out[1]
    assert lm.generate([FEW_SHOT_YES, chat], max_new_tokens=12) == out  # deterministic
    assert lm.generate([FEW_SHOT_YES], max_new_tokens=12, stop=["\n"]) == [" yes"]
    with pytest.raises(ConfigError):
        lm.generate(FEW_SHOT_YES)  # type: ignore[arg-type]


@pytest.mark.slow
def test_cached_load_is_fast_and_identical(smollm2_lm: TransformersLM, tmp_path: Path) -> None:
    started = time.perf_counter()
    again = TransformersLM(device="cpu")
    assert time.perf_counter() - started < 10
    np.testing.assert_allclose(
        again.score_labels(["The capital of France is"], [" Paris"]),
        smollm2_lm.score_labels(["The capital of France is"], [" Paris"]),
        atol=1e-5,
    )
    # any transformers folder works too
    smollm2_lm.model.save_pretrained(tmp_path)
    smollm2_lm.tokenizer.save_pretrained(tmp_path)
    other = TransformersLM(tmp_path, device="cpu")
    assert other.name == str(tmp_path)
    assert other.score_labels([FEW_SHOT_YES], [" yes", " no"])[0].argmax() == 0


def test_sliding_window_is_read_from_the_config() -> None:
    from transformers import Gemma3TextConfig, LlamaConfig, MistralConfig, Qwen2Config

    from kshot.model.transformers_lm import _sliding_window

    assert _sliding_window(Gemma3TextConfig(sliding_window=512)) == 512
    assert _sliding_window(MistralConfig(sliding_window=256)) == 256
    assert _sliding_window(Qwen2Config()) is None  # declared, switched off
    assert _sliding_window(LlamaConfig()) is None
    full = Gemma3TextConfig(
        sliding_window=512, num_hidden_layers=2, layer_types=["full_attention"] * 2
    )
    assert _sliding_window(full) is None


def test_sliding_window_model_scores_prompts_longer_than_its_window(tmp_path: Path) -> None:
    """A tiny random Gemma 3 (window 8): the shared-cache pass would drop keys past the window.

    Short prompts take the prefix-tree pass, prompts that overflow the window one pass per
    label; both equal the reference. Before, a long prompt failed with a shape error.
    """
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from kshot.prompt import smollm2_tokenizer

    try:
        tokenizer = smollm2_tokenizer()
    except Exception as exc:  # pragma: no cover - the bundled package is missing
        pytest.skip(f"the SmolLM2 tokenizer is not available: {exc}")
    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        sliding_window=8,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    Gemma3ForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    lm = TransformersLM(tmp_path, device="cpu")
    prompts = ["Yes", "No", "Say yes or no, then say it again please:", FEW_SHOT_YES]
    labels = [" yes", " no", " London is big", " London is small"]
    scores = lm.score_labels(prompts, labels)
    np.testing.assert_allclose(scores, lm.score_labels_naive(prompts, labels), atol=1e-4)
