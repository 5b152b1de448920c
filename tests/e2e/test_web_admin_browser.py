"""The administration pages end to end: a real stack, the real nginx on 443, Debian's
Chromium (Playwright, through tests/e2e/browsing.py).

The initial administrator signs in, creates a domain, a user and an alias through the
forms; then mail from outside to the alias reaches the new user's mailbox over the real
Postfix, gate and Dovecot. The run saves screenshots of the domain list, the user list
and the user edit page (desktop 1280 and phone 390 wide) in docs/screenshots/.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.browsing import BASE, PHONE, chromium_for, need_chromium, new_context, shoot, sign_in
from tests.e2e.stack import DOMAIN, Stack
from tests.e2e.test_inbound import message

pytestmark = pytest.mark.e2e

NEW_DOMAIN = "garden.test"
PASSWORD = "carrot-cake-42"


@pytest.fixture(scope="module")
def stack(web_stack: Stack) -> Stack:
    """The session's shared web stack (tests/e2e/conftest.py)."""
    need_chromium()
    return web_stack


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    with chromium_for(stack) as chromium:
        yield chromium


def submit(page: Any) -> None:
    page.click("main form:not(.search) button[type=submit]")
    page.wait_for_load_state()


def test_admin_creates_a_domain_a_user_and_an_alias_that_receives_mail(
    stack: Stack, browser: Any
) -> None:
    context = new_context(browser)
    page = context.new_page()
    page.goto(f"{BASE}/admin/domain")
    sign_in(page, f"admin@{DOMAIN}", stack.admin_password)
    assert page.url == f"{BASE}/admin/domain"

    # A domain.
    page.click("text=New domain")
    page.fill("#name", NEW_DOMAIN)
    page.fill("#max_users", "20")
    page.fill("#comment", "The garden club")
    submit(page)
    assert page.url == f"{BASE}/admin/domain/details/{NEW_DOMAIN}"
    assert "Domain garden.test created." in page.inner_text(".notice")
    assert f"{NEW_DOMAIN}." in page.inner_text(".records")  # its DNS records

    # A user of it (no forced password change: the test reads the mailbox next).
    page.goto(f"{BASE}/admin/user/create/{NEW_DOMAIN}")
    page.fill("#localpart", "rose")
    page.fill("#password", PASSWORD)
    page.fill("#password2", PASSWORD)
    page.fill("#displayed_name", "Rose Gardener")
    page.fill("#quota_bytes", "2G")
    page.uncheck("input[name=change_pw_next_login]")
    submit(page)
    assert page.url == f"{BASE}/admin/user/list/{NEW_DOMAIN}"
    assert f"rose@{NEW_DOMAIN}" in page.inner_text("main table")

    # An alias to the user.
    page.goto(f"{BASE}/admin/alias/create/{NEW_DOMAIN}")
    page.fill("#localpart", "club")
    page.fill("#destination", f"rose@{NEW_DOMAIN}")
    submit(page)
    assert page.url == f"{BASE}/admin/alias/list/{NEW_DOMAIN}"
    assert f"club@{NEW_DOMAIN}" in page.inner_text("main table")

    # Mail from outside to the alias reaches the new mailbox.
    subject = f"to the club {uuid.uuid4()}"
    rcpt = f"club@{NEW_DOMAIN}"
    with stack.smtp() as client:
        client.sendmail("a@sender.test", [rcpt], message("a@sender.test", rcpt, subject))
    raw = stack.wait_for_message(f"rose@{NEW_DOMAIN}", PASSWORD, subject)
    assert subject.encode() in raw

    # Screenshots: the domain list, the user list and the user edit page.
    pages = {
        "admin-domains": f"{BASE}/admin/domain",
        "admin-users": f"{BASE}/admin/user/list/{NEW_DOMAIN}",
        "admin-user-edit": f"{BASE}/admin/user/edit/rose@{NEW_DOMAIN}",
    }
    for name, url in pages.items():
        page.goto(url)
        shoot(page, f"{name}-desktop")
    phone = new_context(browser, PHONE, storage_state=context.storage_state())
    phone_page = phone.new_page()
    for name, url in pages.items():
        phone_page.goto(url)
        shoot(phone_page, f"{name}-phone")
    phone.close()
    context.close()
