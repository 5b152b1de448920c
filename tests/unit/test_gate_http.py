"""The gate's HTTP/1.1 framing (RFC 9112) and its userdb and health endpoints."""

from __future__ import annotations

import asyncio
import grp
import http.client
import json
import os
import pwd
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete

from roost.gate.control import request_reload
from roost.gate.http import HttpServer, Request, Response
from roost.gate.streams import Limits
from roost.layout import MAIL_OWNER
from roost.store.models import User
from tests.unit.test_gate_support import ALTERNATIVE, DOMAIN, GateHarness, add_user, running_gate


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateHarness]:
    with running_gate(tmp_path_factory.mktemp("http"), "127.0.4.3") as harness:
        yield harness


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over the gate's Unix socket, the way nginx's auth_http reaches it."""

    def __init__(self, path: str) -> None:
        super().__init__("gate", timeout=5)
        self._path = path

    def connect(self) -> None:
        self.sock = unix_connection(self._path)


def unix_connection(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(path)
    return sock


def exchange(gate: GateHarness, raw: bytes) -> bytes:
    """Send raw bytes over nginx's socket, read until the server closes; what a careless
    client would see."""
    with unix_connection(str(gate.layout.gate_http_socket)) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


# -- endpoints -----------------------------------------------------------------------------------


def test_userdb_answers_the_canonical_user_and_quota(gate: GateHarness) -> None:
    status, headers, body = gate.get(f"/dovecot/userdb/Joe%40{ALTERNATIVE}")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"user": f"joe@{DOMAIN}", "quota_rule": "*:bytes=1000000000"}


def test_userdb_makes_the_users_home_before_dovecot_needs_it(gate: GateHarness) -> None:
    """Dovecot opens the home's duplicate database before it first stores mail."""
    mail = gate.layout.mail
    mail.mkdir(exist_ok=True)
    home = gate.layout.mail_home(f"joe@{DOMAIN}")
    assert not home.exists()
    status, _headers, _body = gate.get(f"/dovecot/userdb/joe@{ALTERNATIVE}")
    assert status == 200
    assert home.is_dir()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert home.stat().st_uid == pwd.getpwnam(MAIL_OWNER).pw_uid
    # Unknown users get nothing made for them.
    assert gate.get(f"/dovecot/userdb/nobody@{DOMAIN}")[0] == 404
    assert sorted(p.name for p in mail.iterdir()) == [f"joe@{DOMAIN}"]


def test_userdb_refuses_a_user_whose_home_would_leave_the_mail_directory(
    gate: GateHarness, tmp_path: Path
) -> None:
    """An address stored before '/' was refused (or written by hand) gets no home and no
    userdb answer: Dovecot would join mail_root and the address the same way."""
    gate.layout.mail.mkdir(exist_ok=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    email = add_user(gate.store, f"{outside}/x@{DOMAIN}", "x-secret")
    request_reload(gate.layout)
    try:
        status, _headers, _body = gate.get(f"/dovecot/userdb/{email}")
        assert status == 404
        assert list(outside.iterdir()) == []
    finally:
        with gate.store.session() as session:
            session.execute(delete(User).where(User.email == email))
        request_reload(gate.layout)


def test_userdb_quota_zero_is_unlimited(gate: GateHarness) -> None:
    status, _headers, body = gate.get(f"/dovecot/userdb/quota@{DOMAIN}")
    assert status == 200
    assert json.loads(body)["quota_rule"] == "*:bytes=0"


@pytest.mark.parametrize(
    ("email", "status"),
    [
        (f"nobody@{DOMAIN}", 404),
        ("joe@remote.test", 404),
        (f"a@b@{DOMAIN}", 404),
        (f"%22joe%22@{DOMAIN}", 404),
        ("", 404),
        (f"%FF@{DOMAIN}", 400),  # a path that is not UTF-8 is not a request we can read
    ],
)
def test_userdb_unknown_or_malformed(gate: GateHarness, email: str, status: int) -> None:
    assert gate.get(f"/dovecot/userdb/{email}")[0] == status


def test_health_reports_generation_and_counts(gate: GateHarness) -> None:
    status, _headers, body = gate.get("/health")
    assert status == 200
    health = json.loads(body)
    assert health["generation"] == gate.store.generation()
    assert health["counts"]["users"] == 6
    assert health["counts"]["domains"] == 2
    assert health["rate_limits"] == "redis"


def test_unknown_path_is_404(gate: GateHarness) -> None:
    assert gate.get("/internal/postfix/domain/example.test")[0] == 404


# -- framing -------------------------------------------------------------------------------------


def test_keep_alive_serves_several_requests_on_one_connection(gate: GateHarness) -> None:
    conn = UnixHTTPConnection(str(gate.layout.gate_http_socket))
    try:
        for _ in range(3):
            conn.request("GET", "/health")
            response = conn.getresponse()
            assert response.status == 200
            response.read()
            assert response.getheader("Connection") is None
        sock = conn.sock
        conn.request("GET", f"/dovecot/userdb/joe@{DOMAIN}")
        assert conn.getresponse().status == 200
        assert conn.sock is sock  # the same connection
    finally:
        conn.close()


def test_pipelined_requests_are_answered_in_order(gate: GateHarness) -> None:
    one = b"GET /health HTTP/1.1\r\nHost: gate\r\n\r\n"
    two = b"GET /nothing HTTP/1.1\r\nHost: gate\r\nConnection: close\r\n\r\n"
    response = exchange(gate, one + two)
    first, second = response.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 ") and second.startswith(b"404 ")
    assert b"Connection: close" in second


def test_a_stray_empty_line_between_requests_is_ignored(gate: GateHarness) -> None:
    one = b"GET /health HTTP/1.1\r\nHost: gate\r\n\r\n"
    two = b"\r\nGET /health HTTP/1.1\r\nHost: gate\r\nConnection: close\r\n\r\n"
    response = exchange(gate, one + two)
    assert [part[:4] for part in response.split(b"HTTP/1.1 ")[1:]] == [b"200 ", b"200 "]


def test_http_10_closes_unless_asked_to_keep_alive(gate: GateHarness) -> None:
    response = exchange(gate, b"GET /health HTTP/1.0\r\n\r\n")
    assert status_of(response) == 200 and b"Connection: close" in response
    with unix_connection(str(gate.layout.gate_http_socket)) as sock:
        sock.sendall(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        first = sock.recv(65536)
        assert b"Connection: keep-alive" in first
        sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        assert status_of(sock.recv(65536)) == 200


def test_head_has_the_headers_without_the_body(gate: GateHarness) -> None:
    response = exchange(gate, b"HEAD /health HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n")
    head, _, body = response.partition(b"\r\n\r\n")
    assert status_of(head) == 200 and b"Content-Length: " in head and body == b""


def test_other_methods_are_405(gate: GateHarness) -> None:
    response = exchange(gate, b"DELETE /health HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n")
    assert status_of(response) == 405
    assert b"Allow: GET, HEAD" in response


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /health\r\n\r\n", 400),
        (b"GET /health HTTP/1.1 extra\r\nHost: g\r\n\r\n", 400),
        (b"GET health HTTP/1.1\r\nHost: g\r\n\r\n", 400),
        (b"GET http://x/health HTTP/1.1\r\nHost: g\r\n\r\n", 400),
        (b"GET /health HTTP/2.0\r\nHost: g\r\n\r\n", 505),
        (b"GET /health HTTP/1.1\r\n\r\n", 400),  # RFC 9112 §3.2: Host is required
        (b"GET /health HTTP/1.1\r\nHost: g\r\nNo-Colon\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nHost : g\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nHost: g\r\n folded\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nHost: g\r\nHost: h\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nHost: g\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nHost: g\r\nContent-Length: 5\r\n\r\nhello", 400),
        (b"GET /health HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"GET /\xff HTTP/1.1\r\nHost: g\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nHost: g\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431),
        (b"GET /health HTTP/1.1\r\nHost: g\r\n" + b"X-A: b\r\n" * 70 + b"\r\n", 431),
    ],
)
def test_malformed_requests_get_an_error_and_a_closed_connection(
    gate: GateHarness, raw: bytes, status: int
) -> None:
    response = exchange(gate, raw)
    assert status_of(response) == status
    assert b"Connection: close" in response
    # And the server is still there.
    assert gate.get("/health")[0] == 200


def test_a_client_vanishing_mid_request_does_not_hurt(gate: GateHarness) -> None:
    for partial in (b"GET /heal", b"GET /health HTTP/1.1\r\nHost: g\r\nAuth-"):
        with socket.create_connection((gate.address, gate.http_port), timeout=5) as sock:
            sock.sendall(partial)
    assert gate.get("/health")[0] == 200


# -- who may ask -----------------------------------------------------------------------------


def tcp_exchange(gate: GateHarness, raw: bytes) -> bytes:
    """Send raw bytes to the TCP port Dovecot's Lua client uses; read until closed."""
    with socket.create_connection((gate.address, gate.http_port), timeout=5) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


AUTH_REQUEST = (
    "GET /auth/email HTTP/1.1\r\nHost: gate\r\nAuth-Method: plain\r\n"
    f"Auth-User: joe@{DOMAIN}\r\nAuth-Pass: guess\r\nAuth-Protocol: imap\r\n"
    "Client-Ip: 192.0.2.99\r\n{secret}Connection: close\r\n\r\n"
)


@pytest.mark.parametrize("secret", ["", "X-Roost-Secret: \r\n", "X-Roost-Secret: 0123abcd\r\n"])
def test_the_tcp_port_refuses_requests_without_the_secret(gate: GateHarness, secret: str) -> None:
    response = tcp_exchange(gate, AUTH_REQUEST.format(secret=secret).encode())
    assert status_of(response) == 403
    # Nothing about the account, nor whether it exists.
    assert b"Auth-" not in response
    userdb = tcp_exchange(
        gate, f"GET /dovecot/userdb/joe@{DOMAIN} HTTP/1.1\r\nHost: g\r\n\r\n".encode()
    )
    assert status_of(userdb) == 403 and b"joe" not in userdb


def test_the_tcp_port_answers_with_the_secret(gate: GateHarness) -> None:
    request = AUTH_REQUEST.format(secret=f"X-Roost-Secret: {gate.secret}\r\n")
    response = tcp_exchange(gate, request.encode())
    assert status_of(response) == 200 and b"Auth-Status: " in response


def test_the_secret_and_nginx_socket_are_for_their_daemons_only(gate: GateHarness) -> None:
    layout = gate.layout
    secret = layout.gate_http_secret.stat()
    assert stat.S_IMODE(secret.st_mode) == 0o640 and secret.st_uid == 0
    assert secret.st_gid == grp.getgrnam("dovecot").gr_gid
    assert stat.S_IMODE(layout.gate_http_secret.parent.stat().st_mode) == 0o750
    sock = layout.gate_http_socket.stat()
    directory = layout.gate_http_socket.parent.stat()
    assert stat.S_IMODE(sock.st_mode) == 0o660 and stat.S_IMODE(directory.st_mode) == 0o750
    assert sock.st_gid == directory.st_gid == grp.getgrnam("www-data").gr_gid


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_an_unprivileged_local_user_gets_no_answer(gate: GateHarness) -> None:
    """Reproduces the finding: nobody asked the gate about an account and got the answer."""
    probe = (
        "import socket, sys\n"
        "def ask(family, target, request):\n"
        "    try:\n"
        "        with socket.socket(family, socket.SOCK_STREAM) as s:\n"
        "            s.settimeout(5); s.connect(target); s.sendall(request)\n"
        "            return s.recv(65536).split(b'\\r\\n', 1)[0].decode()\n"
        "    except OSError as exc:\n"
        "        return type(exc).__name__\n"
        f"request = {AUTH_REQUEST.format(secret='').encode()!r}\n"
        f"print(ask(socket.AF_INET, ({gate.address!r}, {gate.http_port}), request))\n"
        f"print(ask(socket.AF_UNIX, {str(gate.layout.gate_http_socket)!r}, request))\n"
    )
    result = subprocess.run(
        ["runuser", "-u", "nobody", "--", sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.splitlines() == ["HTTP/1.1 403 Forbidden", "PermissionError"]


def test_idle_connections_do_not_keep_a_real_request_out(gate: GateHarness) -> None:
    """1,100 connections that never send a byte, on both listeners: logins still pass."""
    idle: list[socket.socket] = []
    try:
        for _ in range(1100):
            idle.append(socket.create_connection((gate.address, gate.http_port), timeout=5))
            idle.append(unix_connection(str(gate.layout.gate_http_socket)))
        started = time.monotonic()
        assert gate.auth(f"joe@{DOMAIN}", "joe-secret")["Auth-Status"] == "OK"
        conn = UnixHTTPConnection(str(gate.layout.gate_http_socket))
        try:
            conn.request("GET", "/health")
            assert conn.getresponse().status == 200
        finally:
            conn.close()
        assert time.monotonic() - started < 3
        # The gate closed all but a bounded number of the idle ones.
        time.sleep(0.2)
        still_open = 0
        for sock in idle:
            sock.setblocking(False)
            try:
                still_open += sock.recv(1) != b""
            except BlockingIOError:
                still_open += 1
            except OSError:
                pass
        assert still_open <= 2 * Limits().max_waiting
    finally:
        for sock in idle:
            sock.close()


def test_a_connection_that_sends_nothing_is_closed_after_the_first_request_timeout(
    tmp_path: Path,
) -> None:
    async def scenario() -> float:
        async def handler(request: Request) -> Response:
            return Response(200)

        server = HttpServer(handler, limits=Limits(first_request_timeout=0.3))
        path = tmp_path / "http.sock"
        await server.start_unix(path)
        try:
            reader, writer = await asyncio.open_unix_connection(str(path))
            started = time.monotonic()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            return time.monotonic() - started
        finally:
            assert server.server is not None
            server.server.close()

    assert 0.2 < asyncio.run(scenario()) < 2
