"""One call run on a thread of its own, its result (or its error) collected later."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Background"]

T = TypeVar("T")


class Background(Generic[T]):
    """Run ``call()`` on a daemon thread at once; :meth:`result` waits and returns or raises.

    A daemon thread, so that an interrupted caller (Ctrl-C during a build) is not held until the
    call finishes; a caller that gives up on the result simply drops the object.
    """

    def __init__(self, call: Callable[[], T], name: str) -> None:
        self._call: Callable[[], T] | None = call
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._call is not None
        try:
            self._value = self._call()
        except BaseException as exc:  # handed to the caller of result()
            self._error = exc
        finally:
            self._call = None  # what the call holds (a corpus of vectors) is not kept with it

    def result(self) -> T:
        """Wait for the call; return its value or raise its exception."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set when no error was raised
