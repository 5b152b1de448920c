"""The status file ``ROOT/run/status.json``: what ``roost up`` runs, for ``roost status``.

It is rewritten whole (write to a temporary file, then rename) at every change, so a reader
never sees half of it. It records, besides each service's pid and state, how to probe the
service and which process groups it had, so that ``roost status`` needs no service code and
a later ``roost up`` can stop what a killed runner left behind.

Shape::

    {"runner": {"pid": 10, "start_ticks": 99, "started": 1700000000.0},
     "updated": 1700000100.0,
     "services": {"redis": {"pid": 11, "start_ticks": 100, "state": "running",
                            "restarts": 0, "since": 1700000001.0,
                            "readiness": {"unix_sockets": ["/r/run/redis/redis.sock"],
                                          "tcp": []},
                            "groups": [[11, 100]]}, ...}}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from roost.services.base import Readiness

STARTING = "starting"
RUNNING = "running"
RESTARTING = "restarting"
STOPPING = "stopping"
STOPPED = "stopped"
FAILED = "failed"


def readiness_to_json(readiness: Readiness) -> dict[str, list[Any]]:
    return {
        "unix_sockets": [str(path) for path in readiness.unix_sockets],
        "tcp": [[host, port] for host, port in readiness.tcp],
    }


def readiness_from_json(data: dict[str, Any]) -> Readiness:
    return Readiness(
        unix_sockets=tuple(Path(path) for path in data.get("unix_sockets", ())),
        tcp=tuple((str(host), int(port)) for host, port in data.get("tcp", ())),
    )


def write_status(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def read_status(path: Path) -> dict[str, Any] | None:
    """The last status written, or None when there is none (or it cannot be understood)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        return None
    return data
