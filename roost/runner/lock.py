"""One ``roost up`` per ROOT: a lock file in ``ROOT/run`` that holds the runner's pid.

The lock is an ``flock`` on the file, not the file's existence: the kernel drops it when the
runner dies however it dies, so a lock left by a killed runner is seen as stale without
guessing from pids. The pid inside is only for messages. The file is never removed (removing
a lock file races with a second runner opening it); a clean exit empties it instead, so a
pid found in an unlocked file means the last runner did not stop cleanly.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

LOCK_NAME = "roost.pid"


class AlreadyRunning(RuntimeError):
    """Another ``roost up`` holds the lock; ``pid`` is its process id when known."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.pid = pid
        who = f" (pid {pid})" if pid else ""
        super().__init__(f"another `roost up`{who} is already running for this ROOT ({path})")


class RunLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> int | None:
        """Take the lock; returns the pid a previous runner left behind, if it crashed."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise AlreadyRunning(self.path, pid) from None
        stale = _read_pid(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return stale

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)
        self._fd = None


def is_held(path: Path) -> bool:
    """Whether a ``roost up`` holds the lock now; the file is left as it is."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
