"""The ``LOCK`` of a store directory, and making room for the entries a store needs there.

A store ``flock()``\\ s ``LOCK`` while it has the directory open; the pid written into the file only
names the holder in the :class:`~gwproactor.errors.StoreLocked` a second opener gets.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Callable

from gwproactor.store._common import StoreLocked
from gwproactor.store._scan import LOCK_NAME

__all__ = ["DirectoryLock", "lock_holder", "make_room_for"]


def lock_holder(fd: int) -> int | None:
    """The pid the holder of a store's LOCK wrote into it (None if unreadable)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def make_room_for(directory: str, name: str, is_right_kind: Callable[[int], bool]) -> None:
    """Rename a wrong kind of entry squatting on ``name``; recovery then moves it into set-aside/."""
    path = os.path.join(directory, name)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not is_right_kind(mode):
        target, n = f"{path}.misplaced", 0
        while os.path.lexists(target):
            n += 1
            target = f"{path}.misplaced{n}"
        os.rename(path, target)


class DirectoryLock:
    """The flock on ``directory/LOCK`` (see the module docstring).

    :param directory: the store directory (it must exist).
    """

    def __init__(self, directory: str) -> None:
        self._directory = directory
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write this process's pid into it.

        :raises StoreLocked: if another open store holds it.
        :raises OSError: if ``LOCK`` cannot be opened or locked for another reason.
        """
        fd = os.open(os.path.join(self._directory, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = lock_holder(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                if holder is None:
                    who = "another store (its pid is unknown)"
                else:
                    who = f"{'this process' if holder == os.getpid() else 'process'} {holder}"
                raise StoreLocked(f"event store {self._directory} is locked by {who}; stop it, or give this "
                                  "one a directory of its own", pid=holder) from None
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # a full disk must not stop the store from opening; the error just cannot name us
        self._fd = fd

    def release(self) -> None:
        """Release the lock (closing its descriptor); a no-op when not held."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
