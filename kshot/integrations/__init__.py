"""Adapters to other frameworks, each behind its optional extra.

``kshot.integrations.langchain`` (extra ``langchain``) offers :class:`KshotExampleSelector`, a
LangChain ``BaseExampleSelector``. Importing this package needs no extra; importing an adapter
without its extra raises :class:`~kshot.errors.MissingDependencyError` with the install hint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kshot.integrations.langchain import KshotExampleSelector

__all__ = ["KshotExampleSelector"]


def __getattr__(name: str) -> Any:
    if name == "KshotExampleSelector":
        from kshot.integrations.langchain import KshotExampleSelector

        return KshotExampleSelector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
