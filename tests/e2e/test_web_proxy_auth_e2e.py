"""Header authentication through the real nginx: the proxy is whoever nginx's connection
comes from, never what the request's headers claim.

A stack with PROXY_AUTH_WHITELIST naming one loopback address (the "proxy"): a client
connecting from it signs a user in with X-Auth-Email alone; a client connecting from
another address is refused even when it sends X-Real-IP, X-Forwarded-For and
X-Forwarded-By naming the proxy, because nginx replaces them with the address of the
connection it accepted.
"""

from __future__ import annotations

import re

import httpx
import pytest

from tests.e2e.conftest import PROXY_ADDRESS, STRANGER_ADDRESS
from tests.e2e.stack import DOMAIN, HOSTNAME, Stack

pytestmark = pytest.mark.e2e

PROXY = PROXY_ADDRESS
STRANGER = STRANGER_ADDRESS


@pytest.fixture(scope="module")
def stack(options_stack: Stack) -> Stack:
    """The session's stack whose PROXY_AUTH_WHITELIST names PROXY alone."""
    assert options_stack.settings["PROXY_AUTH_WHITELIST"] == f"{PROXY}/32"
    return options_stack


def client(stack: Stack, source: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=source, verify=False)
    return httpx.Client(
        transport=transport, base_url=f"https://{stack.address}", headers={"Host": HOSTNAME}
    )


def test_the_whitelisted_peer_signs_a_user_in_by_header(stack: Stack) -> None:
    # The first administrator: not flagged to change the password (a user `roost user`
    # makes would be sent to /sso/pw_change first).
    pat = f"admin@{DOMAIN}"
    with client(stack, PROXY) as browser:
        answer = browser.get("/sso/login?url=/admin/account", headers={"X-Auth-Email": pat})
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == "/admin/account"
        page = browser.get("/admin/account")
        assert page.status_code == 200
        assert pat in page.text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        out = browser.post("/sso/logout", data={"csrf_token": token.group(1)})
        assert out.status_code == 303
        assert out.headers["location"] == "https://sso.example.test/logout"
    assert f"Login succeeded by proxy: {pat} from {PROXY} through {PROXY}." in stack.log_text()


def test_a_stranger_cannot_claim_to_be_the_proxy(stack: Stack) -> None:
    victim = stack.add_user("victim", "victim-password-1")
    forged = {
        "X-Auth-Email": victim,
        "X-Real-IP": PROXY,
        "X-Forwarded-For": PROXY,
        "X-Forwarded-By": PROXY,
        "X-Real-Port": "443",
    }
    with client(stack, STRANGER) as browser:
        answer = browser.get("/sso/login", headers=forged)
        assert answer.status_code == 403
        assert f"{STRANGER} is not on PROXY_AUTH_WHITELIST" in answer.text
        page = browser.get("/admin/account")
        assert page.status_code == 303  # not signed in: sent to the sign-in form
    assert (
        f"Login failed by proxy - not on whitelist: from {STRANGER} through {STRANGER}."
        in stack.log_text()
    )
