"""The announcement end to end: the administrator sends it in Debian's Chromium through the
real nginx; the web daemon hands one message per enabled user to the stack's Postfix, which
delivers them over LMTP; two users read theirs over IMAP, a disabled user gets none. Then a
user opens the client setup page. Screenshots (desktop 1280, phone 390) in docs/screenshots/.
"""

from __future__ import annotations

import email
import email.policy
import http.client
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.browsing import BASE, PHONE, chromium_for, need_chromium, new_context, shoot, sign_in
from tests.e2e.stack import DOMAIN, HOSTNAME, Stack

pytestmark = pytest.mark.e2e

PASSWORD = "announce-me-42"


@pytest.fixture(scope="module")
def stack(web_stack: Stack) -> Stack:
    """The session's shared web stack (tests/e2e/conftest.py)."""
    need_chromium()
    return web_stack


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    with chromium_for(stack) as chromium:
        yield chromium


def test_announcement_reaches_every_enabled_user_over_imap(stack: Stack, browser: Any) -> None:
    bob = stack.add_user("bob", PASSWORD)
    carol = stack.add_user("carol", PASSWORD)
    gone = stack.add_user("gone", PASSWORD)
    stack.roost("user-delete", gone)  # disabled, not deleted
    subject = f"Maintenance tonight {uuid.uuid4()}"

    context = new_context(browser)
    page = context.new_page()
    page.goto(f"{BASE}/admin/announcement")
    sign_in(page, f"admin@{DOMAIN}", stack.admin_password)
    assert page.url == f"{BASE}/admin/announcement"
    page.fill("#subject", subject)
    page.fill("#body", "Hello,\nthe server restarts at 22:00.\n-- the postmaster")
    page.click("main form button[type=submit]")
    page.wait_for_load_state()
    assert page.url == f"{BASE}/admin/announcement"
    # A thread of the web daemon sends; the page refreshes itself until it is done.
    for _ in range(60):
        notice = page.inner_text("main")
        if "so far" not in notice:
            break
        page.wait_for_timeout(500)
        page.reload()
    counted = re.search(r"“[^”]+” sent to (\d+) of \1 enabled users\.", notice)
    assert counted and int(counted.group(1)) >= 3, notice  # admin, bob, carol (not gone)

    for user in (bob, carol):
        raw = stack.wait_for_message(user, PASSWORD, subject)
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert message["From"] == f"postmaster@{DOMAIN}"
        assert message["To"] == user
        assert "the server restarts at 22:00." in message.get_content()
        # Through Postfix: its Received line, and the envelope sender as Return-Path.
        assert any("(Postfix)" in str(line) for line in message.get_all("Received", []))
        assert message["Return-Path"] == f"<postmaster@{DOMAIN}>"
        assert stack.count_messages(user, PASSWORD, subject) == 1
    # The disabled user's mailbox got nothing.
    mailbox = stack.root / "mail" / gone
    stored = [p.read_bytes() for p in mailbox.rglob("*") if p.is_file()] if mailbox.exists() else []
    assert not any(subject.encode() in b for b in stored)

    shoot(page, "admin-announcement-desktop")
    phone = new_context(browser, PHONE, storage_state=context.storage_state())
    phone_page = phone.new_page()
    phone_page.goto(f"{BASE}/admin/announcement")
    shoot(phone_page, "admin-announcement-phone")
    phone.close()
    context.close()


def fetch(stack: Stack, path: str) -> tuple[int, str, bytes]:
    """GET ``path`` from the stack's nginx on 443 as HOSTNAME (the browser would download it)."""
    connection = http.client.HTTPSConnection(
        stack.address, 443, context=stack.tls_context(), timeout=30
    )
    try:
        connection.request("GET", path, headers={"Host": HOSTNAME})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def test_client_setup_page_for_a_user(stack: Stack, browser: Any) -> None:
    context = new_context(browser)
    page = context.new_page()
    page.goto(f"{BASE}/admin/client")
    sign_in(page, f"bob@{DOMAIN}", PASSWORD)
    # A user made by `roost user` changes the password at the first sign-in.
    assert page.url == f"{BASE}/sso/pw_change"
    page.fill("#current", PASSWORD)
    page.fill("#password", PASSWORD + "-new")
    page.fill("#password2", PASSWORD + "-new")
    page.click("main button[type=submit]")
    page.wait_for_load_state()
    page.goto(f"{BASE}/admin/client")
    assert page.url == f"{BASE}/admin/client"
    text = page.inner_text("main")
    assert HOSTNAME in text and f"bob@{DOMAIN}" in text
    for port in ("993", "465"):
        assert port in page.inner_text("main table")
    # The Apple profile link answers with a profile for this address.
    href = page.get_attribute("a[href^='/apple.mobileconfig']", "href")
    assert href is not None
    status, kind, body = fetch(stack, href)
    assert status == 200
    assert kind.startswith("application/x-apple-aspen-config")
    assert f"bob@{DOMAIN}".encode() in body
    shoot(page, "client-desktop")
    phone = new_context(browser, PHONE, storage_state=context.storage_state())
    phone_page = phone.new_page()
    phone_page.goto(f"{BASE}/admin/client")
    shoot(phone_page, "client-phone")
    phone.close()
    context.close()
