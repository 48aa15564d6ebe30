"""Prompt assembly: safe templates, order policies, token budgets, text and chat prompts."""

from kshot.prompt.assembler import PromptAssembler
from kshot.prompt.budget import (
    ChatTokenCounter,
    HFTokenCounter,
    TokenCounter,
    WhitespaceCounter,
    default_counter,
    smollm2_tokenizer,
)
from kshot.prompt.order import Order, order_examples
from kshot.prompt.template import PromptTemplate

__all__ = [
    "ChatTokenCounter",
    "HFTokenCounter",
    "Order",
    "PromptAssembler",
    "PromptTemplate",
    "TokenCounter",
    "WhitespaceCounter",
    "default_counter",
    "order_examples",
    "smollm2_tokenizer",
]
