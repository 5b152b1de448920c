"""The real client behind a proxy: REAL_IP_FROM and PROXY_PROTOCOL through the real daemons.

One stack trusts one loopback address (PROXY) as its load balancer and expects the PROXY
protocol header (HAProxy's v1: one line, ``PROXY TCP4 src dst sport dport``) on 25, 443,
465 and 993. Each test sends that line by hand, then speaks the protocol over the same
socket (TLS after the line), and reads what the daemons logged: from PROXY, the address the
line claims is the client everywhere (nginx's fail2ban line and XCLIENT to Postfix on 25,
Dovecot and the gate on 993, Postfix and the gate on 465, the web and the gate's rate limits
on 443); from any other address the same line is ignored (nginx, Postfix) or the connection
is dropped (Dovecot), and forged X-Real-IP / X-Forwarded-For headers count for nothing.
"""

from __future__ import annotations

import base64
import http.client
import imaplib
import re
import smtplib
import socket
import ssl
import struct
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.e2e.conftest import require_root
from tests.e2e.stack import DOMAIN, HOSTNAME, Stack, e2e_address, running

pytestmark = pytest.mark.e2e

PROXY = e2e_address(200)  # the load balancer of REAL_IP_FROM
STRANGER = e2e_address(201)  # anyone else, sending the same PROXY line
FORGED = "198.51.100.66"  # what the stranger claims; it must appear nowhere


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    require_root()
    settings = {
        "REAL_IP_FROM": PROXY,
        "PROXY_PROTOCOL": "25,443,465,993",
        # Two distinct failing accounts per client network, so the test can spend it.
        "AUTH_RATELIMIT_IP": "2/hour",
    }
    with running(Stack("realip", e2e_address(120), settings=settings)) as started:
        yield started


def proxy_header(claimed: str, server: str, port: int, version: int) -> bytes:
    """The PROXY protocol header (HAProxy's proxy-protocol.txt) of a TCP/IPv4 connection
    from ``claimed``, port 40001: version 1 is a text line, version 2 binary."""
    if version == 1:
        return f"PROXY TCP4 {claimed} {server} 40001 {port}\r\n".encode()
    addresses = socket.inet_aton(claimed) + socket.inet_aton(server)
    ports = struct.pack("!HH", 40001, port)
    # Signature; version 2, command PROXY; TCP over IPv4; the length of what follows.
    return (
        b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", 12) + addresses + ports
    )


def proxied(stack: Stack, port: int, source: str, claimed: str, version: int = 1) -> socket.socket:
    """A connection from ``source`` that starts with a PROXY header naming ``claimed``."""
    sock = socket.create_connection((stack.address, port), 30, source_address=(source, 0))
    sock.sendall(proxy_header(claimed, stack.address, port, version))
    return sock


class ProxiedSMTP(smtplib.SMTP):
    def __init__(
        self, stack: Stack, source: str, claimed: str, tls: bool = False, version: int = 1
    ) -> None:
        self._proxied = (stack, source, claimed, tls, version)
        super().__init__(stack.address, 465 if tls else 25, timeout=30)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        stack, source, claimed, tls, version = self._proxied
        sock = proxied(stack, port, source, claimed, version)
        return stack.tls_context().wrap_socket(sock) if tls else sock


class ProxiedIMAP(imaplib.IMAP4_SSL):
    def __init__(self, stack: Stack, source: str, claimed: str, version: int = 1) -> None:
        self._proxied = (stack, source, claimed, version)
        super().__init__(stack.address, 993, ssl_context=stack.tls_context(), timeout=30)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        stack, source, claimed, version = self._proxied
        return self.ssl_context.wrap_socket(proxied(stack, 993, source, claimed, version))


class ProxiedHTTPS(http.client.HTTPSConnection):
    def __init__(self, stack: Stack, source: str, claimed: str) -> None:
        super().__init__(stack.address, 443, timeout=30)
        self._proxied = (stack, source, claimed)

    def connect(self) -> None:
        stack, source, claimed = self._proxied
        self.sock = stack.tls_context().wrap_socket(proxied(stack, 443, source, claimed))


def plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def fresh(name: str) -> str:
    """An account name no other test's log line can hold."""
    return f"{name}-{uuid.uuid4().hex[:8]}@{DOMAIN}"


# -- port 25: nginx's mail proxy ------------------------------------------------------------


def port_25_session(stack: Stack, source: str, claimed: str) -> tuple[int, int]:
    """AUTH (refused: no logins on the MX port), then a sender of ours (refused by Postfix
    after nginx handed the session over with XCLIENT, or by the gate before)."""
    smtp = ProxiedSMTP(stack, source, claimed)
    smtp.ehlo("client.outside.test")
    auth, _ = smtp.docmd("AUTH", "PLAIN " + plain("x@example.test", "x"))
    smtp.close()  # nginx ends the session after a refused AUTH
    with ProxiedSMTP(stack, source, claimed) as smtp:
        smtp.ehlo("client.outside.test")
        smtp.mail(f"admin@{DOMAIN}")
        rcpt, _ = smtp.rcpt(f"admin@{DOMAIN}")
    return auth, rcpt


def test_port_25_believes_the_proxy(stack: Stack) -> None:
    client = "192.0.2.25"
    assert port_25_session(stack, PROXY, client) == (502, 554)
    # nginx's fail2ban line, from the gate's Client-IP ...
    stack.wait_for_log(rf'client login failed: "AUTH not supported" .*client: {re.escape(client)},')
    # ... and Postfix behind it, through XCLIENT.
    stack.wait_for_log(rf"postfix/mx/smtpd.*reject: RCPT from \S*\[{re.escape(client)}\]")


def test_port_25_ignores_a_stranger_s_proxy_line(stack: Stack) -> None:
    """The stranger is its own address; being a loopback one here (every test address
    is), the gate refuses its mail as it would a proxy's loopback client (below)."""
    assert port_25_session(stack, STRANGER, FORGED) == (502, 550)
    stack.wait_for_log(rf'"AUTH not supported" .*client: {re.escape(STRANGER)},')
    stack.wait_for_log(rf"Mail on port 25 from {re.escape(STRANGER)} through the proxy refused")
    assert FORGED not in stack.log_text()


def test_port_25_refuses_mail_the_proxy_names_as_loopback(stack: Stack) -> None:
    """Named 127.0.0.1 it would be Postfix's "mynetworks" and relay without a login."""
    smtp = ProxiedSMTP(stack, PROXY, "127.0.0.1")
    smtp.ehlo("client.outside.test")
    smtp.mail("someone@remote.test")
    code, _ = smtp.rcpt("someone@remote.test")  # nginx asks auth_http at RCPT
    smtp.close()
    assert code == 550
    stack.wait_for_log(r"Mail on port 25 from 127\.0\.0\.1 through the proxy refused")


# -- 993: Dovecot's haproxy listener ---------------------------------------------------------


def test_imap_believes_the_proxy(stack: Stack) -> None:
    client, user = "198.51.100.93", fresh("imap")
    imap = ProxiedIMAP(stack, PROXY, client)
    with pytest.raises(imaplib.IMAP4.error):
        imap.login(user, "wrong-password")
    imap.logout()
    stack.wait_for_log(rf"Login attempt for: {re.escape(user)}/imap/993 from: {client}/")
    stack.wait_for_log(rf"imap-login: .*user=<{re.escape(user)}>.*rip={re.escape(client)},")


def test_imap_drops_a_stranger(stack: Stack) -> None:
    """Dovecot aborts a connection to a haproxy listener from outside
    haproxy_trusted_networks before its greeting, whatever the line says."""
    with pytest.raises((OSError, imaplib.IMAP4.abort, ssl.SSLError)):
        ProxiedIMAP(stack, STRANGER, FORGED)
    stack.wait_for_log(rf"imap-login: .*haproxy.*{re.escape(STRANGER)}")
    assert FORGED not in stack.log_text()


# -- 465: nginx's stream proxy in front of Postfix -------------------------------------------


def submission_auth(stack: Stack, source: str, claimed: str, user: str) -> int:
    with ProxiedSMTP(stack, source, claimed, tls=True) as smtp:
        smtp.ehlo("client.outside.test")
        code, _ = smtp.docmd("AUTH", "PLAIN " + plain(user, "wrong-password"))
    return code


def test_submission_believes_the_proxy(stack: Stack) -> None:
    client, user = "203.0.113.65", fresh("smtp")
    assert submission_auth(stack, PROXY, client, user) == 535
    stack.wait_for_log(
        rf"postfix/submissions/smtpd.*\[{re.escape(client)}\]: SASL PLAIN authentication failed"
    )
    stack.wait_for_log(rf"Login attempt for: {re.escape(user)}/smtp/\S* from: {client}/")


def test_submission_ignores_a_stranger_s_proxy_line(stack: Stack) -> None:
    user = fresh("smtp")
    assert submission_auth(stack, STRANGER, FORGED, user) == 535
    stack.wait_for_log(
        rf"postfix/submissions/smtpd.*\[{re.escape(STRANGER)}\]: SASL PLAIN authentication failed"
    )
    stack.wait_for_log(rf"Login attempt for: {re.escape(user)}/smtp/\S* from: {STRANGER}/")
    assert FORGED not in stack.log_text()


# -- 443: nginx's realip for the web ---------------------------------------------------------


def web_sign_in(stack: Stack, source: str, claimed: str, user: str) -> None:
    """A failed sign-in at /sso/login (a form with its CSRF token and session cookie),
    each request on a connection of its own with the PROXY line, and headers that claim
    yet another address."""
    forged = {"X-Real-IP": FORGED, "X-Forwarded-For": FORGED, "Host": HOSTNAME}

    def request(method: str, body: str | None = None, **headers: str) -> tuple[Any, str]:
        connection = ProxiedHTTPS(stack, source, claimed)
        try:
            connection.request(method, "/sso/login", body=body, headers={**forged, **headers})
            answer = connection.getresponse()
            return answer, answer.read().decode()
        finally:
            connection.close()

    page, text = request("GET")
    token = re.search(r'name="csrf_token" value="([^"]+)"', text)
    cookie = page.getheader("Set-Cookie", "").split(";")[0]
    assert token and cookie, text
    form = urlencode({"email": user, "password": "wrong-password", "csrf_token": token.group(1)})
    answer, _ = request(
        "POST", form, Cookie=cookie, **{"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert answer.status in (200, 401, 403, 429)


def test_web_rate_limits_count_the_client_the_proxy_names(stack: Stack) -> None:
    """Through the one proxy, the network named in the PROXY line spends its own budget
    (AUTH_RATELIMIT_IP=2/hour): a third account from it is refused, while another client
    of the same proxy still gets its guess checked. The forged headers count for nothing."""
    first, second = "192.0.2.44", "198.18.0.44"
    users = [fresh("web") for _ in range(4)]
    for user in users[:2]:
        web_sign_in(stack, PROXY, first, user)
        stack.wait_for_log(rf"Login attempt for: {re.escape(user)}/web/443 from: {first}/")
    web_sign_in(stack, PROXY, first, users[2])
    stack.wait_for_log(rf"Authentication attempt from {re.escape(first)} has been rate-limited\.")
    web_sign_in(stack, PROXY, second, users[3])
    stack.wait_for_log(rf"Login attempt for: {re.escape(users[3])}/web/443 from: {second}/")
    assert f"Authentication attempt from {second} has been" not in stack.log_text()
    assert FORGED not in stack.log_text()


def test_web_ignores_a_stranger_s_proxy_line_and_headers(stack: Stack) -> None:
    user = fresh("web")
    web_sign_in(stack, STRANGER, FORGED, user)
    stack.wait_for_log(rf"Login attempt for: {re.escape(user)}/web/443 from: {STRANGER}/")
    assert FORGED not in stack.log_text()


# -- version 2 -------------------------------------------------------------------------------


def test_the_binary_header_works_too(stack: Stack) -> None:
    """HAProxy's send-proxy-v2: nginx's mail and stream proxies and Dovecot read it."""
    client = "100.64.0.2"
    smtp = ProxiedSMTP(stack, PROXY, client, version=2)
    smtp.ehlo("client.outside.test")
    assert smtp.docmd("AUTH", "PLAIN " + plain("x@example.test", "x"))[0] == 502
    smtp.close()
    stack.wait_for_log(rf'"AUTH not supported" .*client: {re.escape(client)},')
    with ProxiedSMTP(stack, PROXY, client, tls=True, version=2) as smtp:
        assert smtp.ehlo("client.outside.test")[0] == 250
    stack.wait_for_log(rf"postfix/submissions/smtpd.*connect from \S*\[{re.escape(client)}\]")
    ProxiedIMAP(stack, PROXY, client, version=2).logout()
    stack.wait_for_log(rf"imap-login: .*rip={re.escape(client)},")
