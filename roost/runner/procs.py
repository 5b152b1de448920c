"""What the kernel knows about processes, read from /proc, and how to end them.

The runner cannot rely on process groups alone: ``postfix start-fg`` runs the Postfix master
as a child of a shell, and the master calls ``setsid()``, so it leaves the group the runner
made. The runner therefore becomes a *child subreaper*: any process whose parent dies is
handed to the runner instead of init, where it can be found (parent pid == runner pid) and
stopped. A process is identified by its pid *and* its start time, so a recycled pid is never
mistaken for an old daemon.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from dataclasses import dataclass

_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    pgid: int
    state: str
    start_ticks: int

    @property
    def zombie(self) -> bool:
        return self.state in ("Z", "X")


def read_proc(pid: int) -> ProcInfo | None:
    """The process's parent, group, state and start time; None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = raw[raw.rfind(")") + 2 :].split()
    try:
        return ProcInfo(pid, int(rest[1]), int(rest[2]), rest[0], int(rest[19]))
    except (IndexError, ValueError):
        return None


def all_processes() -> list[ProcInfo]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = read_proc(int(entry))
            if info is not None:
                found.append(info)
    return found


def start_ticks(pid: int) -> int | None:
    info = read_proc(pid)
    return None if info is None or info.zombie else info.start_ticks


def is_same_process(pid: int, ticks: int | None) -> bool:
    """True when ``pid`` is alive and, if ``ticks`` is given, is the process that started then."""
    current = start_ticks(pid)
    return current is not None and (ticks is None or current == ticks)


def become_subreaper() -> bool:
    """Ask Linux to hand orphaned descendants to this process; False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def descendants(root: int, table: list[ProcInfo] | None = None) -> list[ProcInfo]:
    """Every live process below ``root`` in the parent tree (not ``root`` itself)."""
    table = all_processes() if table is None else table
    children: dict[int, list[ProcInfo]] = {}
    for info in table:
        children.setdefault(info.ppid, []).append(info)
    found: list[ProcInfo] = []
    todo = [root]
    while todo:
        for info in children.get(todo.pop(), []):
            if not info.zombie:
                found.append(info)
                todo.append(info.pid)
    return found


def group_members(pgid: int, table: list[ProcInfo] | None = None) -> list[ProcInfo]:
    table = all_processes() if table is None else table
    return [info for info in table if info.pgid == pgid and not info.zombie]


def children(parent: int) -> list[ProcInfo]:
    """The live and dead children of ``parent``, from the lists the kernel keeps for each of
    its threads (``/proc/PID/task/TID/children``, proc(5)); a scan of every process where
    the kernel keeps none (CONFIG_PROC_CHILDREN)."""
    try:
        threads = os.listdir(f"/proc/{parent}/task")
        pids: set[int] = set()
        for thread in threads:
            with open(f"/proc/{parent}/task/{thread}/children", "rb") as handle:
                pids.update(int(pid) for pid in handle.read().split())
    except FileNotFoundError:
        return [info for info in all_processes() if info.ppid == parent]
    found = (read_proc(pid) for pid in sorted(pids))
    return [info for info in found if info is not None and info.ppid == parent]


def reap_zombies(parent: int, keep: set[int]) -> None:
    """Collect the exit status of adopted orphans that died, so they do not linger.

    Only specific pids are waited for: the event loop's child watcher waits for the pids
    it started (``keep``), and a ``waitpid(-1)`` here would steal their status.
    """
    for info in children(parent):
        if info.zombie and info.pid not in keep:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(info.pid, os.WNOHANG)


def signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def signal_process(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


def signal_name(returncode: int) -> str:
    """``1`` for an exit status, ``signal SIGKILL`` for a negative (signal) return code."""
    if returncode >= 0:
        return str(returncode)
    try:
        return f"signal {signal.Signals(-returncode).name}"
    except ValueError:
        return f"signal {-returncode}"
