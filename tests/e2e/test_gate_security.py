"""The gate's HTTP side answers only nginx and Dovecot, and a connection flood cannot stall it.

nginx reaches the gate over a Unix socket only root and nginx's workers may open; Dovecot's
Lua client (which speaks TCP only) over the stack's internal address with a per-stack
secret header. A local unprivileged user gets neither an answer nor a hint whether an
account exists.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import require_root
from tests.e2e.stack import Stack, e2e_address
from tests.e2e.test_auth import imap_login

pytestmark = pytest.mark.e2e

#: The gate's HTTP port on the stack's internal address (roost.layout.GATE_HTTP_PORT).
GATE_HTTP_PORT = 10080
#: systemd's default soft limit on open files (LimitNOFILE=1024:524288): what the gate
#: started with before it raised its own limit.
SYSTEMD_SOFT_NOFILE = 1024
FLOOD = 1100


@pytest.fixture(scope="module")
def small_limit_stack() -> Iterator[Stack]:
    """A stack whose processes start with systemd's default soft limit on open files."""
    require_root()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (SYSTEMD_SOFT_NOFILE, hard))
    try:
        stack = Stack("gatesec", e2e_address(40))
        stack.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        yield stack
    finally:
        if stack.process is not None and stack.process.poll() is None:
            stack.stop()


def _curl_as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", "nobody", "--", "curl", "-s", "-S", "-m", "10", "-D", "-", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _auth_headers(user: str, password: str) -> list[str]:
    headers = {
        "Auth-Method": "plain",
        "Auth-User": user,
        "Auth-Pass": password,
        "Auth-Protocol": "imap",
        "Auth-Port": "993",
        "Client-Ip": "192.0.2.77",
        "Client-Port": "40000",
    }
    return [arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")]


def test_a_local_user_cannot_query_the_gate(small_limit_stack: Stack) -> None:
    stack = small_limit_stack
    user = stack.add_user("probe", "probe-pw-1")
    headers = _auth_headers(user, "guess")
    # Dovecot's TCP endpoint: without the stack's secret the answer is 403 and says
    # nothing about the account.
    tcp = _curl_as_nobody(*headers, f"http://{stack.address}:{GATE_HTTP_PORT}/auth/email")
    assert tcp.stdout.startswith("HTTP/1.1 403"), tcp.stdout + tcp.stderr
    assert "Auth-Status" not in tcp.stdout and "Auth-User-Exists" not in tcp.stdout
    userdb = _curl_as_nobody(f"http://{stack.address}:{GATE_HTTP_PORT}/dovecot/userdb/{user}")
    assert userdb.stdout.startswith("HTTP/1.1 403"), userdb.stdout + userdb.stderr
    # nginx's Unix socket: nobody may not even connect.
    sock = stack.root / "run" / "gate-http" / "http.sock"
    assert sock.is_socket()
    unix = _curl_as_nobody("--unix-socket", str(sock), *headers, "http://gate/auth/email")
    assert unix.returncode != 0 and unix.stdout == "", unix.stdout
    # The real paths still work: IMAP through Dovecot's Lua passdb ...
    assert imap_login(stack, user, "probe-pw-1", "127.80.0.9") == "OK"
    # ... and port 25 through nginx's auth_http.
    with stack.smtp() as client:
        client.mail("someone@remote.test")
        code, reply = client.rcpt(user)
        assert code == 250, reply


def _open_idle(target: str | tuple[str, int], count: int) -> list[socket.socket]:
    """``count`` connections that never send a byte (half-open requests)."""
    family = socket.AF_UNIX if isinstance(target, str) else socket.AF_INET
    opened: list[socket.socket] = []
    for _ in range(count):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(5)
        try:
            sock.connect(target)
        except OSError:
            sock.close()
            break
        opened.append(sock)
    return opened


def test_a_connection_flood_does_not_stall_real_logins(small_limit_stack: Stack) -> None:
    stack = small_limit_stack
    user = stack.add_user("flooded", "flooded-pw-1")
    unix_path = str(stack.root / "run" / "gate-http" / "http.sock")
    idle: list[socket.socket] = []
    try:
        idle += _open_idle((stack.address, GATE_HTTP_PORT), FLOOD)
        idle += _open_idle(unix_path, FLOOD)
        assert len(idle) >= FLOOD
        started = time.monotonic()
        # Dovecot's Lua client gives up after its request timeout; the login must not.
        assert imap_login(stack, user, "flooded-pw-1", "127.80.0.10") == "OK"
        with stack.smtp() as client:
            client.mail("someone@remote.test")
            code, reply = client.rcpt(user)
            assert code == 250, reply
        assert time.monotonic() - started < 10
    finally:
        for sock in idle:
            with contextlib.suppress(OSError):
                sock.close()
