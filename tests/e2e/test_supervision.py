"""`roost up` supervises its daemons: crashes are repaired, mail survives, SIGTERM is clean."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import require_root
from tests.e2e.stack import Stack, e2e_address, running
from tests.e2e.test_inbound import message

pytestmark = pytest.mark.e2e

SERVICES = ("redis", "gate", "dovecot", "postfix", "nginx")


@pytest.fixture(scope="module")
def own_stack() -> Iterator[Stack]:
    require_root()
    with running(Stack("supervised", e2e_address(3))) as started:
        yield started


def status(stack: Stack) -> dict[str, dict[str, object]]:
    data = json.loads((stack.root / "run" / "status.json").read_text())
    return data["services"]


def wait_restarted(stack: Stack, service: str, old_pid: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.roost("status", check=False).returncode == 0:
            pid = int(status(stack)[service]["pid"])  # type: ignore[call-overload]
            if pid != old_pid:
                return pid
        time.sleep(0.3)
    raise AssertionError(f"{service} was not restarted:\n{stack.log_tail()}")


@pytest.mark.parametrize("service", SERVICES)
def test_a_killed_daemon_is_restarted(own_stack: Stack, service: str) -> None:
    pid = int(status(own_stack)[service]["pid"])  # type: ignore[call-overload]
    os.kill(pid, signal.SIGKILL)
    wait_restarted(own_stack, service, pid)
    result = own_stack.roost("status")
    assert service in result.stdout


def test_mail_waiting_in_the_queue_survives_a_dovecot_crash(own_stack: Stack) -> None:
    user = own_stack.add_user("queued", "queued-pw-1")
    tag = uuid.uuid4().hex[:8]
    pid = int(status(own_stack)["dovecot"]["pid"])  # type: ignore[call-overload]
    with own_stack.smtp() as client:
        for number in range(10):
            subject = f"queued {tag} {number}"
            client.sendmail("a@sender.test", [user], message("a@sender.test", user, subject))
            if number == 3:
                os.kill(pid, signal.SIGKILL)
    wait_restarted(own_stack, "dovecot", pid)
    for number in range(10):
        own_stack.wait_for_message(user, "queued-pw-1", f"queued {tag} {number}", timeout=60)
    for number in range(10):
        assert own_stack.count_messages(user, "queued-pw-1", f"queued {tag} {number}") == 1


def processes_mentioning(text: str) -> list[str]:
    """Processes whose command line or environment names ``text`` (Postfix's children
    carry MAIL_CONFIG), or that hold files under it open."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if text.encode() in cmdline or text.encode() in environ or cwd.startswith(text):
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry}: {command}")
    return found


def test_sigterm_stops_everything_and_leaves_no_process(own_stack: Stack) -> None:
    assert own_stack.stop() == 0
    assert processes_mentioning(str(own_stack.root)) == []
    listening = subprocess.run(
        ["ss", "-Hltn", "src", own_stack.address], capture_output=True, text=True
    ).stdout.strip()
    assert listening == ""
    assert own_stack.roost("status", check=False).returncode != 0
