"""``roost status``: believes a pid only with its start time, a service only if it answers."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from roost import runner
from roost.layout import Layout
from roost.runner import procs
from roost.settings import Settings, load_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(environ={"ROOT": str(tmp_path / "root")})


@pytest.fixture
def daemon() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "60"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def write(
    settings: Settings, services: dict[str, dict[str, object]], runner_pid: int | None = None
) -> None:
    pid = os.getpid() if runner_pid is None else runner_pid
    data = {
        "runner": {"pid": pid, "start_ticks": procs.start_ticks(pid), "started": time.time()},
        "updated": time.time(),
        "services": services,
    }
    path = Layout(settings).runner_status
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def entry(
    pid: int,
    state: str = "running",
    sockets: tuple[str, ...] = (),
    tcp: tuple[tuple[str, int], ...] = (),
    since: float | None = None,
) -> dict[str, object]:
    return {
        "pid": pid,
        "start_ticks": procs.start_ticks(pid),
        "state": state,
        "restarts": 2,
        "since": time.time() - 300 if since is None else since,
        "readiness": {"unix_sockets": list(sockets), "tcp": [list(t) for t in tcp]},
        "groups": [],
    }


def run_status(settings: Settings) -> tuple[int, str]:
    out = io.StringIO()
    code = runner.status(settings, out=out)
    return code, out.getvalue()


def test_no_status_file_means_roost_up_is_not_running(settings: Settings) -> None:
    code, out = run_status(settings)
    assert code == 3
    assert "`roost up` is not running" in out


def test_a_dead_runner_means_not_running_whatever_the_file_says(
    settings: Settings, daemon: subprocess.Popen[bytes]
) -> None:
    write(settings, {"redis": entry(daemon.pid)}, runner_pid=daemon.pid)
    daemon.kill()
    daemon.wait()
    code, out = run_status(settings)
    assert code == 3
    assert f"it last ran as pid {daemon.pid}" in out


def test_all_running_and_answering_is_success(
    settings: Settings, daemon: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    path = tmp_path / "s.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    tcp = socket.socket()
    tcp.bind(("127.0.7.9", 0))
    tcp.listen()
    try:
        write(
            settings,
            {
                "redis": entry(daemon.pid, sockets=(str(path),)),
                "postfix": entry(daemon.pid, tcp=(("127.0.7.9", tcp.getsockname()[1]),)),
            },
        )
        code, out = run_status(settings)
    finally:
        listener.close()
        tcp.close()
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split() == [
        "redis",
        "running",
        "pid",
        str(daemon.pid),
        "up",
        "5m",
        "restarts",
        "2",
    ]
    assert lines[1].startswith("postfix  running  pid")


def test_a_silent_socket_a_dead_pid_or_a_restart_is_failure(
    settings: Settings, daemon: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    write(
        settings,
        {
            "redis": entry(daemon.pid, sockets=(str(tmp_path / "nobody.sock"),)),
            "gate": entry(dead.pid),
            "nginx": entry(daemon.pid, state="restarting", since=time.time() - 4),
        },
    )
    code, out = run_status(settings)
    assert code == 1
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert f"not answering on {tmp_path / 'nobody.sock'}" in lines["redis"]
    assert "dead" in lines["gate"].split()
    assert lines["nginx"].split()[1:2] == ["restarting"]
    assert "for 4s" in lines["nginx"]


def test_a_recycled_pid_is_not_taken_for_the_daemon(
    settings: Settings, daemon: subprocess.Popen[bytes]
) -> None:
    recorded = entry(daemon.pid)
    recorded["start_ticks"] = int(recorded["start_ticks"]) - 1  # type: ignore[call-overload]
    write(settings, {"dovecot": recorded})
    code, out = run_status(settings)
    assert code == 1
    assert "dead" in out
