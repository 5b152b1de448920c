"""Logins under attack, end to end: the limiter cannot be turned against users, and
AUTH_REQUIRE_TOKENS is honoured on every mail protocol.

Each stack here has its own settings (a small account budget; tokens only), so they run
beside the shared one on their own addresses.
"""

from __future__ import annotations

import base64
import re
import socket
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import require_root
from tests.e2e.stack import Stack, e2e_address, running
from tests.e2e.test_auth import imap_login, pop_login, smtp_login
from tests.e2e.test_read import sieve_login

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def small_budget() -> Iterator[Stack]:
    """AUTH_RATELIMIT_USER of 5 distinct wrong passwords a day: quick to spend."""
    require_root()
    stack = Stack("defence", e2e_address(60), settings={"AUTH_RATELIMIT_USER": "5/day"})
    with running(stack) as started:
        yield started


@pytest.fixture(scope="module")
def tokens_only() -> Iterator[Stack]:
    require_root()
    stack = Stack("tokensonly", e2e_address(61), settings={"AUTH_REQUIRE_TOKENS": "true"})
    with running(stack) as started:
        yield started


def add_token(stack: Stack, user: str) -> str:
    output = stack.roost("token", "add", user).stdout
    token = re.search(r"\b[0-9a-f]{32}\b", output)
    assert token, output
    return token.group(0)


def smtp_auth_on_port_25(stack: Stack, user: str, password: str, source: str) -> bytes:
    """An AUTH PLAIN on the MX port, which nginx does not offer; the reply line."""
    with socket.create_connection((stack.address, 25), 30, source_address=(source, 0)) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        sock.sendall(b"EHLO client.outside.test\r\n")
        while True:
            line = reader.readline()
            if line[:4] != b"250-":
                break
        credentials = base64.b64encode(f"\0{user}\0{password}".encode())
        sock.sendall(b"AUTH PLAIN " + credentials + b"\r\n")
        return reader.readline()


def test_auth_on_port_25_does_not_close_the_network_to_logins(small_budget: Stack) -> None:
    stack = small_budget
    user = stack.add_user("mx25", "mx25-pw-1")
    for n in range(6):
        reply = smtp_auth_on_port_25(stack, f"ghost{n}@example.test", "guess", "127.101.0.1")
        assert reply.startswith(b"502 5.5.1"), reply
    # The attempts reached the gate (nginx asks auth_http even without offering AUTH) ...
    stack.wait_for_log(r"AUTH attempt on port 25 from 127\.101\.0\.1 refused")
    # ... and spent nothing: IMAP and submission from the same /24 still log in.
    assert imap_login(stack, user, "mx25-pw-1", "127.101.0.2") == "OK"
    assert smtp_login(stack, user, "mx25-pw-1", "127.101.0.3") == "OK"


def test_a_spent_account_budget_does_not_lock_the_owner_out(small_budget: Stack) -> None:
    stack = small_budget
    user = stack.add_user("owner", "owner-pw-1")
    token = add_token(stack, user)
    home, attacker, phone = "127.102.0.1", "127.103.0.1", "127.104.0.1"
    assert imap_login(stack, user, "owner-pw-1", home) == "OK"
    for n in range(5):
        assert "AUTHENTICATIONFAILED" in imap_login(stack, user, f"guess-{n}", attacker)
    # The budget is spent: the attacker's network stays stopped even with the password,
    # and a network the owner has not used is refused with a pointer to app tokens ...
    assert imap_login(stack, user, "owner-pw-1", attacker) != "OK"
    refused = imap_login(stack, user, "owner-pw-1", phone)
    assert "An app token works from anywhere." in refused, refused
    assert "An app token works from anywhere." in pop_login(stack, user, "x", phone)
    assert "An app token works from anywhere." in sieve_login(stack, user, "x", phone).decode()
    # Postfix's SASL ignores Dovecot's nologin: submission keeps the plain refusal.
    assert smtp_login(stack, user, "owner-pw-1", phone).startswith("535 "), "never let in"
    stack.wait_for_log(
        rf"Authentication attempt from 127\.104\.0\.1 for {re.escape(user)} has been "
        r"rate-limited\. An app token works from anywhere\."
    )
    # ... where the token logs in; and the owner's own network still takes the password.
    assert imap_login(stack, user, token, phone) == "OK"
    assert imap_login(stack, user, "owner-pw-1", home) == "OK"
    assert imap_login(stack, user, "owner-pw-1", "127.102.0.9") == "OK"


def test_one_users_login_does_not_exempt_a_shared_address(small_budget: Stack) -> None:
    stack = small_budget
    nat = "127.105.0.1"
    alice = stack.add_user("alice", "alice-pw-1")
    bob = stack.add_user("bob", "bob-pw-1")
    assert imap_login(stack, alice, "alice-pw-1", nat) == "OK"
    for n in range(5):
        imap_login(stack, f"ghost{n}@example.test", "guess", nat)
    # Guesses from the shared address at other accounts are limited ...
    assert imap_login(stack, bob, "bob-pw-1", nat) != "OK"
    stack.wait_for_log(r"Authentication attempt from 127\.105\.0\.1 has been rate-limited\.")
    # ... while Alice, who logged in from there, is not.
    assert imap_login(stack, alice, "alice-pw-1", nat) == "OK"


def test_require_tokens_refuses_passwords_and_accepts_tokens(tokens_only: Stack) -> None:
    stack = tokens_only
    user = stack.add_user("tokenonly", "tokenonly-pw-1")
    token = add_token(stack, user)
    source = "127.106.0.1"
    assert "AUTHENTICATIONFAILED" in imap_login(stack, user, "tokenonly-pw-1", source)
    assert pop_login(stack, user, "tokenonly-pw-1", source).startswith("-ERR")
    assert smtp_login(stack, user, "tokenonly-pw-1", source).startswith("535")
    assert sieve_login(stack, user, "tokenonly-pw-1", source).startswith(b"NO")
    stack.wait_for_log(r"\(password refused: AUTH_REQUIRE_TOKENS\)")
    assert imap_login(stack, user, token, source) == "OK"
    assert pop_login(stack, user, token, source) == "OK"
    assert smtp_login(stack, user, token, source) == "OK"
    assert sieve_login(stack, user, token, source).startswith(b"OK")
