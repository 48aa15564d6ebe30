"""Language models to feed assembled prompts to: a local transformers model or an HTTP endpoint.

``TransformersLM`` and ``OpenAICompatibleLM`` are imported lazily, so that importing
``kshot.model`` does not import torch or transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kshot.model.base import LanguageModel, PromptInput, calibrate, log_softmax

if TYPE_CHECKING:
    from kshot.model.openai_compat import OpenAICompatibleLM
    from kshot.model.transformers_lm import TransformersLM

__all__ = [
    "LanguageModel",
    "OpenAICompatibleLM",
    "PromptInput",
    "TransformersLM",
    "calibrate",
    "log_softmax",
]


def __getattr__(name: str) -> Any:
    if name == "TransformersLM":
        from kshot.model.transformers_lm import TransformersLM

        return TransformersLM
    if name == "OpenAICompatibleLM":
        from kshot.model.openai_compat import OpenAICompatibleLM

        return OpenAICompatibleLM
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
