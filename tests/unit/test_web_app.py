"""The web foundation against a real gate, Redis and store: sessions, CSRF, sign-in,
redirects, the account page and its password change.

The application is driven in process (httpx's ASGI transport); the gate, its Redis and the
store are the real ones (tests/unit/test_gate_support.py), so a web sign-in is the gate's
decision with its rate limits and log lines, and sessions are real Redis keys.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from roost.gate.control import request_reload
from roost.web.app import create_app
from roost.web.redirects import safe_target
from roost.web.sessions import REDIS_DB
from tests.unit.test_gate_support import (
    DOMAIN,
    GateHarness,
    add_token,
    add_user,
    flush_limits,
    running_gate,
)
from tests.unit.web_harness import Browser, Scenario, csrf_of

JOE = f"joe@{DOMAIN}"
HOST = "mail.mailu.io"  # HOSTNAMES[0] by default
BASE = f"https://{HOST}"
TOKEN = "0123456789abcdef0123456789abcdef"
COOKIE = "__Host-session"


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateHarness]:
    with running_gate(tmp_path_factory.mktemp("web"), "127.0.21.50") as harness:
        add_token(harness.store, JOE, TOKEN)
        add_user(harness.store, f"pw@{DOMAIN}", "old-password-1")
        add_user(harness.store, f"forced@{DOMAIN}", "first-password", change_pw_next_login=True)
        add_user(harness.store, f"boss@{DOMAIN}", "boss-password", global_admin=True)
        add_user(harness.store, f"out@{DOMAIN}", "out-password")
        request_reload(harness.layout)
        yield harness


@pytest.fixture(autouse=True)
def fresh_limits(gate: GateHarness, caplog: pytest.LogCaptureFixture) -> None:
    flush_limits(gate)
    caplog.set_level(logging.INFO, logger="roost.gate")


def browse(gate: GateHarness, scenario: Scenario, ip: str = "198.51.100.7") -> Any:
    """Run ``scenario`` with a browser-like client (cookie jar, no redirects followed)."""
    return Browser(ip)(gate, None, scenario)


async def sign_in(
    client: httpx.AsyncClient, email: str, password: str, url: str = ""
) -> httpx.Response:
    page = await client.get("/sso/login")
    data = {"email": email, "password": password, "csrf_token": csrf_of(page), "url": url}
    return await client.post("/sso/login", data=data)


def session_keys(gate: GateHarness, db: int = REDIS_DB) -> list[bytes]:
    client = redis.Redis(unix_socket_path=str(gate.layout.redis_socket), db=db)
    try:
        return list(client.scan_iter("session:*"))
    finally:
        client.close()


def gate_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "roost.gate"]


# -- headers and cookies ---------------------------------------------------------------------


def test_pages_carry_the_security_headers_and_a_strict_cookie(gate: GateHarness) -> None:
    page = browse(gate, lambda c: c.get("/sso/login"))
    assert page.status_code == 200
    assert page.headers["x-frame-options"] == "SAMEORIGIN"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-permitted-cross-domain-policies"] == "none"
    assert page.headers["referrer-policy"] == "same-origin"
    assert "script-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    cookie = page.headers["set-cookie"]
    assert cookie.startswith(COOKIE + "=")
    for attribute in ("HttpOnly", "Secure", "SameSite=Lax", "Path=/"):
        assert attribute in cookie
    assert "Domain" not in cookie


def test_notls_cookie_is_not_secure_and_has_no_host_prefix(gate: GateHarness) -> None:
    from dataclasses import replace

    async def go() -> httpx.Response:
        app = create_app(replace(gate.settings, TLS_FLAVOR="notls"))
        transport = httpx.ASGITransport(app=app, client=("198.51.100.8", 1))
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{HOST}") as client:
            return await client.get("/sso/login")

    cookie = asyncio.run(go()).headers["set-cookie"]
    assert cookie.startswith("session=") and "Secure" not in cookie and "HttpOnly" in cookie


# -- CSRF ------------------------------------------------------------------------------------


def test_a_form_without_or_with_a_foreign_csrf_token_is_refused(
    gate: GateHarness, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(client: httpx.AsyncClient) -> list[int]:
        await client.get("/sso/login")
        good = {"email": JOE, "password": "joe-secret"}
        missing = await client.post("/sso/login", data=good)
        wrong = await client.post("/sso/login", data={**good, "csrf_token": "x" * 43})
        return [missing.status_code, wrong.status_code]

    assert browse(gate, scenario) == [403, 403]
    # Refused before the password was even asked about.
    assert not any("Login attempt" in line for line in gate_lines(caplog))


def test_a_token_from_another_session_does_not_pass(gate: GateHarness) -> None:
    async def other(client: httpx.AsyncClient) -> str:
        return csrf_of(await client.get("/sso/login"))

    foreign = browse(gate, other)

    async def scenario(client: httpx.AsyncClient) -> int:
        await client.get("/sso/login")
        data = {"email": JOE, "password": "joe-secret", "csrf_token": foreign}
        return (await client.post("/sso/login", data=data)).status_code

    assert browse(gate, scenario) == 403


# -- sign-in ---------------------------------------------------------------------------------


def test_sign_in_rotates_the_session_and_opens_the_account_page(gate: GateHarness) -> None:
    async def scenario(client: httpx.AsyncClient) -> tuple[Any, ...]:
        page = await client.get("/sso/login")
        before = client.cookies[COOKIE]
        data = {"email": JOE, "password": "joe-secret", "csrf_token": csrf_of(page)}
        answer = await client.post("/sso/login", data=data)
        after = client.cookies[COOKIE]
        account = await client.get("/admin/account")
        # The id from before the sign-in opens nothing now (session fixation).
        client.cookies.set(COOKIE, before, domain=HOST)
        stale = await client.get("/admin/account")
        return answer, before, after, account, stale

    answer, before, after, account, stale = browse(gate, scenario)
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/"
    assert before != after
    assert account.status_code == 200 and JOE in account.text and "Change password" in account.text
    assert stale.status_code == 303 and stale.headers["location"].startswith("/sso/login")


def test_a_wrong_password_is_the_gates_failure_with_its_fail2ban_line(
    gate: GateHarness, caplog: pytest.LogCaptureFixture
) -> None:
    answer = browse(gate, lambda c: sign_in(c, JOE, "not-it"), ip="198.51.100.9")
    assert answer.status_code == 401
    assert "Wrong e-mail or password." in answer.text
    lines = gate_lines(caplog)
    assert any(
        re.fullmatch(
            rf"Login attempt for: {re.escape(JOE)}/web/443 from: 198\.51\.100\.9/5555: "
            r"failed: badauth: [0-9a-f]{6}",
            line,
        )
        for line in lines
    ), lines


def test_x_real_ip_is_ignored_from_a_tcp_peer(
    gate: GateHarness, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        page = await client.get("/sso/login")
        data = {"email": JOE, "password": "nope", "csrf_token": csrf_of(page)}
        await client.post("/sso/login", data=data, headers={"X-Real-IP": "203.0.113.99"})

    browse(gate, scenario, ip="198.51.100.10")
    lines = " ".join(gate_lines(caplog))
    assert "from: 198.51.100.10/" in lines and "203.0.113.99" not in lines


def test_an_address_blocked_on_imap_is_blocked_on_the_web(gate: GateHarness) -> None:
    # Five wrong accounts over IMAP from 192.0.2.0/24 spend that network's budget ...
    for n in range(5):
        gate.auth(f"ghost{n}@{DOMAIN}", "guess", ip=f"192.0.2.{n + 1}")
    # ... so the right password from the same network is refused on the web too.
    answer = browse(gate, lambda c: sign_in(c, JOE, "joe-secret"), ip="192.0.2.77")
    assert answer.status_code == 429
    assert "Too many attempts" in answer.text


def test_an_app_token_does_not_open_the_web(gate: GateHarness) -> None:
    assert gate.auth(JOE, TOKEN)["Auth-Status"] == "OK"  # it does open IMAP
    answer = browse(gate, lambda c: sign_in(c, JOE, TOKEN), ip="198.51.100.11")
    assert answer.status_code == 401


# -- redirects -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/admin/account", "/admin/account"),
        ("/admin/x?y=1", "/admin/x?y=1"),
        (f"https://{HOST}/admin/account", "/admin/account"),
        (f"https://{HOST.upper()}:443/admin/", "/admin/"),
        ("https://evil.example/", None),
        ("//evil.example/x", None),
        ("/\\evil.example", None),
        ("\\\\evil.example", None),
        (f"https://{HOST}@evil.example/", None),
        (f"https://evil.example/{HOST}", None),
        ("javascript:alert(1)", None),
        ("/admin\n/x", None),
        (" /admin", None),
        (f"ftp://{HOST}/", None),
        (f"https://{HOST}:8443/", None),
        ("", None),
        ("relative/path", None),
    ],
)
def test_safe_target(url: str, expected: str | None) -> None:
    assert safe_target(url, (HOST, "other.example.test")) == expected


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("/admin/account", "/admin/account"),
        ("https://evil.example/phish", "/admin/"),
        ("//evil.example", "/admin/"),
    ],
)
def test_sign_in_redirects_only_to_this_site(gate: GateHarness, url: str, location: str) -> None:
    answer = browse(gate, lambda c: sign_in(c, JOE, "joe-secret", url=url), ip="198.51.100.12")
    assert answer.status_code == 303
    assert answer.headers["location"] == location


def test_a_protected_page_sends_to_sign_in_and_back(gate: GateHarness) -> None:
    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        first = await client.get("/admin/account")
        form = await client.get(first.headers["location"])
        data = {
            "email": JOE,
            "password": "joe-secret",
            "csrf_token": csrf_of(form),
            "url": re.search(r'name="url" value="([^"]*)"', form.text).group(1),  # type: ignore[union-attr]
        }
        return first, await client.post("/sso/login", data=data)

    first, answer = browse(gate, scenario, ip="198.51.100.13")
    assert first.status_code == 303
    assert first.headers["location"] == "/sso/login?url=/admin/account"
    assert answer.headers["location"] == "/admin/account"


# -- password changes ------------------------------------------------------------------------


def test_changing_the_password_ends_every_session(gate: GateHarness) -> None:
    email = f"pw@{DOMAIN}"

    async def elsewhere(client: httpx.AsyncClient) -> str:
        await sign_in(client, email, "old-password-1")
        return client.cookies[COOKIE]

    other_session = browse(gate, elsewhere, ip="198.51.100.14")

    async def scenario(client: httpx.AsyncClient) -> tuple[Any, ...]:
        await sign_in(client, email, "old-password-1")
        page = await client.get("/admin/account")
        token = csrf_of(page)
        wrong = await client.post(
            "/admin/account/password",
            data={
                "current": "not-the-password",
                "password": "new-password-2",
                "password2": "new-password-2",
                "csrf_token": token,
            },
        )
        short = await client.post(
            "/admin/account/password",
            data={
                "current": "old-password-1",
                "password": "short",
                "password2": "short",
                "csrf_token": token,
            },
        )
        done = await client.post(
            "/admin/account/password",
            data={
                "current": "old-password-1",
                "password": "new-password-2",
                "password2": "new-password-2",
                "csrf_token": token,
            },
        )
        after = await client.get("/admin/account")
        client.cookies.set(COOKIE, other_session, domain=HOST)
        other = await client.get("/admin/account")
        client.cookies.clear()
        old = await sign_in(client, email, "old-password-1")
        client.cookies.clear()
        new = await sign_in(client, email, "new-password-2")
        return wrong, short, done, after, other, old, new

    wrong, short, done, after, other, old, new = browse(gate, scenario, ip="198.51.100.15")
    assert wrong.status_code == 401 and "current password is wrong" in wrong.text
    assert short.status_code == 400 and "too short" in short.text
    assert done.status_code == 303 and done.headers["location"] == "/sso/login?msg=changed"
    assert "Max-Age=0" in done.headers["set-cookie"]
    assert after.status_code == 303  # this browser must sign in again
    assert other.status_code == 303  # and so must every other one
    assert old.status_code == 401
    assert new.status_code == 303


def test_a_forced_password_change_comes_before_anything_else(gate: GateHarness) -> None:
    email = f"forced@{DOMAIN}"

    async def scenario(client: httpx.AsyncClient) -> tuple[Any, ...]:
        answer = await sign_in(client, email, "first-password", url="/admin/account")
        blocked = await client.get("/admin/account")
        form = await client.get("/sso/pw_change")
        done = await client.post(
            "/sso/pw_change",
            data={
                "current": "first-password",
                "password": "chosen-password",
                "password2": "chosen-password",
                "csrf_token": csrf_of(form),
            },
        )
        page = await client.get("/admin/account")
        return answer, blocked, done, page

    answer, blocked, done, page = browse(gate, scenario, ip="198.51.100.16")
    assert answer.headers["location"] == "/sso/pw_change"
    assert blocked.headers["location"] == "/sso/pw_change"
    assert done.status_code == 303 and done.headers["location"] == "/admin/account"
    assert page.status_code == 200 and email in page.text


# -- sign-out and storage --------------------------------------------------------------------


def test_sign_out_ends_the_session_in_redis(gate: GateHarness) -> None:
    email = f"out@{DOMAIN}"

    async def scenario(client: httpx.AsyncClient) -> tuple[Any, ...]:
        await sign_in(client, email, "out-password")
        sid = client.cookies[COOKIE]
        keys_in = len(session_keys(gate))
        page = await client.get("/admin/account")
        answer = await client.post("/sso/logout", data={"csrf_token": csrf_of(page)})
        client.cookies.set(COOKIE, sid, domain=HOST)
        after = await client.get("/admin/account")
        return keys_in, answer, after

    keys_in, answer, after = browse(gate, scenario, ip="198.51.100.17")
    assert keys_in >= 1
    assert answer.status_code == 303 and "Max-Age=0" in answer.headers["set-cookie"]
    assert after.status_code == 303
    # Sessions live in db 3, never among the gate's rate limits in db 2.
    assert session_keys(gate, db=2) == []


def test_a_global_admin_sees_the_account_page(gate: GateHarness) -> None:
    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        await sign_in(client, f"boss@{DOMAIN}", "boss-password")
        return await client.get("/admin/account")

    page = browse(gate, scenario, ip="198.51.100.18")
    assert page.status_code == 200 and "Global administrator" in page.text
