"""The locks of an index: one writing process per directory, and readers or a writer per index.

:class:`WriterLock` is the cross-process lock; :class:`ReadWriteLock` the in-process one that
lets concurrent readers see the state before a write or after it, never half of it.

A writer holds an exclusive ``flock`` on ``writer.lock`` inside the index directory for as long
as it lives, with its pid written in the file so that a refused opener can say who holds it. The
kernel drops the lock when the holder's file descriptor closes, so a writer killed with SIGKILL
leaves no stale lock behind (the pid in the file may stay; only the ``flock`` counts).

``flock`` locks belong to an open file description, so a second writer in the *same* process (a
second ``ExampleIndex.load`` of the directory) is refused just like another process.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

from kshot.errors import IndexLockedError

__all__ = ["LOCK_NAME", "ReadWriteLock", "WriterLock", "lock_holder"]

#: The lock file inside an index directory.
LOCK_NAME = "writer.lock"


def lock_holder(directory: Path) -> int | None:
    """The pid written in ``directory``'s lock file, if any (it may name a finished process)."""
    try:
        text = (directory / LOCK_NAME).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


class WriterLock:
    """An exclusive ``flock`` on ``directory/writer.lock``, taken at once or refused."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        path = directory / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise IndexLockedError(
                f"cannot open {path} to lock the index for writing ({exc.strerror}); "
                "open it read-only (read_only=True, --read-only) to read it"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise IndexLockedError(f"cannot lock {path}: {exc.strerror}") from exc
            raise IndexLockedError(_held_message(directory)) from None
        # Write the pid only once the lock is ours; a refused opener never touches the file.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        # An index dropped without close() still lets go of the lock when it is collected.
        self._finalizer = weakref.finalize(self, os.close, fd)

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock."""
        return self._finalizer.alive

    def release(self) -> None:
        """Let go of the lock (closing the descriptor releases the ``flock``); idempotent."""
        self._finalizer()


def _held_message(directory: Path) -> str:
    pid = lock_holder(directory)
    read_only = "open this index read-only (--read-only, ExampleIndex.load(path, read_only=True))"
    if pid == os.getpid():
        return (
            f"{directory} is open for writing by this process (pid {pid}), in another "
            f"ExampleIndex: close() that one first, or {read_only}"
        )
    who = f"process {pid}" if pid is not None else "another process"
    return (
        f"{directory} is open for writing by {who}; an index has one writer at a time: stop "
        f"that one, or {read_only}"
    )


class ReadWriteLock:
    """Many readers or one writer, within a process; a waiting writer holds back new readers."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0
        self._mine = threading.local()

    def held_here(self) -> bool:
        """Whether the calling thread is inside :meth:`read` (it must not wait for a writer)."""
        return bool(getattr(self._mine, "depth", 0))

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        """Hold the lock shared: writers wait until every reader has left."""
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        self._mine.depth = getattr(self._mine, "depth", 0) + 1
        try:
            yield
        finally:
            self._mine.depth -= 1
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        """Hold the lock exclusively."""
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()
