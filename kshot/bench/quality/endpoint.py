"""The in-context arms on a user's own deployed model: an OpenAI-compatible endpoint.

``model="openai:NAME"`` with ``base_url`` sends the zero-shot and in-context arms to that server
(:class:`~kshot.model.OpenAICompatibleLM`) as chat prompts: the instructions, followed by the
list of labels to answer with, as the system message; each example a user and an assistant turn;
the query the last user turn. The model generates (temperature 0, up to the first newline) and
the answer is matched to the label texts exactly after folding case and whitespace
(:func:`~kshot.model.predict_labels` with ``mode="generate"``); an answer that matches no label
counts as wrong and is counted in the arm's ``invalid_predictions``.

The endpoint's tokenizer is not known here: prompt tokens are counted with the bundled SmolLM2
tokenizer, and results.json says so.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kshot.bench.quality.config import QualityConfig
from kshot.errors import ConfigError

if TYPE_CHECKING:
    from kshot.model.base import LanguageModel
    from kshot.model.openai_compat import OpenAICompatibleLM

__all__ = ["instructions_for", "load_endpoint", "model_info"]


def load_endpoint(config: QualityConfig) -> OpenAICompatibleLM:
    """The endpoint of ``config`` (``model="openai:NAME"``), its key read from ``api_key_env``.

    Raises:
        ConfigError: ``api_key_env`` names a variable that is not set.
    """
    from kshot.model.openai_compat import OpenAICompatibleLM

    name = config.endpoint_model
    if name is None or config.base_url is None:
        raise ConfigError(f"model {config.model!r} is not an endpoint (openai:NAME with base_url)")
    key = None
    if config.api_key_env is not None:
        key = os.environ.get(config.api_key_env)
        if not key:
            raise ConfigError(
                f"the environment variable {config.api_key_env} (--api-key-env) is not set; "
                "export the endpoint's API key in it"
            )
    return OpenAICompatibleLM(config.base_url, name, api_key=key, timeout=120.0)


def instructions_for(config: QualityConfig, label_texts: Sequence[str]) -> str:
    """The instructions the prompts start with; an endpoint's also list the labels.

    A model that generates its answer has to know the labels it may answer with (a local model
    scores each label instead, so its prompt needs no list).
    """
    if config.endpoint_model is None:
        return config.resolved_instructions
    labels = "; ".join(label_texts)
    return (
        f"{config.resolved_instructions} Answer with exactly one of these labels and nothing "
        f"else: {labels}."
    )


def model_info(lm: LanguageModel | None, config: QualityConfig) -> dict[str, Any]:
    """The ``model`` section of results.json: a local model's size and load time, or an endpoint."""
    if config.endpoint_model is not None:
        return {
            "name": config.endpoint_model,
            "endpoint": config.base_url,
            "parameters": None,
            "load_seconds": None,
            "device": "endpoint",
            "prompt_tokens_counted_with": "the bundled SmolLM2 tokenizer (the endpoint's own "
            "tokenizer may count differently)",
        }
    if lm is None:
        return {"name": None, "parameters": None, "load_seconds": None, "device": None}
    model = getattr(lm, "model", None)
    return {
        "name": lm.name,
        "parameters": None if model is None else sum(p.numel() for p in model.parameters()),
        "load_seconds": getattr(lm, "load_seconds", None),
        "device": getattr(lm, "device", None),
    }
