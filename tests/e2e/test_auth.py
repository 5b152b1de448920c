"""One login decision for every protocol: wrong passwords, rate limits, tokens, switches."""

from __future__ import annotations

import contextlib
import imaplib
import poplib
import re
import smtplib
import socket
import uuid

import pytest

from tests.e2e.stack import Stack
from tests.e2e.test_read import sieve_login

pytestmark = pytest.mark.e2e


def imap_login(stack: Stack, user: str, password: str, source: str) -> str:
    """'OK' or the server's failure text."""
    client = stack.imap(source)
    try:
        client.login(user, password)
    except imaplib.IMAP4.error as exc:
        return str(exc)
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()
    return "OK"


def pop_login(stack: Stack, user: str, password: str, source: str) -> str:
    client = _pop_from(stack, source)
    try:
        client.user(user)
        client.pass_(password)
    except poplib.error_proto as exc:
        reply = exc.args[0]
        return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    finally:
        client.close()
    return "OK"


def _pop_from(stack: Stack, source: str) -> poplib.POP3_SSL:
    class BoundPOP3(poplib.POP3_SSL):
        def _create_socket(self, timeout: float) -> socket.socket:
            sock = socket.create_connection((self.host, self.port), timeout, (source, 0))
            return self.context.wrap_socket(sock)

    return BoundPOP3(stack.address, 995, context=stack.tls_context(), timeout=30)


def smtp_login(stack: Stack, user: str, password: str, source: str) -> str:
    with stack.smtps(source) as client:
        try:
            client.login(user, password)
        except smtplib.SMTPAuthenticationError as exc:
            return f"{exc.smtp_code} {exc.smtp_error.decode()}"
    return "OK"


def test_wrong_password_fails_on_every_protocol(stack: Stack) -> None:
    user = stack.add_user("wrongpw", "right-pw-1")
    source = "127.83.0.1"
    assert "AUTHENTICATIONFAILED" in imap_login(stack, user, "wrong", source)
    assert pop_login(stack, user, "wrong", source).startswith("-ERR")
    assert smtp_login(stack, user, "wrong", source).startswith("535 5.7.8")
    assert sieve_login(stack, user, "wrong", source).startswith(b"NO")
    # One fail2ban-matchable line per failure, naming the client address.
    for proto in ("imap", "pop3", "smtp", "sieve"):
        stack.wait_for_log(
            rf"Login attempt for: {re.escape(user)}/{proto}/\d+ from: 127\.83\.0\.1/\d+: "
            r"failed: badauth: [0-9a-f]{6}"
        )
    # The right password still works afterwards (distinct failures stay under the limits).
    assert imap_login(stack, user, "right-pw-1", source) == "OK"


def test_ip_rate_limit_blocks_the_network_not_the_user(stack: Stack) -> None:
    user = stack.add_user("limited", "limited-pw-1")
    limit = int(stack.settings.get("AUTH_RATELIMIT_IP", "5/hour").split("/")[0])
    for attempt in range(limit):
        result = imap_login(
            stack, f"ghost{attempt}-{uuid.uuid4().hex[:6]}@example.test", "x", "127.84.0.1"
        )
        assert "AUTHENTICATIONFAILED" in result
    # The next login from the same /24, even with the right password, is refused.
    refused = imap_login(stack, user, "limited-pw-1", "127.84.0.2")
    assert refused != "OK"
    stack.wait_for_log(r"Authentication attempt from 127\.84\.0\.2 has been rate-limited\.")
    # The same user from another network logs in.
    assert imap_login(stack, user, "limited-pw-1", "127.85.0.1") == "OK"


def test_app_token_logs_in_and_is_not_rate_limited(stack: Stack) -> None:
    user = stack.add_user("tokenuser", "token-pw-1")
    output = stack.roost("token", "add", user).stdout
    token = re.search(r"\b[0-9a-f]{32}\b", output)
    assert token, output
    for attempt in range(6):
        imap_login(stack, f"ghost{attempt}-{uuid.uuid4().hex[:6]}@example.test", "x", "127.86.0.1")
    assert imap_login(stack, user, "token-pw-1", "127.86.0.2") != "OK"
    assert imap_login(stack, user, token.group(0), "127.86.0.2") == "OK"
    assert smtp_login(stack, user, token.group(0), "127.86.0.2") == "OK"


def test_enable_imap_and_enable_pop_switch_protocols_off(stack: Stack) -> None:
    no_imap = stack.add_user("noimap", "noimap-pw-1")
    no_pop = stack.add_user("nopop", "nopop-pw-1")
    stack.roost(
        "config-import",
        "--update",
        "-",
        stdin=(
            "user:\n"
            f"  - email: {no_imap}\n    enable_imap: false\n"
            f"  - email: {no_pop}\n    enable_pop: false\n"
        ),
    )
    source = "127.87.0.1"
    assert imap_login(stack, no_imap, "noimap-pw-1", source) != "OK"
    assert pop_login(stack, no_imap, "noimap-pw-1", source) == "OK"
    assert pop_login(stack, no_pop, "nopop-pw-1", source) != "OK"
    assert imap_login(stack, no_pop, "nopop-pw-1", source) == "OK"


def test_disabled_user_can_log_in_nowhere(stack: Stack) -> None:
    user = stack.add_user("disabled", "disabled-pw-1")
    source = "127.88.0.1"
    assert imap_login(stack, user, "disabled-pw-1", source) == "OK"
    stack.roost("user-delete", user)
    assert imap_login(stack, user, "disabled-pw-1", source) != "OK"
    assert pop_login(stack, user, "disabled-pw-1", source) != "OK"
    assert smtp_login(stack, user, "disabled-pw-1", source) != "OK"
    assert not sieve_login(stack, user, "disabled-pw-1", source).startswith(b"OK")
