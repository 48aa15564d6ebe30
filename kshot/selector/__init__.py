"""Selectors: strategies that pick the k examples that help a model most, by registered name."""

# Importing every built-in strategy runs its @register, whichever kshot.selector module a caller
# imports first (the package loads before any of its modules), so the registry needs no lazy
# import back into the package.
from kshot.selector import strategies  # noqa: F401
from kshot.selector.balanced import BalancedParams
from kshot.selector.base import (
    BaseSelector,
    Ranking,
    Selector,
    SelectorSpec,
    available_selectors,
    build_selector,
    register,
    selector_class,
)
from kshot.selector.coverage import CoverageParams
from kshot.selector.dpp import DPPParams
from kshot.selector.hybrid import HybridParams
from kshot.selector.mmr import MMRParams
from kshot.selector.params import Param, SelectorParams, param
from kshot.selector.randomized import RandomParams
from kshot.selector.view import IndexView, LexicalView

__all__ = [
    "BalancedParams",
    "BaseSelector",
    "CoverageParams",
    "DPPParams",
    "HybridParams",
    "IndexView",
    "LexicalView",
    "MMRParams",
    "Param",
    "RandomParams",
    "Ranking",
    "Selector",
    "SelectorParams",
    "SelectorSpec",
    "available_selectors",
    "build_selector",
    "param",
    "register",
    "selector_class",
]
