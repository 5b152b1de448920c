"""The welcome message end to end: an administrator creates a user on the admin pages
through the real nginx; with WELCOME=true the web daemon hands the message to the stack's
Postfix, which delivers it, and the new user reads it in INBOX over IMAP. With WELCOME
false, and for a user `roost user` makes (as Mailu: the CLI sends none), nothing comes:
a marker message sent afterwards arrives alone.
"""

from __future__ import annotations

import email
import email.policy
import re
import uuid

import httpx
import pytest

from tests.e2e.conftest import WEB_WELCOME_BODY, WEB_WELCOME_SUBJECT
from tests.e2e.stack import DOMAIN, HOSTNAME, OUTSIDE, Stack, e2e_address

pytestmark = pytest.mark.e2e

# The shared stacks' welcome text: the silent case checks the very subject it would send.
SUBJECT = WEB_WELCOME_SUBJECT
BODY = WEB_WELCOME_BODY
PASSWORD = "welcome-pw-42"
CLIENT = e2e_address(17)


@pytest.fixture(scope="module")
def welcoming(options_stack: Stack) -> Stack:
    """The session's stack with WELCOME=true and this subject and body."""
    assert options_stack.settings["WELCOME"] == "true"
    assert options_stack.settings["WELCOME_SUBJECT"] == SUBJECT
    return options_stack


@pytest.fixture(scope="module")
def silent(web_stack: Stack) -> Stack:
    """The session's shared web stack: WELCOME false, its subject and body set."""
    assert "WELCOME" not in web_stack.settings
    assert web_stack.settings["WELCOME_SUBJECT"] == SUBJECT
    return web_stack


def _csrf(page: httpx.Response) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


def create_on_admin_page(stack: Stack, localpart: str) -> str:
    """Sign in as the first administrator and create ``localpart@DOMAIN``."""
    transport = httpx.HTTPTransport(local_address=CLIENT, verify=False)
    with httpx.Client(
        transport=transport, base_url=f"https://{stack.address}", headers={"Host": HOSTNAME}
    ) as browser:
        login = browser.get("/sso/login")
        signed = browser.post(
            "/sso/login",
            data={
                "email": f"admin@{DOMAIN}",
                "password": stack.admin_password,
                "csrf_token": _csrf(login),
            },
        )
        assert signed.status_code == 303, signed.text
        form = f"/admin/user/create/{DOMAIN}"
        made = browser.post(
            form,
            data={
                "localpart": localpart,
                "password": PASSWORD,
                "password2": PASSWORD,
                "enabled": "on",
                "enable_imap": "on",
                "csrf_token": _csrf(browser.get(form)),
            },
        )
        assert made.status_code == 303, made.text
    return f"{localpart}@{DOMAIN}"


def only_the_marker_arrives(stack: Stack, user: str) -> None:
    """Send the user a marker from outside; once it is there, it must be all there is."""
    marker = f"marker {uuid.uuid4()}"
    with stack.smtp(source=OUTSIDE) as client:
        client.sendmail(
            "someone@outside.test",
            [user],
            f"From: someone@outside.test\r\nTo: {user}\r\nSubject: {marker}\r\n\r\nhi\r\n",
        )
    stack.wait_for_message(user, PASSWORD, marker)
    assert stack.count_messages(user, PASSWORD, SUBJECT) == 0
    assert stack.count_messages(user, PASSWORD, "") == 1


def test_a_user_made_on_the_admin_page_finds_the_welcome_in_inbox(welcoming: Stack) -> None:
    user = create_on_admin_page(welcoming, "newcomer")
    raw = welcoming.wait_for_message(user, PASSWORD, SUBJECT)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    assert message["From"] == f"postmaster@{DOMAIN}"
    assert message["To"] == user
    assert message["Subject"] == SUBJECT
    assert message.get_content().strip() == BODY
    assert welcoming.count_messages(user, PASSWORD, SUBJECT) == 1
    assert f"Welcome message to {user}: sent" in welcoming.log_text()


def test_a_user_roost_user_makes_gets_none(welcoming: Stack) -> None:
    user = welcoming.add_user("scripted", PASSWORD)
    only_the_marker_arrives(welcoming, user)


def test_with_welcome_false_none_is_sent(silent: Stack) -> None:
    user = create_on_admin_page(silent, "quiet")
    only_the_marker_arrives(silent, user)
    assert "Welcome message" not in silent.log_text()
