"""Selectors: strategies that pick the k examples that help a model most, by registered name."""

from kshot.selector.base import (
    BaseSelector,
    Param,
    Selector,
    SelectorSpec,
    available_selectors,
    build_selector,
    register,
    selector_class,
)

__all__ = [
    "BaseSelector",
    "Param",
    "Selector",
    "SelectorSpec",
    "available_selectors",
    "build_selector",
    "register",
    "selector_class",
]
