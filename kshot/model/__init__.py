"""Language models to feed assembled prompts to: a local transformers model or an HTTP endpoint.

``TransformersLM``, ``OpenAICompatibleLM`` and ``SoftPromptLM`` are imported lazily, so that
importing ``kshot.model`` does not import torch or transformers. :func:`predict_labels` turns any
model's label scores (or generations) into one class per prompt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kshot.model.base import LanguageModel, PromptInput, calibrate, log_softmax
from kshot.model.labels import predict_labels

if TYPE_CHECKING:
    from kshot.model.openai_compat import OpenAICompatibleLM
    from kshot.model.soft_prompt import SoftPromptLM
    from kshot.model.transformers_lm import TransformersLM

__all__ = [
    "LanguageModel",
    "OpenAICompatibleLM",
    "PromptInput",
    "SoftPromptLM",
    "TransformersLM",
    "calibrate",
    "log_softmax",
    "predict_labels",
]


def __getattr__(name: str) -> Any:
    if name == "TransformersLM":
        from kshot.model.transformers_lm import TransformersLM

        return TransformersLM
    if name == "OpenAICompatibleLM":
        from kshot.model.openai_compat import OpenAICompatibleLM

        return OpenAICompatibleLM
    if name == "SoftPromptLM":
        from kshot.model.soft_prompt import SoftPromptLM

        return SoftPromptLM
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
