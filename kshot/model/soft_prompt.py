"""A causal LM wrapped so that every sequence starts with a learned soft prompt.

Prompt tuning (peft's ``PromptTuningConfig``) learns ``n`` virtual token embeddings. For
inference with :class:`~kshot.model.transformers_lm.TransformersLM` (label scoring with a shared
prompt cache), :class:`SoftPromptLM` prepends them as input embeddings at positions ``0..n-1`` on
the first pass; later passes (with a key/value cache) get the attention mask extended and the
positions shifted by ``n``, matching how peft trained them. Importing this module imports torch.
"""

from __future__ import annotations

from typing import Any

import torch

from kshot.errors import ConfigError

__all__ = ["SoftPromptLM"]


class SoftPromptLM(torch.nn.Module):
    """``base`` with the soft prompt ``soft`` (shape ``(n_virtual, hidden)``) in front.

    Args:
        base: a transformers causal LM (anything with ``get_input_embeddings``, ``generate``
            and the usual ``forward`` keywords).
        soft: the learned virtual token embeddings.
    """

    soft: torch.Tensor

    def __init__(self, base: Any, soft: torch.Tensor) -> None:
        super().__init__()
        self.base = base
        self.register_buffer("soft", soft.to(base.device, base.dtype))
        self.n_virtual = int(soft.shape[0])

    @property
    def config(self) -> Any:
        """The base model's config (read by generation and scoring code)."""
        return self.base.config

    @property
    def generation_config(self) -> Any:
        """The base model's generation config."""
        return self.base.generation_config

    @property
    def device(self) -> torch.device:
        """The base model's device."""
        device: torch.device = self.base.device
        return device

    def _extend(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rows = input_ids.shape[0]
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if attention_mask.dim() == 4:
            # A custom (rows, 1, queries, keys) mask: boolean (True = may attend) or additive
            # (0 = may attend). Every query may attend to the virtual tokens in front.
            shape = (*attention_mask.shape[:-1], self.n_virtual)
            prefix = (
                attention_mask.new_ones(shape)
                if attention_mask.dtype == torch.bool
                else attention_mask.new_zeros(shape)
            )
        else:
            prefix = attention_mask.new_ones((rows, self.n_virtual))
        if position_ids is None:
            if attention_mask.dim() != 2:
                raise ConfigError("a 4-D attention mask needs explicit position ids")
            position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        return torch.cat([prefix, attention_mask], dim=-1), position_ids + self.n_virtual

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Run the base model with the soft prompt in front (only on the first pass)."""
        mask, positions = self._extend(input_ids, attention_mask, position_ids)
        first = past_key_values is None or past_key_values.get_seq_length() == 0
        if not first:
            return self.base(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=past_key_values,
                **kwargs,
            )
        rows = input_ids.shape[0]
        embeds = self.base.get_input_embeddings()(input_ids)
        prefix = self.soft[None].expand(rows, -1, -1)
        virtual = torch.arange(self.n_virtual, device=input_ids.device)[None].expand(rows, -1)
        return self.base(
            inputs_embeds=torch.cat([prefix, embeds], dim=1),
            attention_mask=mask,
            position_ids=torch.cat([virtual, positions], dim=1),
            past_key_values=past_key_values,
            **kwargs,
        )

    def generate(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> torch.Tensor:
        """Generate with the soft prompt in front; return the prompt ids and the new ids."""
        mask, _ = self._extend(input_ids, attention_mask, None)
        rows = input_ids.shape[0]
        embeds = self.base.get_input_embeddings()(input_ids)
        prefix = self.soft[None].expand(rows, -1, -1)
        new = self.base.generate(
            inputs_embeds=torch.cat([prefix, embeds], dim=1), attention_mask=mask, **kwargs
        )
        return torch.cat([input_ids, new], dim=1)
