"""The real nginx in front of the real Postfix, with a stand-in for the gate's auth_http."""

from __future__ import annotations

import http.client
import smtplib
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from socketserver import ThreadingUnixStreamServer
from typing import Any

import pytest
from test_services_postfix_support import (
    PostfixStack,
    roost_root,
    running_postfix,
    tcp_open,
    wait_for,
)

from roost.services.nginx import NginxService

pytestmark = pytest.mark.e2e

ADDRESS = "127.0.5.23"
REMOTE = "127.0.5.25"
OUTSIDE = ("127.80.0.1", 0)
OVERRIDE = 'location = /hello {\n    return 200 "hello from an override";\n}\n'


class AuthHTTP(BaseHTTPRequestHandler):
    """The gate's ``GET /auth/email`` for port 25: nginx's auth_http protocol
    (https://nginx.org/en/docs/mail/ngx_mail_auth_http_module.html#protocol)."""

    requests: list[dict[str, str]]
    backend: str

    def do_GET(self) -> None:
        headers = dict(self.headers.items())
        self.requests.append({"path": self.path, **headers})
        self.send_response(200)
        if headers.get("Auth-Method", "none") != "none" and headers.get("Auth-Port") == "25":
            self.send_header("Auth-Status", "AUTH not supported")
            self.send_header("Auth-Error-Code", "502 5.5.1")
            self.send_header("Auth-Wait", "0")
        else:
            self.send_header("Auth-Status", "OK")
            self.send_header("Auth-Server", self.backend)
            self.send_header("Auth-Port", "10025")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads ``requests`` instead."""


class UnixHTTPServer(ThreadingUnixStreamServer):
    """The stand-in gate on a Unix socket, as nginx's ``auth_http unix:...`` reaches it."""

    daemon_threads = True


@dataclass
class Front:
    postfix: PostfixStack
    nginx: NginxService
    auth_requests: list[dict[str, str]]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def front() -> Iterator[Front]:
    with (
        roost_root() as root,
        running_postfix(root, ADDRESS, REMOTE, MESSAGE_SIZE_LIMIT=30000) as postfix,
    ):
        layout = postfix.layout
        override = layout.overrides / "nginx" / "hello.conf"
        override.parent.mkdir(parents=True)
        override.write_text(OVERRIDE)
        nginx = NginxService(layout)
        nginx.render()

        requests: list[dict[str, str]] = []
        handler = type(
            "Handler", (AuthHTTP,), {"requests": requests, "backend": layout.internal_address}
        )
        # The gate's socket for nginx (roost.gate.server makes it 0660 root:www-data).
        layout.gate_http_socket.parent.mkdir(parents=True, exist_ok=True)
        layout.gate_http_socket.parent.chmod(0o755)
        auth = UnixHTTPServer(str(layout.gate_http_socket), handler)
        layout.gate_http_socket.chmod(0o666)
        threading.Thread(target=auth.serve_forever, daemon=True).start()

        log_path = root / "nginx.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(nginx.command(), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(
                lambda: tcp_open(*nginx.readiness().tcp[0]) or process.poll() is not None,
                15,
                "nginx to listen",
            )
            assert process.poll() is None, log_path.read_text()
            yield Front(postfix, nginx, requests, log_path)
        finally:
            process.terminate()
            process.wait(15)
            auth.shutdown()
            auth.server_close()


def smtp() -> smtplib.SMTP:
    return smtplib.SMTP(ADDRESS, 25, source_address=OUTSIDE, timeout=10)


def test_banner_and_capabilities_are_nginx_s(front: Front) -> None:
    with smtp() as client:
        code, text = client.ehlo("client.example.net")
    assert code == 250
    lines = text.decode().splitlines()
    assert lines[0] == "mail.example.test"
    assert set(lines[1:]) == {
        "PIPELINING",
        "SIZE 30000",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "DSN",
        "STARTTLS",
    }


def test_mail_goes_through_nginx_to_postfix_with_the_real_client(front: Front) -> None:
    with smtp() as client:
        client.ehlo("client.example.net")
        assert client.mail("sender@example.test")[0] == 250
        assert client.rcpt("alice@example.test")[0] == 250
        code, text = client.rcpt("nobody@example.test")
        assert code == 550 and b"5.1.1" in text
        assert client.data(b"Subject: via nginx\r\n\r\nhello\r\n")[0] == 250
    mailboxes = front.postfix.mailboxes
    wait_for(lambda: len(mailboxes.messages) >= 1, 10, "LMTP delivery")
    assert mailboxes.messages[-1].rcpt_tos == ["alice@example.test"]
    # XCLIENT carried the real client and HELO to Postfix.
    assert "client=unknown[127.80.0.1]" in front.postfix.log()
    request = next(r for r in front.auth_requests if r.get("Auth-Method") == "none")
    assert request["path"] == "/auth/email"
    assert (request["Auth-Protocol"], request["Auth-Port"], request["Client-IP"]) == (
        "smtp",
        "25",
        "127.80.0.1",
    )
    assert request["Auth-SMTP-From"].endswith("FROM:<sender@example.test>")


def test_relay_through_nginx_is_denied(front: Front) -> None:
    with smtp() as client:
        client.ehlo("client.example.net")
        client.mail("sender@example.test")
        code, text = client.rcpt("someone@foreign.example")
    assert (code, b"Relay access denied" in text) == (554, True)


def test_auth_on_port_25_is_502_and_logged_for_fail2ban(front: Front) -> None:
    with smtp() as client:
        client.ehlo("client.example.net")
        code, text = client.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=")
    assert (code, text) == (502, b"5.5.1 AUTH not supported")
    request = next(r for r in front.auth_requests if r.get("Auth-Method") == "plain")
    assert (request["Auth-User"], request["Auth-Port"]) == ("alice@example.test", "25")
    wait_for(lambda: "AUTH not supported" in front.log(), 5, "nginx's log line")
    assert (
        'client login failed: "AUTH not supported" while in http auth state, '
        "client: 127.80.0.1, server: 127.0.5.23:25"
    ) in front.log()


def test_starttls_on_port_25(front: Front) -> None:
    context = ssl.create_default_context(cafile=front.nginx.layout.cert_file)
    with smtp() as client:
        client.ehlo("client.example.net")
        client._host = "localhost"  # the name the self-signed certificate carries
        client.starttls(context=context)
        client.ehlo("client.example.net")
        assert "starttls" not in client.esmtp_features
        client.mail("sender@example.test")
        assert client.rcpt("bob@example.test")[0] == 250
    assert any(r.get("Auth-SSL") == "on" for r in front.auth_requests)


def http_get(path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection(ADDRESS, 80, timeout=10)
    connection.request("GET", path, headers={"Host": "mail.example.test", **(headers or {})})
    return connection.getresponse()


def https_get(
    front: Front, path: str, headers: dict[str, str] | None = None
) -> tuple[http.client.HTTPResponse, bytes]:
    """GET over TLS, checking the certificate for ``localhost`` against our own file."""
    context = ssl.create_default_context(cafile=front.nginx.layout.cert_file)
    raw = socket.create_connection((ADDRESS, 443), timeout=10)
    tls = context.wrap_socket(raw, server_hostname="localhost")
    lines = [f"GET {path} HTTP/1.1", "Host: mail.example.test", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    tls.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    response = http.client.HTTPResponse(tls)
    response.begin()
    body = response.read()
    tls.close()
    return response, body


SECURITY_HEADERS = {
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
    "X-Permitted-Cross-Domain-Policies": "none",
    "Referrer-Policy": "same-origin",
}


def test_http_health_and_redirect(front: Front) -> None:
    health = http_get("/health")
    assert health.status == 204
    assert {name: health.getheader(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS
    redirect = http_get("/admin/?x=1")
    assert redirect.status == 301
    assert redirect.getheader("Location") == "https://mail.example.test/admin/?x=1"


def test_https_health_headers_and_404(front: Front) -> None:
    health, _ = https_get(front, "/health")
    assert health.status == 204
    assert health.getheader("Strict-Transport-Security") == "max-age=31536000"
    assert {name: health.getheader(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS
    missing, _ = https_get(front, "/webmail/")
    assert missing.status == 404
    assert missing.getheader("X-Frame-Options") == "SAMEORIGIN"
    proxied, _ = https_get(front, "/x", {"X-Forwarded-Proto": "http"})
    assert (proxied.status, proxied.getheader("Location")) == (301, "https://mail.example.test/x")


def test_https_serves_user_overrides(front: Front) -> None:
    response, body = https_get(front, "/hello")
    assert (response.status, body) == (200, b"hello from an override")


def test_workers_run_as_www_data(front: Front) -> None:
    pid = int((front.nginx.run_directory / "nginx.pid").read_text())
    children = subprocess.run(
        ["ps", "-o", "user=", "--ppid", str(pid)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert children and set(children) == {"www-data"}
