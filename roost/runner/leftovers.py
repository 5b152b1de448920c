"""Stopping what a killed ``roost up`` left running.

A runner killed with SIGKILL (or by the OOM killer) cannot stop its daemons, and they keep
the stack's ports and locks: the next ``roost up`` would only fail with "address in use".
The status file names each daemon's process groups with the start time of their leaders,
so the next runner can stop exactly those processes and nothing that merely reuses a pid.
"""

from __future__ import annotations

import signal
import time
from typing import Any

from roost.runner import procs


def recorded_groups(data: dict[str, Any] | None) -> list[tuple[str, int]]:
    """(service, pgid) of every recorded group whose leader is still the same process."""
    if not data:
        return []
    found = []
    for name, entry in data.get("services", {}).items():
        for item in entry.get("groups") or []:
            try:
                pgid, ticks = int(item[0]), int(item[1])
            except (TypeError, ValueError, IndexError):
                continue
            if procs.is_same_process(pgid, ticks):
                found.append((name, pgid))
    return found


def stop_leftovers(data: dict[str, Any] | None, grace: float = 10.0) -> list[str]:
    """SIGTERM the recorded groups still alive, SIGKILL them after ``grace``; messages."""
    groups = recorded_groups(data)
    if not groups:
        return []
    for _, pgid in groups:
        procs.signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(groups):
        time.sleep(0.1)
    killed = _alive(groups)
    for pgid in killed:
        procs.signal_group(pgid, signal.SIGKILL)
    names = sorted({name for name, _ in groups})
    return [f"stopped {', '.join(names)} left running by the previous `roost up`"]


def _alive(groups: list[tuple[str, int]]) -> list[int]:
    table = procs.all_processes()
    return [pgid for _, pgid in groups if procs.group_members(pgid, table)]
