"""The web sign-in end to end: a real stack, the real nginx on 443, Debian's Chromium.

Playwright drives /usr/bin/chromium (never a downloaded browser, see tests/e2e/browsing.py);
the browser resolves the stack's host name to the stack's own loopback address. The run
also saves the screenshots in docs/screenshots/ (desktop 1280 and phone 390 wide).
"""

from __future__ import annotations

import grp
import json
import pwd
import re
import stat
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from roost.layout import WEB_USER
from tests.e2e.browsing import (
    BASE,
    PHONE,
    chromium_for,
    need_chromium,
    new_context,
    shoot,
    sign_in,
)
from tests.e2e.stack import DOMAIN, HOSTNAME, Stack

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


def test_sign_in_account_page_and_password_change(stack: Stack, browser: Any) -> None:
    alice = stack.add_user("alice", "first-password-1")
    context = new_context(browser)
    page = context.new_page()

    # A protected page sends to the sign-in form, and back afterwards.
    response = page.goto(f"{BASE}/admin/account")
    assert page.url == f"{BASE}/sso/login?url=/admin/account"
    headers = response.all_headers()
    assert headers["x-frame-options"] == "SAMEORIGIN"  # once: nginx's, the app's hidden
    assert headers["strict-transport-security"] == "max-age=31536000"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert "script-src 'none'" in headers["content-security-policy"]
    shoot(page, "login-desktop")

    # A wrong password: the form says so, the gate logs the line fail2ban reads.
    sign_in(page, alice, "wrong-password")
    assert "Wrong e-mail or password." in page.inner_text(".error")
    stack.wait_for_log(
        rf"Login attempt for: {re.escape(alice)}/web/443 from: 127\.\S+: failed: badauth: "
        r"[0-9a-f]{6}"
    )

    # The first sign-in of a user made by `roost user` must change the password first.
    sign_in(page, alice, "first-password-1")
    assert page.url == f"{BASE}/sso/pw_change"
    page.goto(f"{BASE}/admin/account")
    assert page.url == f"{BASE}/sso/pw_change"
    page.fill("#current", "first-password-1")
    page.fill("#password", "second-password-2")
    page.fill("#password2", "second-password-2")
    page.click("main button[type=submit]")
    page.wait_for_load_state()
    assert page.url == f"{BASE}/admin/account"
    assert alice in page.inner_text("main")
    assert "Mailbox" in page.inner_text("main")
    shoot(page, "account-desktop")

    cookies = {c["name"]: c for c in context.cookies()}
    session = cookies["__Host-session"]
    assert session["secure"] and session["httpOnly"] and session["sameSite"] == "Lax"
    assert session["path"] == "/"

    # The same pages on a phone.
    phone = new_context(browser, PHONE, storage_state=context.storage_state())
    phone_page = phone.new_page()
    phone_page.goto(f"{BASE}/admin/account")
    shoot(phone_page, "account-phone")
    phone.close()
    anonymous_phone = new_context(browser, PHONE)
    login_page = anonymous_phone.new_page()
    login_page.goto(f"{BASE}/sso/login")
    shoot(login_page, "login-phone")
    anonymous_phone.close()

    # A POST without the form's CSRF token is refused, even with the session cookie.
    with httpx.Client(verify=False, base_url=f"https://{stack.address}") as client:
        refused = client.post(
            "/admin/account/password",
            headers={"Host": HOSTNAME, "Cookie": f"__Host-session={session['value']}"},
            data={"current": "second-password-2", "password": "x" * 12, "password2": "x" * 12},
        )
    assert refused.status_code == 403

    # Change the password on the account page: signed out, the new one works.
    page.goto(f"{BASE}/admin/account")
    page.fill("#current", "second-password-2")
    page.fill("#password", "third-password-3")
    page.fill("#password2", "third-password-3")
    page.click("form[action='/admin/account/password'] button[type=submit]")
    page.wait_for_load_state()
    assert page.url == f"{BASE}/sso/login?msg=changed"
    assert "password was changed" in page.inner_text(".notice")
    page.goto(f"{BASE}/admin/account")
    assert page.url.startswith(f"{BASE}/sso/login")
    sign_in(page, alice, "third-password-3")
    assert page.url == f"{BASE}/admin/account"
    # The old session's cookie opens nothing any more.
    stale = new_context(browser)
    stale.add_cookies([{**session, "expires": -1}])
    stale_page = stale.new_page()
    stale_page.goto(f"{BASE}/admin/account")
    assert stale_page.url.startswith(f"{BASE}/sso/login")
    stale.close()

    # Sign out from the header.
    page.click("form.signout button")
    page.wait_for_load_state()
    assert page.url == f"{BASE}/sso/login?msg=out"
    context.close()


def test_a_sign_in_without_csrf_token_is_refused(stack: Stack) -> None:
    with httpx.Client(verify=False, base_url=f"https://{stack.address}") as client:
        client.get("/sso/login", headers={"Host": HOSTNAME})
        answer = client.post(
            "/sso/login",
            headers={"Host": HOSTNAME},
            data={"email": f"admin@{DOMAIN}", "password": stack.admin_password},
        )
    assert answer.status_code == 403


def test_the_client_cannot_choose_its_address(stack: Stack) -> None:
    # A name of its own: the shared stack's log holds other modules' login attempts.
    nobody = f"nobody-{uuid.uuid4().hex[:8]}@{DOMAIN}"
    with httpx.Client(verify=False, base_url=f"https://{stack.address}") as client:
        page = client.get("/sso/login", headers={"Host": HOSTNAME})
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        client.post(
            "/sso/login",
            headers={
                "Host": HOSTNAME,
                "X-Real-IP": "203.0.113.77",
                "X-Forwarded-For": "203.0.113.78",
            },
            data={"email": nobody, "password": "guess-1", "csrf_token": token},
        )
    line = stack.wait_for_log(rf"Login attempt for: {re.escape(nobody)}/web/443 .*")
    assert "203.0.113" not in line.group(0)


def test_port_80_redirects_to_https(stack: Stack) -> None:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(
        f"http://{stack.address}/admin/account", headers={"Host": HOSTNAME}
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(request, timeout=10)
    assert caught.value.code == 301
    assert caught.value.headers["Location"] == f"https://{HOSTNAME}/admin/account"


def test_the_web_runs_as_its_own_user_with_no_capabilities(stack: Stack) -> None:
    """The running web process is the web user's, in its own group and Redis's only, with
    no capability at all; what it changes through the API still reaches the store, the
    DKIM keys (its group's, not the world's) and the gate (its own control socket)."""
    status_file = json.loads((stack.root / "run" / "status.json").read_text())
    pid = int(status_file["services"]["web"]["pid"])
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    status = {name: value.split() for name, value in (line.split(":", 1) for line in lines)}
    account = pwd.getpwnam(WEB_USER)
    assert status["Uid"] == [str(account.pw_uid)] * 4
    assert status["Gid"] == [str(account.pw_gid)] * 4
    assert status["Groups"] == [str(grp.getgrnam("redis").gr_gid)]
    for name in ("CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"):
        assert int(status[name][0], 16) == 0, name
    assert status["NoNewPrivs"] == ["1"]

    domain = f"webuser-{uuid.uuid4().hex[:8]}.test"
    headers = {"Host": HOSTNAME, "Authorization": stack.settings["API_TOKEN"]}
    with httpx.Client(verify=False, base_url=f"https://{stack.address}", headers=headers) as api:
        assert api.post("/api/v1/domain", json={"name": domain}).status_code == 200
        assert api.post(f"/api/v1/domain/{domain}/dkim").status_code == 200
        shown = api.get(f"/api/v1/domain/{domain}").json()
        assert "p=" in shown["dns_dkim"]  # the web read the key back
        user = {"email": f"bob@{domain}", "raw_password": "web-made-pw-1"}
        assert api.post("/api/v1/user", json=user).status_code == 200
    [key] = (stack.root / "dkim").glob(f"{domain}.*.key")
    info = key.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (
        account.pw_uid,
        account.pw_gid,
        0o640,
    )
    # The store's files are root's, of its group; it wrote them and made none beside them.
    data = stack.root / "data"
    for path in (data / "main.db", data / "main.db-wal", data / "main.db-shm"):
        info = path.stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (
            0,
            account.pw_gid,
            0o660,
        ), path
    assert all(path.stat().st_uid != account.pw_uid for path in data.iterdir())
    # The gate's sockets for it are its group's alone.
    gate_web = (stack.root / "run" / "gate-web").stat()
    assert (gate_web.st_uid, gate_web.st_gid) == (0, account.pw_gid)
    assert stat.S_IMODE(gate_web.st_mode) == 0o750
    # Its reload requests were answered: none refused, and the new user logs in at once.
    assert "cannot reach the gate" not in stack.log_text()
    imap = stack.imap()
    try:
        assert imap.login(f"bob@{domain}", "web-made-pw-1")[0] == "OK"
    finally:
        imap.logout()
