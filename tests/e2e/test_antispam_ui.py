"""Rspamd's own web interface through the real nginx at WEB_ADMIN/antispam/: a real stack,
its Rspamd controller on the socket for nginx, the web application answering nginx's
auth_request; httpx for the rules, Debian's Chromium (Playwright) for the interface itself
under its Content-Security-Policy.

Signed out: sent to the sign-in page and back. A user: sent to the forced password
change, then refused. The first administrator: the interface's page and the controller's
JSON; a POST from another origin is refused and changes nothing.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.e2e.browsing import CHROMIUM, new_context, sign_in
from tests.e2e.stack import DOMAIN, HOSTNAME, Stack, e2e_address

pytestmark = pytest.mark.e2e

UI = "/admin/antispam/"
ORIGIN = f"https://{HOSTNAME}"
EVIL = "https://evil.example"
#: Enough words for Rspamd's classifier to learn from it.
MESSAGE = (
    "From: seller@shop.example\r\nTo: admin@example.test\r\nSubject: cheap watches today\r\n"
    "Message-ID: <antispam-ui-1@shop.example>\r\n\r\n"
    + " ".join(f"buy cheap replica watches discount offer number {n}" for n in range(40))
    + "\r\n"
)


@pytest.fixture(scope="module")
def stack(web_stack: Stack) -> Stack:
    """The session's shared web stack (tests/e2e/conftest.py); no other module there
    teaches its Rspamd, so the learned count moves only by this module's lesson."""
    return web_stack


def client(stack: Stack) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=e2e_address(16), verify=False)
    return httpx.Client(
        transport=transport, base_url=f"https://{stack.address}", headers={"Host": HOSTNAME}
    )


def csrf_of(page: httpx.Response) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


def log_in(browser: httpx.Client, email: str, password: str, url: str = UI) -> httpx.Response:
    form = browser.get("/sso/login", params={"url": url})
    data = {"email": email, "password": password, "url": url, "csrf_token": csrf_of(form)}
    answer = browser.post("/sso/login", data=data)
    assert answer.status_code == 303, answer.text
    return answer


def stat(browser: httpx.Client) -> dict[str, Any]:
    answer = browser.get(UI + "stat", headers={"Referer": ORIGIN + UI})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    value = answer.json()
    assert isinstance(value, dict)
    return value


def test_signed_out_is_sent_to_sign_in(stack: Stack) -> None:
    with client(stack) as browser:
        for path in (UI, UI + "stat"):
            answer = browser.get(path, headers={"Referer": ORIGIN + UI})
            assert answer.status_code == 302
            assert answer.headers["location"] == ORIGIN + "/sso/login?url=" + path
        refused = browser.post(UI + "learnspam", content=MESSAGE, headers={"Origin": ORIGIN})
        assert refused.status_code == 302
        # The auth endpoint is nginx's own business.
        assert browser.get("/admin/antispam-auth").status_code == 404
        assert browser.get("/admin/antispam").headers["location"].endswith(UI)


def test_a_global_admin_gets_the_interface_and_its_data(stack: Stack) -> None:
    with client(stack) as browser:
        signed = log_in(browser, f"admin@{DOMAIN}", stack.admin_password)
        assert signed.headers["location"] == UI
        page = browser.get(UI)
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html"
        assert "<title>Rspamd Web Interface</title>" in page.text
        assert 'src="./js/lib/require.min.js"' in page.text
        headers = page.headers
        csp = headers["content-security-policy"]
        assert "script-src 'self' 'sha256-" in csp and "frame-ancestors 'self'" in csp
        assert headers.get_list("x-frame-options") == ["SAMEORIGIN"]
        assert headers["strict-transport-security"] == "max-age=31536000"
        assert "access-control-allow-origin" not in headers
        script = browser.get(UI + "js/main.js")
        assert script.status_code == 200
        assert script.headers["content-type"] == "application/javascript"

        # The controller trusts its Unix socket: full rights, no password asked.
        before = stat(browser)
        assert before["read_only"] is False and "scanned" in before
        assert browser.get(UI + "stat").status_code == 403  # no sign that this site asked

        # A POST from another origin is refused before Rspamd sees it.
        for origin in (EVIL, "null", f"https://other.{DOMAIN}"):
            refused = browser.post(UI + "learnspam", content=MESSAGE, headers={"Origin": origin})
            assert refused.status_code == 403
        assert stat(browser)["learned"] == before["learned"]
        # From this site it works: a scan, then learning.
        scanned = browser.post(UI + "checkv2", content=MESSAGE, headers={"Origin": ORIGIN})
        assert scanned.status_code == 200, scanned.text
        assert "action" in scanned.json()
        learned = browser.post(UI + "learnspam", content=MESSAGE, headers={"Origin": ORIGIN})
        assert learned.status_code == 200, learned.text
        assert stat(browser)["learned"] == before["learned"] + 1

        # Only GET and POST.
        for method in ("PUT", "DELETE", "OPTIONS"):
            other = browser.request(method, UI + "stat", headers={"Origin": ORIGIN})
            assert other.status_code == 403, method

        # Mailu's helper page.
        helper = browser.get("/admin/webui_antispam")
        assert helper.status_code == 200 and f'href="{UI}"' in helper.text


def test_a_user_changes_the_password_first_then_is_refused(stack: Stack) -> None:
    user = stack.add_user("plain", "first-password-1")
    with client(stack) as browser:
        log_in(browser, user, "first-password-1")
        forced = browser.get(UI)
        assert forced.status_code == 302
        assert forced.headers["location"] == ORIGIN + "/sso/pw_change"
        form = browser.get("/sso/pw_change")
        changed = browser.post(
            "/sso/pw_change",
            data={
                "current": "first-password-1",
                "password": "second-password-2",
                "password2": "second-password-2",
                "csrf_token": csrf_of(form),
            },
        )
        assert changed.status_code == 303, changed.text
        assert browser.get("/admin/account").status_code == 200
        for answer in (
            browser.get(UI),
            browser.get(UI + "stat", headers={"Referer": ORIGIN + UI}),
            browser.post(UI + "learnspam", content=MESSAGE, headers={"Origin": ORIGIN}),
        ):
            assert answer.status_code == 403
        assert browser.get("/admin/webui_antispam").status_code == 403


def test_the_interface_runs_in_a_browser_under_its_policy(stack: Stack) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium package is not installed")
    playwright_sync = pytest.importorskip("playwright.sync_api")
    with playwright_sync.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", f"--host-resolver-rules=MAP {HOSTNAME} {stack.address}"],
        )
        try:
            context = new_context(chromium)
            page = context.new_page()
            problems: list[str] = []
            page.goto(f"{ORIGIN}/admin/webui_antispam")
            sign_in(page, f"admin@{DOMAIN}", stack.admin_password)
            assert page.url == f"{ORIGIN}/admin/webui_antispam"
            page.click("text=Antispam")  # the sidebar link
            assert page.url == f"{ORIGIN}/admin/webui_antispam"
            with context.expect_page() as opened:
                page.click("text=Open Rspamd's interface")
            ui = opened.value
            ui.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            ui.on("pageerror", lambda e: problems.append(str(e)))
            ui.on(
                "response",
                lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )
            ui.wait_for_selector("#mainUI:not(.d-none)", timeout=20_000)
            assert ui.url.startswith(ORIGIN + UI)
            ui.wait_for_selector("#statWidgets", state="visible", timeout=20_000)
            assert "Scanned" in ui.inner_text("#statWidgets")
            # Not read-only: the learning form is there, the password dialog is not.
            assert ui.is_visible("#scan_nav")
            assert not ui.is_visible("#connectDialog")
            assert not [x for x in problems if "Content Security Policy" in x], problems
            assert not problems, problems
        finally:
            chromium.close()
