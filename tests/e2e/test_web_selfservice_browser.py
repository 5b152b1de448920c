"""Self-service pages end to end: a real stack, the real nginx on 443, Debian's Chromium.

A user turns on an auto-reply on the settings page, and a message sent to them over SMTP
from outside gets it (Dovecot's Sieve vacation, sent out by Postfix to the sender's MX);
then they make an app token on the tokens page and log in to IMAP with it. Screenshots of
the settings and tokens pages go to docs/screenshots/ (desktop 1280 and phone 390 wide).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.browsing import (
    BASE,
    PHONE,
    chromium_for,
    need_chromium,
    new_context,
    shoot,
    sign_in,
    submit,
)
from tests.e2e.conftest import Receiver
from tests.e2e.stack import Stack
from tests.e2e.test_auth import imap_login
from tests.e2e.test_autoreply import outside_sender, send, wait_for_reply

pytestmark = pytest.mark.e2e

SOURCE = "127.127.0.27"


@pytest.fixture(scope="module")
def stack(web_stack: Stack) -> Stack:
    """The session's shared web stack (tests/e2e/conftest.py)."""
    need_chromium()
    return web_stack


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    with chromium_for(stack) as chromium:
        yield chromium


def test_auto_reply_and_app_token_made_on_the_web(
    stack: Stack, browser: Any, receiver: Receiver
) -> None:
    user = stack.add_user("selma", "selma-first-1")
    context = new_context(browser)
    page = context.new_page()
    page.goto(f"{BASE}/admin/account")
    sign_in(page, user, "selma-first-1")
    # `roost user` asks for a new password at the first sign-in.
    assert page.url == f"{BASE}/sso/pw_change"
    page.fill("#current", "selma-first-1")
    page.fill("#password", "selma-second-2")
    page.fill("#password2", "selma-second-2")
    submit(page, "main button[type=submit]")
    assert page.url == f"{BASE}/admin/account"

    # The auto-reply, from the account page's link.
    submit(page, "a[href='/admin/account/settings']")
    assert page.url == f"{BASE}/admin/account/settings"
    page.check("#reply input[name=reply_enabled]")
    page.fill("#reply_subject", "Out of the office")
    page.fill("#reply_body", "I am away until Monday.\nSelma")
    submit(page, "#reply button[type=submit]")
    assert page.url == f"{BASE}/admin/account/settings?msg=reply#reply"
    assert "Auto-reply saved." in page.inner_text("main")
    shoot(page, "self-settings-desktop")

    sender = outside_sender("selfsvc")
    send(stack, user, sender)
    reply = wait_for_reply(receiver, sender, stack)
    assert str(reply["Subject"]) == "Out of the office"
    payload = reply.get_payload(decode=True)
    assert isinstance(payload, bytes)
    assert payload.decode().replace("\r\n", "\n").rstrip("\n") == "I am away until Monday.\nSelma"

    # An app token: shown once, opens IMAP (the password was changed on the web too).
    page.goto(f"{BASE}/admin/account/tokens")
    page.fill("#comment", "phone mail app")
    submit(page, "form[action='/admin/account/tokens'] button")
    token = page.inner_text("#token").strip()
    assert re.fullmatch(r"[0-9a-f]{32}", token)
    assert "phone mail app" in page.inner_text("table")
    assert imap_login(stack, user, token, SOURCE) == "OK"
    assert "AUTHENTICATIONFAILED" in imap_login(stack, user, token[::-1], SOURCE)
    page.goto(f"{BASE}/admin/account/tokens")
    assert token not in page.content()
    shoot(page, "self-tokens-desktop")
    assert token not in stack.log_text()

    phone = new_context(browser, PHONE, storage_state=context.storage_state())
    phone_page = phone.new_page()
    phone_page.goto(f"{BASE}/admin/account/settings")
    shoot(phone_page, "self-settings-phone")
    phone_page.goto(f"{BASE}/admin/account/tokens")
    shoot(phone_page, "self-tokens-phone")
    phone.close()

    # Deleting the token on the web closes IMAP to it.
    submit(page, "table form button")
    assert "Deleted." in page.inner_text("main")
    assert "AUTHENTICATIONFAILED" in imap_login(stack, user, token, SOURCE)
    context.close()
