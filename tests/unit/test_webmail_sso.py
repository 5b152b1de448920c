"""The webmail's single sign-on tokens: the pure rule (roost/core/webmailtoken.py), the web
application's two auth_request answers (roost/web/sso/webmail.py) and the gate's decision on
the webmail's listeners (roost/gate/webmail.py), against a real gate, Redis and store.

nginx, php-fpm, Roundcube and the daemons around them: tests/e2e/test_webmail.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from roost.core import webmailtoken
from roost.core.websession import password_fingerprint
from roost.gate.control import request_reload
from roost.store import work
from roost.store.entities import user as users
from roost.web.app import create_app
from roost.web.sessions import RedisSessionStore
from tests.unit.test_gate_support import (
    DOMAIN,
    GateHarness,
    add_user,
    flush_limits,
    running_gate,
    settings_with,
)
from tests.unit.test_web_2fa import enrol
from tests.unit.web_harness import BASE, PASSWORD, Browser, csrf_of

READER = f"reader@{DOMAIN}"
OTHER = f"other@{DOMAIN}"
TWO_STEP = f"twostep@{DOMAIN}"
FLAGGED = f"flagged@{DOMAIN}"
ROUNDCUBE = "127.0.47.71"  # where the gate is told the webmail's logins come from
SECRET = "s" * 32
BADAUTH = "Authentication credentials invalid"


# -- the rule ------------------------------------------------------------------------------


def session_json(user: str | None = READER, **changes: object) -> str:
    data: dict[str, object] = {
        "user": user,
        "created": 1000.0,
        "pw": password_fingerprint(SECRET, "hash-1"),
    }
    data.update(changes)
    return json.dumps(data)


def test_the_rule_accepts_only_the_sessions_current_token_for_its_own_account() -> None:
    token = webmailtoken.new_token()
    assert token.startswith(webmailtoken.TOKEN_PREFIX) and webmailtoken.looks_like_token(token)
    assert token != webmailtoken.new_token()
    record = webmailtoken.record(READER, webmailtoken.digest("the-session-id"))
    assert webmailtoken.session_of(record) == webmailtoken.digest("the-session-id")
    assert webmailtoken.session_of("{}") is None
    mark = password_fingerprint(SECRET, "hash-1")

    def why(**given: object) -> str | None:
        values: dict[str, object] = {
            "token": token,
            "email": READER,
            "raw_record": record,
            "raw_current": webmailtoken.digest(token).encode(),
            "raw_session": session_json(),
            "password_mark": mark,
            "lifetime": 3600,
            "now": 2000.0,
        }
        values.update(given)
        return webmailtoken.refusal(**values)  # type: ignore[arg-type]

    assert why() is None
    assert why(token="a-password") == "not a webmail token"
    assert why(token=token + "x") == "not a webmail token"
    assert why(raw_record=None) == "webmail token unknown, expired or revoked"
    assert why(raw_record="not json") == "webmail token unknown, expired or revoked"
    assert why(email=OTHER) == "webmail token of another account"
    assert why(raw_session=None) == "webmail token of an SSO session that has ended"
    # A session still waiting for its second factor has no user: not signed in.
    pending = session_json(user=None, pending=READER)
    assert why(raw_session=pending) == (
        "webmail token of an SSO session not signed in as this account"
    )
    newer = webmailtoken.digest(webmailtoken.new_token())
    assert why(raw_current=newer) == "webmail token replaced by a newer one"
    assert why(raw_current=None) == "webmail token replaced by a newer one"
    assert why(now=1000.0 + 3601) == (
        "webmail token of an SSO session past PERMANENT_SESSION_LIFETIME"
    )
    assert why(password_mark=password_fingerprint(SECRET, "hash-2")) == (
        "webmail token of an SSO session older than the account's password"
    )


# -- the web application and the gate -------------------------------------------------------


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateHarness]:
    root = tmp_path_factory.mktemp("webmail-sso")
    with running_gate(root, "127.0.47.70", WEBMAIL="roundcube") as harness:
        for email in (READER, OTHER, TWO_STEP):
            add_user(harness.store, email, PASSWORD)
        add_user(harness.store, FLAGGED, PASSWORD, change_pw_next_login=True)
        request_reload(harness.layout)
        enrol(harness, TWO_STEP)
        yield harness


@pytest.fixture(autouse=True)
def fresh_limits(gate: GateHarness, caplog: pytest.LogCaptureFixture) -> None:
    flush_limits(gate)
    caplog.set_level(logging.INFO, logger="roost.gate")


browse = Browser(client_ip="198.51.100.71")


async def ask(client: httpx.AsyncClient, path: str, uri: str = "/webmail/sso") -> httpx.Response:
    """nginx's auth_request: the browser's cookie and the original URI."""
    return await client.get(path, headers={"X-Original-URI": uri})


async def mint(client: httpx.AsyncClient) -> str:
    answer = await ask(client, "/sso/webmail/token")
    assert answer.status_code == 204, answer.text
    assert answer.headers["x-roost-webmail-user"] == READER
    token = answer.headers["x-roost-webmail-token"]
    assert answer.headers["x-roost-webmail-id"] == webmailtoken.digest(token)
    return token


def status(gate: GateHarness, user: str, secret: str, protocol: str, port: int) -> str:
    return gate.auth(user, secret, protocol, port, ip=ROUNDCUBE)["Auth-Status"]


def test_a_token_opens_the_webmail_listeners_only_while_it_is_the_sessions(
    gate: GateHarness, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        token = await mint(client)
        for protocol, port in (("imap", 10143), ("sieve", 14190), ("smtp", 10027)):
            assert status(gate, READER, token, protocol, port) == "OK"
        # Every other request of the webmail: the current token's digest, no token.
        guard = await ask(client, "/sso/webmail/auth", "/webmail/?_task=mail")
        assert guard.status_code == 204
        assert guard.headers["x-roost-webmail-id"] == webmailtoken.digest(token)
        assert "x-roost-webmail-token" not in guard.headers
        # Anywhere else, for another account, or a password there: refused.
        assert status(gate, READER, token, "imap", 993) == BADAUTH
        assert status(gate, READER, token, "smtp", 465) == BADAUTH
        assert status(gate, OTHER, token, "imap", 10143) == BADAUTH
        assert status(gate, READER, PASSWORD, "imap", 10143) == BADAUTH
        assert status(gate, READER, PASSWORD, "imap", 993) == "OK"
        # The next token replaces it, even when a request that began before it writes the
        # session back afterwards (as every signed-in request does).
        store = RedisSessionStore.for_layout(gate.layout)
        sid = next(value for name, value in client.cookies.items() if "session" in name)
        before = await store.load(sid)
        assert before is not None
        newer = await mint(client)
        assert await store.save(sid, before, 600, new=False)
        await store.close()
        assert status(gate, READER, token, "imap", 10143) == BADAUTH
        assert status(gate, READER, newer, "imap", 10143) == "OK"

    browse(gate, READER, scenario)
    logged = [r.getMessage() for r in caplog.records if r.name == "roost.gate"]
    assert any(
        f"{READER}/imap/10143 from: {ROUNDCUBE}/40000: success: webmail token" in m for m in logged
    )
    assert any(
        f"{READER}/imap/993 " in m and "(webmail token outside the webmail's listeners)" in m
        for m in logged
    )
    assert any(f"{OTHER}/imap/10143 " in m and "token of another account" in m for m in logged)
    assert any("webmail token unknown, expired or revoked" in m for m in logged)
    # The webmail's refusals are no "badauth" for fail2ban: the loopback address stays open.
    assert not any("/10143 " in m and "badauth" in m for m in logged)


def test_signing_out_revokes_the_token_and_the_webmails_key_signs_out(
    gate: GateHarness,
) -> None:
    async def scenario(client: httpx.AsyncClient) -> list[object]:
        token = await mint(client)
        key = (await ask(client, "/sso/webmail/auth")).headers["x-roost-logout"]
        # A wrong key only shows the page with the button.
        page = await client.get("/sso/logout", params={"key": "0" * 64})
        still = status(gate, READER, token, "imap", 10143)
        out = await client.get("/sso/logout", params={"key": key})
        return [page.status_code, still, out.status_code, out.headers.get("location")]

    page, still, out, location = browse(gate, READER, scenario)
    assert (page, still, out, location) == (200, "OK", 303, "/sso/login?msg=out")

    async def by_form(client: httpx.AsyncClient) -> tuple[str, int]:
        token = await mint(client)
        form = await client.get("/sso/logout")
        await client.post("/sso/logout", data={"csrf_token": csrf_of(form)})
        after = await ask(client, "/sso/webmail/auth")
        return token, after.status_code

    token, after = browse(gate, READER, by_form)
    assert after == 401
    assert status(gate, READER, token, "imap", 10143) == BADAUTH


def test_a_password_change_ends_the_token(gate: GateHarness) -> None:
    async def scenario(client: httpx.AsyncClient) -> str:
        return await mint(client)

    token = browse(gate, READER, scenario)
    assert status(gate, READER, token, "imap", 10143) == "OK"
    with work.change(gate.settings) as db:
        users.set_password(db, READER, PASSWORD)  # the same password, a new hash
    request_reload(gate.layout)
    assert status(gate, READER, token, "imap", 10143) == BADAUTH


def test_nobody_whole_is_sent_to_sign_in_and_gets_no_token(gate: GateHarness) -> None:
    async def scenario(client: httpx.AsyncClient) -> list[tuple[int, str]]:
        answers = [
            await ask(client, "/sso/webmail/auth", "/webmail/?_task=mail&_mbox=INBOX"),
            await ask(client, "/sso/webmail/token"),
            # A URI outside the webmail is never where the browser is sent back to.
            await ask(client, "/sso/webmail/auth", "https://evil.example/"),
        ]
        return [(a.status_code, a.headers.get("x-roost-signin", "")) for a in answers]

    assert browse(gate, None, scenario) == [
        (401, "/sso/login?url=/webmail/%3F_task%3Dmail%26_mbox%3DINBOX"),
        (401, "/sso/login?url=/webmail/sso"),
        (401, "/sso/login?url=/webmail/"),
    ]
    # The password of a two-factor account is only the first step.
    assert browse(gate, TWO_STEP, scenario)[1] == (401, "/sso/login?url=/webmail/sso")

    async def flagged(client: httpx.AsyncClient) -> tuple[int, str]:
        answer = await ask(client, "/sso/webmail/token")
        return answer.status_code, answer.headers.get("x-roost-signin", "")

    assert browse(gate, FLAGGED, flagged) == (401, "/sso/pw_change")


def test_without_the_webmail_there_is_no_such_route(gate: GateHarness) -> None:
    async def go() -> list[int]:
        app = create_app(settings_with(gate.settings, WEBMAIL="none"))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            try:
                return [
                    (await client.get(path)).status_code
                    for path in ("/sso/webmail/auth", "/sso/webmail/token")
                ]
            finally:
                await app.state.sessions.close()

    assert asyncio.run(go()) == [404, 404]
