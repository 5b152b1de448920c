"""Sign-up end to end: a real stack, the real nginx on 443, Debian's Chromium (Playwright,
through tests/e2e/browsing.py).

A domain takes sign-ups; a visitor finds the link on the sign-in page, signs up, signs in,
must choose a new password first, and the new mailbox receives mail from outside over the
real Postfix, gate and Dovecot. The run saves the sign-up page (desktop 1280 and phone
390 wide) in docs/screenshots/.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.browsing import BASE, PHONE, chromium_for, need_chromium, new_context, shoot, sign_in
from tests.e2e.stack import Stack
from tests.e2e.test_inbound import message

pytestmark = pytest.mark.e2e

CLUB = "club.test"
FIRST = "first-password-1"
SECOND = "second-password-2"


@pytest.fixture(scope="module")
def stack(web_stack: Stack) -> Stack:
    """The session's shared web stack (tests/e2e/conftest.py), with a domain open to sign-ups."""
    need_chromium()
    web_stack.roost(
        "config-import",
        "--update",
        stdin=f"domain:\n  - name: {CLUB}\n    signup_enabled: true\n    max_users: 5\n",
    )
    return web_stack


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    with chromium_for(stack) as chromium:
        yield chromium


def test_a_visitor_signs_up_changes_the_password_and_receives_mail(
    stack: Stack, browser: Any
) -> None:
    context = new_context(browser)
    page = context.new_page()

    # The sign-in page offers to sign up; the choice lists the open domain.
    page.goto(f"{BASE}/sso/login")
    page.click("text=Sign up")
    page.wait_for_load_state()
    assert page.url == f"{BASE}/admin/user/signup"
    page.click(f"main a:text-is('{CLUB}')")
    page.wait_for_load_state()
    assert page.url == f"{BASE}/admin/user/signup/{CLUB}"

    # A password too short is refused with the rule.
    page.fill("#localpart", "newbie")
    page.fill("#password", "short")
    page.fill("#password2", "short")
    page.eval_on_selector_all("input[minlength]", "els => els.forEach(e => e.minLength = 0)")
    page.click("main button[type=submit]")
    page.wait_for_load_state()
    assert "too short" in page.inner_text(".error")

    page.goto(f"{BASE}/admin/user/signup/{CLUB}")
    page.fill("#localpart", "newbie")
    page.fill("#password", FIRST)
    page.fill("#password2", FIRST)
    shoot(page, "signup-desktop")
    page.click("main button[type=submit]")
    page.wait_for_load_state()
    assert page.url == f"{BASE}/sso/login?msg=signed-up"
    assert "Your account is ready" in page.inner_text(".notice")
    stack.wait_for_log(rf"Sign-up: user newbie@{CLUB} created from: 127\.\S+")
    assert FIRST not in stack.log_text()

    # The first sign-in must choose a new password (as Mailu's sign-up sets it).
    sign_in(page, f"newbie@{CLUB}", FIRST)
    assert page.url == f"{BASE}/sso/pw_change"
    page.fill("#current", FIRST)
    page.fill("#password", SECOND)
    page.fill("#password2", SECOND)
    page.click("main button[type=submit]")
    page.wait_for_load_state()
    assert page.url == f"{BASE}/admin/account"
    assert f"newbie@{CLUB}" in page.inner_text("main")

    # Mail from outside reaches the new mailbox, read over IMAP with the new password.
    subject = f"welcome {uuid.uuid4()}"
    rcpt = f"newbie@{CLUB}"
    with stack.smtp() as client:
        client.sendmail("a@sender.test", [rcpt], message("a@sender.test", rcpt, subject))
    raw = stack.wait_for_message(rcpt, SECOND, subject)
    assert subject.encode() in raw
    context.close()

    # The sign-up page on a phone.
    phone = new_context(browser, PHONE)
    phone_page = phone.new_page()
    phone_page.goto(f"{BASE}/admin/user/signup/{CLUB}")
    shoot(phone_page, "signup-phone")
    phone.close()
