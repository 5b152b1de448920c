"""`roost up` supervises its daemons: crashes are repaired, mail survives, SIGTERM is clean."""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.conftest import require_root
from tests.e2e.stack import HOSTNAME, Stack, e2e_address, running
from tests.e2e.test_inbound import message

pytestmark = pytest.mark.e2e

SERVICES = ("redis", "gate", "rspamd-redis", "rspamd", "dovecot", "postfix", "nginx")


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


def status_row(stack: Stack, service: str) -> list[str]:
    """The row of ``roost status`` for ``service``, split on white space."""
    result = stack.roost("status")  # exit status 0: every daemon answers
    rows = [line.split() for line in result.stdout.splitlines()]
    found = [row for row in rows if row and row[0] == service]
    assert len(found) == 1, result.stdout
    return found[0]


@pytest.mark.parametrize("service", SERVICES)
def test_a_killed_daemon_is_restarted(own_stack: Stack, service: str) -> None:
    pid = int(status(own_stack)[service]["pid"])  # type: ignore[call-overload]
    restarts = int(status(own_stack)[service]["restarts"])  # type: ignore[call-overload]
    os.kill(pid, signal.SIGKILL)
    new_pid = wait_restarted(own_stack, service, pid)
    name, state, _, shown_pid, up, _, _, shown_restarts = status_row(own_stack, service)
    assert (name, state, int(shown_pid), up) == (service, "running", new_pid, "up")
    assert int(shown_restarts) == restarts + 1


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
    # Each one arrived. A message whose delivery was cut by the kill after Dovecot stored it
    # but before it said so is delivered again: at least once is what SMTP and LMTP promise
    # when a connection drops after the final dot (RFC 1047), never "lost".
    for number in range(10):
        assert own_stack.count_messages(user, "queued-pw-1", f"queued {tag} {number}") in (1, 2)


def served_certificate(address: str, port: int) -> bytes:
    """The certificate a TLS port presents (DER), trusting anything: only its bytes matter."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((address, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=HOSTNAME) as tls,
    ):
        certificate = tls.getpeercert(binary_form=True)
    assert certificate is not None
    return certificate


def renewed_pair(stack: Stack) -> bytes:
    """Write a new key and certificate over ROOT/certs, as a renewal would; the new DER."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTNAME)])
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOSTNAME)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    certs = stack.root / "certs"
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for file, data in (
        ("key.pem", key_pem),
        ("cert.pem", certificate.public_bytes(serialization.Encoding.PEM)),
    ):
        (certs / f".{file}.new").write_bytes(data)
        os.chmod(certs / f".{file}.new", 0o600 if file == "key.pem" else 0o644)
        os.replace(certs / f".{file}.new", certs / file)
    return certificate.public_bytes(serialization.Encoding.DER)


def test_a_renewed_certificate_is_served_after_a_reload_not_a_restart(own_stack: Stack) -> None:
    """nginx (443), Postfix (465) and Dovecot (993) serve the new pair, same processes, and
    an IMAP session and an SMTP submission session opened before the reload go on."""
    user = own_stack.add_user("renewal", "renewal-pw-1")
    reading = own_stack.imap()
    reading.login(user, "renewal-pw-1")
    assert reading.select("INBOX")[0] == "OK"
    sending = own_stack.smtps()
    sending.login(user, "renewal-pw-1")
    ports = {"nginx": 443, "postfix": 465, "dovecot": 993}
    before = {name: served_certificate(own_stack.address, port) for name, port in ports.items()}
    pids = {name: status(own_stack)[name]["pid"] for name in ports}
    new = renewed_pair(own_stack)
    assert new not in before.values()
    deadline = time.monotonic() + 60
    served = before
    while time.monotonic() < deadline:
        served = {name: served_certificate(own_stack.address, port) for name, port in ports.items()}
        if all(der == new for der in served.values()):
            break
        time.sleep(0.5)
    stale = [name for name, der in served.items() if der != new]
    assert stale == [], f"still the old certificate: {stale}\n{own_stack.log_tail()}"
    own_stack.wait_for_log(r"new certificate in .*cert\.pem .*: reloaded dovecot, postfix, nginx")
    for name in ports:
        own_stack.wait_for_log(rf"^roost: reloaded {name}$")
    assert {name: status(own_stack)[name]["pid"] for name in ports} == pids
    # The sessions opened before the reload still work (a dropped one raises here).
    subject = f"sent across a reload {uuid.uuid4().hex[:8]}"
    assert sending.sendmail(user, [user], message(user, user, subject)) == {}
    sending.quit()
    assert reading.noop()[0] == "OK"
    own_stack.wait_for_message(user, "renewal-pw-1", subject)
    assert reading.select("INBOX")[0] == "OK"
    assert reading.search(None, "ALL")[0] == "OK"
    reading.logout()


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
