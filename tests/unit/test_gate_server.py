"""The gate as a process: start-up checks, readiness, signals and socket clean-up."""

from __future__ import annotations

import grp
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from roost.gate.secret import read_secret
from roost.layout import GATE_HTTP_PORT, MAIL_OWNER, Layout
from roost.services.gate import GateService
from roost.store.db import StoreError
from tests.unit.test_gate_support import (
    DOMAIN,
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
    # As Dovecot's service leaves it: 0700 mail:mail, which root enters by dac_override.
    layout.mail.mkdir(mode=0o700)
    if os.geteuid() == 0:
        owner = pwd.getpwnam(MAIL_OWNER)
        os.chown(layout.mail, owner.pw_uid, owner.pw_gid)
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
        if os.geteuid() == 0:
            # Of root, only chown, dac_override and dac_read_search are left, in every set
            # and every thread of the process.
            for status in Path(f"/proc/{proc.pid}/task").glob("*/status"):
                caps = dict(
                    line.split(":\t") for line in status.read_text().splitlines() if ":\t" in line
                )
                for name in ("CapEff", "CapPrm", "CapBnd"):
                    assert int(caps[name], 16) == 0b111, (status, name, caps[name])
                assert int(caps["CapInh"], 16) == 0 and caps["NoNewPrivs"].strip() == "1"
            # And it still does what needs them: a home for a user, owned by mail.
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.settimeout(10)
            client.connect(str(layout.gate_http_socket))
            client.sendall(f"GET /dovecot/userdb/joe@{DOMAIN} HTTP/1.0\r\n\r\n".encode())
            assert client.recv(65536).startswith(b"HTTP/1.1 200 ")
            client.close()
            home = layout.mail / f"joe@{DOMAIN}"
            assert home.is_dir() and home.owner() == MAIL_OWNER
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


def test_the_gate_raises_its_open_file_limit_to_the_hard_one() -> None:
    """systemd's default soft limit (1,024) is what 1,100 idle connections exhausted."""
    script = (
        "import resource\n"
        "from roost.gate.server import raise_open_file_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))\n"
        "raised = raise_open_file_limit()\n"
        "print(raised == hard, resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.stdout.split() == ["True", "True"]


def test_each_start_writes_a_new_secret_readable_by_root_and_dovecot_only(tmp_path: Path) -> None:
    layout = Layout(make_settings(tmp_path, "127.0.4.8"))
    service = GateService(layout)
    old_umask = os.umask(0)  # the mode must not depend on the umask
    try:
        service.render()
        first = read_secret(layout.gate_http_secret)
        service.render()
    finally:
        os.umask(old_umask)
    second = read_secret(layout.gate_http_secret)
    assert first and second and first != second and len(second) == 64
    info = layout.gate_http_secret.stat()
    assert stat.S_IMODE(info.st_mode) == 0o640
    if os.geteuid() == 0:
        assert (info.st_uid, info.st_gid) == (0, grp.getgrnam("dovecot").gr_gid)
    # No temporary file is left beside it.
    assert [p.name for p in layout.gate_http_secret.parent.iterdir()] == ["dovecot-http.secret"]
    readiness = service.readiness()
    assert layout.gate_http_socket in readiness.unix_sockets
    assert readiness.tcp == ((layout.internal_address, GATE_HTTP_PORT),)
