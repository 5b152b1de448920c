"""``roost status``: is the stack up, and does each daemon answer?

It trusts nothing it cannot check: the status file says which pids ``roost up`` started,
but a pid is only believed alive when a process with the same start time still has it, and
a service only counts as running when its sockets accept a connection right now.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any, TextIO

from roost.layout import Layout
from roost.runner import procs
from roost.runner.probe import first_silent
from roost.runner.statusfile import RUNNING, read_status, readiness_from_json
from roost.settings import Settings
from roost.tls import describe_served

EXIT_ALL_RUNNING = 0
EXIT_NOT_ALL_RUNNING = 1
EXIT_NOT_UP = 3


def status(settings: Settings, out: TextIO | None = None) -> int:
    """Print one line per service; 0 all running, 1 some not, 3 ``roost up`` not running."""
    out = out or sys.stdout
    layout = Layout(settings)
    data = read_status(layout.runner_status)
    if data is None:
        print(f"roost: `roost up` is not running for {layout.root}", file=out)
        return EXIT_NOT_UP
    runner = data.get("runner") or {}
    runner_pid = runner.get("pid")
    if not isinstance(runner_pid, int) or not procs.is_same_process(
        runner_pid, runner.get("start_ticks")
    ):
        print(
            f"roost: `roost up` is not running for {layout.root} (it last ran as pid {runner_pid})",
            file=out,
        )
        return EXIT_NOT_UP
    services: dict[str, dict[str, Any]] = data["services"]
    verdicts = asyncio.run(_check_all(services))
    rows = []
    healthy = True
    now = time.time()
    for (name, entry), (state, ok) in zip(services.items(), verdicts, strict=True):
        healthy = healthy and ok
        pid = entry.get("pid")
        since = float(entry.get("since") or now)
        age = _duration(now - since)
        rows.append(
            [
                name,
                state,
                f"pid {pid}" if pid else "-",
                f"up {age}" if ok else f"for {age}",
                f"restarts {entry.get('restarts', 0)}",
            ]
        )
    for line in _table(rows):
        print(line, file=out)
    for line in describe_served(layout):
        print(line, file=out)
    return EXIT_ALL_RUNNING if healthy else EXIT_NOT_ALL_RUNNING


async def _check_all(services: dict[str, dict[str, Any]]) -> list[tuple[str, bool]]:
    return list(await asyncio.gather(*(_check(entry) for entry in services.values())))


async def _check(entry: dict[str, Any]) -> tuple[str, bool]:
    """The state to show and whether the service counts as running."""
    state = str(entry.get("state", "unknown"))
    if state != RUNNING:
        return state, False
    pid = entry.get("pid")
    if not isinstance(pid, int) or not procs.is_same_process(pid, entry.get("start_ticks")):
        return "dead", False
    silent = await first_silent(readiness_from_json(entry.get("readiness") or {}))
    if silent is not None:
        return f"not answering on {silent}", False
    return RUNNING, True


def _table(rows: list[list[str]]) -> list[str]:
    """Rows as lines whose columns line up, two spaces apart."""
    if not rows:
        return []
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"
