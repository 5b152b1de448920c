"""The gate as a process: start-up checks, readiness, signals and socket clean-up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from roost.layout import Layout
from roost.store.db import StoreError
from tests.unit.test_gate_support import (
    GateHarness,
    make_settings,
    open_store,
    populate,
    running_gate,
)

REPO = Path(__file__).resolve().parents[2]
SERVE = (
    "import sys; from pathlib import Path;"
    "from tests.unit.test_gate_support import make_settings;"
    "from roost.gate.server import serve;"
    "serve(make_settings(Path(sys.argv[1]), sys.argv[2]))"
)


def test_serve_runs_until_sigterm_and_removes_its_sockets(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "127.0.4.6")
    store = open_store(settings)
    populate(store)
    store.dispose()
    layout = Layout(settings)
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(tmp_path), "127.0.4.6"],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stderr is not None
        lines = []
        deadline = time.monotonic() + 30
        while not any(line.startswith("INFO gate ready") for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, lines
            lines.append(proc.stderr.readline())
        assert layout.gate_socketmap.is_socket() and layout.gate_control.is_socket()
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=30)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest
    assert "INFO gate stopping" in rest
    assert not layout.gate_socketmap.exists() and not layout.gate_control.exists()
    # One line per record, level first: the runner adds the "gate: " prefix.
    assert all(
        line.split(" ", 1)[0] in ("DEBUG", "INFO", "WARNING", "ERROR")
        for line in lines + rest.splitlines()
        if line.strip()
    )


def test_a_second_gate_on_the_same_root_refuses_to_start(tmp_path: Path) -> None:
    with running_gate(tmp_path, "127.0.4.7", redis=False) as first:
        second = GateHarness(first.settings, first.store, http_port=10081)
        with pytest.raises(RuntimeError, match="another gate"):
            second.start()
        assert first.lookup("domain", "example.test") == "OK example.test"


def test_a_gate_that_cannot_read_the_store_does_not_start(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "127.0.4.8")
    from roost.store.db import Store

    store = Store.from_settings(settings)  # never migrated: no tables
    harness = GateHarness(settings, store, http_port=10080)
    try:
        with pytest.raises(StoreError):
            harness.start()
    finally:
        store.dispose()
    assert not Layout(settings).gate_socketmap.exists()
