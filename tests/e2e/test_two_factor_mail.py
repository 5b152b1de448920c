"""Two-factor login end to end: once a user has it on, the password no longer opens IMAP or
SMTP submission (an app token does), and the gate tells the web a second step is due."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx
import pytest

from tests.e2e.stack import Stack
from tests.e2e.test_auth import imap_login, smtp_login
from tests.e2e.test_login_defence import add_token

pytestmark = pytest.mark.e2e

# Enrols the user as the web's account page does: begin, then confirm with the app's code.
ENROL = """
import sys, pyotp
from pathlib import Path
from roost.settings import load_settings
from roost.store import work
from roost.store.entities import user as users
settings = load_settings(env_file=Path(sys.argv[1]))
with work.change(settings) as session:
    secret = users.begin_enrolment(session, settings, sys.argv[2]).secret
with work.change(settings) as session:
    users.confirm_enrolment(session, settings, sys.argv[2], pyotp.TOTP(secret).now())
print("enrolled")
"""


@pytest.fixture(scope="module")
def stack(web_stack: Stack) -> Stack:
    """The session's shared web stack (tests/e2e/conftest.py)."""
    return web_stack


def enrol(stack: Stack, user: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", ENROL, str(stack.env_file), user],
        capture_output=True,
        text=True,
        env=stack.environ(),
        timeout=60,
    )
    assert result.stdout.strip() == "enrolled", result.stderr


def web_answer(stack: Stack, user: str, password: str) -> httpx.Headers:
    """The gate's answer to a web sign-in, asked over its socket as the web app asks."""
    socket_path = stack.root / "run" / "gate-http" / "http.sock"
    transport = httpx.HTTPTransport(uds=str(socket_path))
    with httpx.Client(transport=transport, timeout=10) as client:
        response = client.get(
            "http://gate/auth/email",
            headers={
                "Auth-Method": "plain",
                "Auth-User": user,
                "Auth-Pass": password,
                "Auth-Protocol": "web",
                "Auth-Port": "443",
                "Client-IP": "127.107.0.9",
                "Client-Port": "50000",
            },
        )
    assert response.status_code == 200
    return response.headers


def test_a_two_factor_user_needs_an_app_token_for_mail(stack: Stack) -> None:
    user = stack.add_user("twofa", "twofa-pw-1")
    token = add_token(stack, user)
    source = "127.107.0.1"
    # Before enrolling, the password works everywhere and the web needs nothing more.
    assert imap_login(stack, user, "twofa-pw-1", source) == "OK"
    assert "auth-2fa" not in web_answer(stack, user, "twofa-pw-1")

    enrol(stack, user)

    assert "AUTHENTICATIONFAILED" in imap_login(stack, user, "twofa-pw-1", source)
    assert smtp_login(stack, user, "twofa-pw-1", source).startswith("535")
    stack.wait_for_log(
        re.escape(f"Login attempt for: {user}/imap/")
        + r".*\(password refused: two-factor login is on, an app token is needed\)"
    )
    assert imap_login(stack, user, token, source) == "OK"
    assert smtp_login(stack, user, token, source) == "OK"

    answer = web_answer(stack, user, "twofa-pw-1")
    assert (answer["auth-status"], answer["auth-2fa"]) == ("OK", "required")
    assert web_answer(stack, user, token)["auth-status"] != "OK"  # tokens never open the web


def test_a_domain_that_requires_it_sends_its_users_to_enrol(stack: Stack) -> None:
    user = stack.add_user("enrolme", "enrolme-pw-1")
    stack.roost("2fa", "enforce", "example.test", "on")
    try:
        answer = web_answer(stack, user, "enrolme-pw-1")
        assert (answer["auth-status"], answer["auth-2fa"]) == ("OK", "enrol")
        # Until the user enrols, mail clients keep working with the password.
        assert imap_login(stack, user, "enrolme-pw-1", "127.107.0.2") == "OK"
    finally:
        stack.roost("2fa", "enforce", "example.test", "off")
