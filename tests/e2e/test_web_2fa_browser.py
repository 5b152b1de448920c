"""Two-factor web login end to end: a real stack, the real nginx on 443, Debian's Chromium.

A user enrols on the account page (the secret read from the page, the code computed with
pyotp as an authenticator app would), signs out, signs in with password and code, then
with a recovery code; a wrong code is logged for fail2ban; and the same user's password
no longer opens IMAP while an app token does. Screenshots of the enrolment page and the
code step go to docs/screenshots/ (desktop 1280 and phone 390 wide).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pyotp
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
from tests.e2e.stack import Stack
from tests.e2e.test_auth import imap_login
from tests.e2e.test_login_defence import add_token

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(web_stack: Stack) -> Stack:
    """The session's shared web stack (tests/e2e/conftest.py)."""
    need_chromium()
    return web_stack


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    with chromium_for(stack) as chromium:
        yield chromium


def begin_enrolment(page: Any) -> str:
    """From the account page to the QR code; the secret the page shows."""
    page.goto(f"{BASE}/admin/account")
    page.click("a[href='/admin/account/2fa']")
    page.wait_for_load_state()
    assert page.url == f"{BASE}/admin/account/2fa"
    submit(page, "form[action='/admin/account/2fa/begin'] button")
    assert page.locator(".qr svg").count() == 1
    secret = page.get_attribute("#secret", "data-secret")
    assert secret and re.fullmatch(r"[A-Z2-7]{32}", secret)
    # The text shown is the same secret, in groups of four for typing.
    assert page.inner_text("#secret").replace(" ", "") == secret
    return secret


def test_enrol_then_sign_in_with_a_code_and_with_a_recovery_code(
    stack: Stack, browser: Any
) -> None:
    user = stack.add_user("otto", "otto-first-1")
    token = add_token(stack, user)
    source = "127.126.0.1"
    assert imap_login(stack, user, "otto-first-1", source) == "OK"

    context = new_context(browser)
    page = context.new_page()
    page.goto(f"{BASE}/admin/account")
    sign_in(page, user, "otto-first-1")
    # `roost user` asks for a new password at the first sign-in.
    assert page.url == f"{BASE}/sso/pw_change"
    page.fill("#current", "otto-first-1")
    page.fill("#password", "otto-second-2")
    page.fill("#password2", "otto-second-2")
    submit(page, "main button[type=submit]")
    assert page.url == f"{BASE}/admin/account"

    # The enrolment page on a phone first (beginning again on the desktop replaces it).
    phone = new_context(browser, PHONE, storage_state=context.storage_state())
    phone_page = phone.new_page()
    begin_enrolment(phone_page)
    shoot(phone_page, "2fa-enrol-phone")
    phone.close()

    secret = begin_enrolment(page)
    shoot(page, "2fa-enrol-desktop")
    app = pyotp.TOTP(secret)
    page.fill("#code", app.now())
    submit(page, "main button[type=submit]")
    codes = [c.strip() for c in page.locator("#recovery-codes li").all_inner_texts()]
    assert len(codes) == 10 and all(re.fullmatch(r"[a-z2-7]{4}(-[a-z2-7]{4}){3}", c) for c in codes)
    shoot(page, "2fa-codes-desktop")
    page.goto(f"{BASE}/admin/account/2fa")
    assert "Recovery codes left: 10" in page.inner_text("main")
    submit(page, "form.signout button")
    assert page.url == f"{BASE}/sso/login?msg=out"

    # Password, then the app's code (the next step's: the enrolment used this one).
    sign_in(page, user, "otto-second-2")
    assert page.url == f"{BASE}/sso/2fa"
    page.goto(f"{BASE}/admin/account")
    assert page.url.startswith(f"{BASE}/sso/login")  # the password alone opens nothing
    sign_in(page, user, "otto-second-2")
    assert page.url == f"{BASE}/sso/2fa"
    shoot(page, "2fa-code-desktop")
    page.fill("#code", app.at(time.time() + 30))
    submit(page, "main button[type=submit]")
    assert page.url == f"{BASE}/admin/account"
    assert user in page.inner_text("main")
    stack.wait_for_log(
        re.escape(f"Login attempt for: {user}/web/443 ") + r".*success: second factor"
    )
    submit(page, "form.signout button")

    # A wrong code is a failed login for fail2ban; a recovery code works, once.
    sign_in(page, user, "otto-second-2")
    page.fill("#code", "000000" if app.now() != "000000" else "000001")
    submit(page, "main button[type=submit]")
    assert "not right" in page.inner_text(".error")
    stack.wait_for_log(
        re.escape(f"Login attempt for: {user}/web/443 from: ")
        + r"\S+: failed: badauth: [0-9a-f]{6} \(second factor refused\)"
    )
    page.fill("#code", codes[0])
    submit(page, "main button[type=submit]")
    assert page.url == f"{BASE}/admin/account"
    submit(page, "form.signout button")
    sign_in(page, user, "otto-second-2")
    page.fill("#code", codes[0])
    submit(page, "main button[type=submit]")
    assert page.url == f"{BASE}/sso/2fa" and "not right" in page.inner_text(".error")

    # The code step on a phone.
    phone = new_context(browser, PHONE)
    phone_page = phone.new_page()
    phone_page.goto(f"{BASE}/sso/login")
    sign_in(phone_page, user, "otto-second-2")
    assert phone_page.url == f"{BASE}/sso/2fa"
    shoot(phone_page, "2fa-code-phone")
    phone.close()
    context.close()

    # Mail clients: the password no longer opens IMAP, the app token does.
    assert "AUTHENTICATIONFAILED" in imap_login(stack, user, "otto-second-2", source)
    assert imap_login(stack, user, token, source) == "OK"
