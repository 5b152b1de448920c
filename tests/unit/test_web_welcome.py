"""The welcome message (WELCOME, WELCOME_SUBJECT, WELCOME_BODY): the message itself, and
which ways of creating a user send it, against a real gate, Redis and store. A real SMTP
listener (aiosmtpd) stands where the stack's Postfix listens (INTERNAL:10025) and looks the
recipient up in the store when it arrives, so the test sees that the user was committed
before the message was sent. (Through the real Postfix to IMAP: tests/e2e/test_welcome.py.)
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import update

from roost import mailout
from roost.gate.control import request_reload
from roost.layout import POSTFIX_FRONT_PORT
from roost.settings import SettingsError, load_settings
from roost.store.models import Domain, User
from roost.web.app import create_app
from roost.web.welcome import send_welcome_now, welcome_message
from tests.unit.test_gate_support import (
    DOMAIN,
    GateHarness,
    add_user,
    flush_limits,
    make_settings,
    running_gate,
    settings_with,
)
from tests.unit.test_web_proxy_auth import behind_nginx
from tests.unit.web_harness import BASE, PASSWORD, csrf_of, post_form, user_row

ADDRESS = "127.0.48.250"
BOSS = f"boss@{DOMAIN}"
OPEN = "open.test"  # takes sign-ups
SUBJECT = "Welcome to Example — bienvenue"
BODY = "Hello,\n\nyour mailbox is ready.\n-- the postmaster"
ON = {"WELCOME": True, "WELCOME_SUBJECT": SUBJECT, "WELCOME_BODY": BODY}
API_TOKEN = "welcome-test-token-0123456789abcdef"


@dataclass
class Received:
    peer: str
    sender: str
    recipients: list[str]
    content: bytes
    #: Whether the recipient was in the store when Postfix was given the message.
    stored: bool


@dataclass
class Inbox:
    """What the SMTP listener received; ``refuse``: recipients it answers 550."""

    gate: GateHarness
    messages: list[Received] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.2.1 Mailbox disabled"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.gate.store.session() as db:
            stored = all(db.get(User, r) is not None for r in envelope.rcpt_tos)
        self.messages.append(
            Received(
                session.peer[0],
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.content,
                stored,
            )
        )
        return "250 OK queued"


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateHarness]:
    with running_gate(tmp_path_factory.mktemp("welcome"), ADDRESS) as harness:
        add_user(harness.store, BOSS, PASSWORD, global_admin=True)
        with harness.store.session() as db:
            db.add(Domain(name=OPEN))
        with harness.store.session() as db:
            db.execute(update(Domain).where(Domain.name == OPEN).values(signup_enabled=True))
        request_reload(harness.layout)
        yield harness


@pytest.fixture(scope="module")
def inbox(gate: GateHarness) -> Iterator[Inbox]:
    handler = Inbox(gate)
    controller = Controller(handler, hostname=gate.layout.internal_address, port=POSTFIX_FRONT_PORT)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


@pytest.fixture(autouse=True)
def fresh(gate: GateHarness, inbox: Inbox) -> None:
    flush_limits(gate)
    inbox.messages.clear()
    inbox.refuse.clear()


Scenario = Callable[[httpx.AsyncClient], Awaitable[Any]]


def browse(
    gate: GateHarness,
    who: str | None,
    scenario: Scenario,
    peer: str | None = None,
    **settings: Any,
) -> Any:
    """Run ``scenario`` against an app with ``settings`` (signed in as ``who``, if any);
    ``peer``: reached through nginx from that address."""

    async def go() -> Any:
        app = create_app(settings_with(gate.settings, **settings))
        if peer is None:
            transport = httpx.ASGITransport(app=app, client=("192.0.2.48", 5555))
        else:
            transport = httpx.ASGITransport(app=behind_nginx(app, peer))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            try:
                if who is not None:
                    page = await client.get("/sso/login")
                    data = {"email": who, "password": PASSWORD, "csrf_token": csrf_of(page)}
                    assert (await client.post("/sso/login", data=data)).status_code == 303
                return await scenario(client)
            finally:
                await app.state.sessions.close()

    return asyncio.run(go())


def admin_creates(localpart: str) -> Scenario:
    create = f"/admin/user/create/{DOMAIN}"
    data = {"localpart": localpart, "password": PASSWORD, "password2": PASSWORD, "enabled": "on"}

    async def go(client: httpx.AsyncClient) -> httpx.Response:
        return await post_form(client, create, create, data)

    return go


def parsed(received: Received) -> email.message.EmailMessage:
    message = email.message_from_bytes(received.content, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def assert_welcome(inbox: Inbox, to: str) -> None:
    assert len(inbox.messages) == 1, inbox.messages
    received = inbox.messages[0]
    assert received.peer == "127.0.0.1"  # the source Postfix trusts
    assert received.sender == f"postmaster@{DOMAIN}"
    assert received.recipients == [to]
    assert received.stored  # sent after the commit
    message = parsed(received)
    assert message["From"] == f"postmaster@{DOMAIN}"
    assert message["To"] == to
    assert message["Subject"] == SUBJECT
    assert message.get_content().replace("\r\n", "\n") == BODY + "\n"


# -- the message ----------------------------------------------------------------------------


def test_the_message_headers_and_body(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ADDRESS, DOMAIN="bücher.test", POSTMASTER="hostmaster", **ON)
    raw = welcome_message(settings, "anna@xn--bcher-kva.test")
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    # The domain in its ASCII form, as Mailu's sender and as the address is stored.
    assert message["From"] == "hostmaster@xn--bcher-kva.test"
    assert message["To"] == "anna@xn--bcher-kva.test"
    assert message["Subject"] == SUBJECT
    assert raw.isascii() and b"=?utf-8?" in raw  # the subject encoded (RFC 2047)
    assert message["Date"] and message["Message-ID"].endswith(f"@{settings.hostname}>")
    assert message.get_content_type() == "text/plain"
    assert message.get_content().replace("\r\n", "\n") == BODY + "\n"
    assert b"\n" not in raw.replace(b"\r\n", b"")  # every line ends in CRLF


def test_mailu_defaults_and_checked_settings(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ADDRESS)
    assert settings.WELCOME is False
    assert settings.WELCOME_SUBJECT == "Dummy welcome topic"
    assert settings.WELCOME_BODY == "Dummy welcome body"
    env = {"ROOT": str(tmp_path), "SECRET_KEY": "x" * 32}
    loaded = load_settings(
        environ={**env, "WELCOME": "yes", "WELCOME_SUBJECT": " Hi ", "WELCOME_BODY": "a\r\nb "}
    )
    assert (loaded.WELCOME, loaded.WELCOME_SUBJECT, loaded.WELCOME_BODY) == (True, "Hi", "a\nb")
    with pytest.raises(SettingsError, match="WELCOME_SUBJECT"):
        load_settings(environ={**env, "WELCOME_SUBJECT": "Hi\nBcc: victim@elsewhere.test"})
    with pytest.raises(SettingsError, match="WELCOME_BODY"):
        load_settings(environ={**env, "WELCOME_BODY": "bell \x07"})


# -- who sends it ---------------------------------------------------------------------------


def test_admin_page_creation_sends_it(gate: GateHarness, inbox: Inbox) -> None:
    made = browse(gate, BOSS, admin_creates("new1"), **ON)
    assert made.status_code == 303, made.text
    assert_welcome(inbox, f"new1@{DOMAIN}")


def test_nothing_sent_while_welcome_is_false(gate: GateHarness, inbox: Inbox) -> None:
    made = browse(gate, BOSS, admin_creates("new2"), WELCOME=False)
    assert made.status_code == 303, made.text
    assert user_row(gate, f"new2@{DOMAIN}") is not None
    assert inbox.messages == []


def test_a_refused_creation_sends_nothing(gate: GateHarness, inbox: Inbox) -> None:
    assert browse(gate, BOSS, admin_creates("dup"), WELCOME=False).status_code == 303
    again = browse(gate, BOSS, admin_creates("dup"), **ON)
    assert again.status_code == 400 and "already" in again.text
    assert inbox.messages == []


def test_sign_up_sends_it(gate: GateHarness, inbox: Inbox) -> None:
    form = f"/admin/user/signup/{OPEN}"
    data = {"localpart": "joiner", "password": PASSWORD, "password2": PASSWORD}

    async def go(client: httpx.AsyncClient) -> httpx.Response:
        return await post_form(client, form, form, data)

    answer = browse(gate, None, go, **ON)
    assert answer.status_code == 303, answer.text
    assert_welcome(inbox, f"joiner@{OPEN}")


def test_proxy_auth_creation_sends_it(gate: GateHarness, inbox: Inbox) -> None:
    async def go(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get("/sso/login", headers={"X-Auth-Email": f"proxied@{DOMAIN}"})

    proxy = {"PROXY_AUTH_WHITELIST": ("203.0.113.0/24",), "PROXY_AUTH_CREATE": True}
    answer = browse(gate, None, go, peer="203.0.113.7", **proxy, **ON)
    assert answer.status_code == 303, answer.text
    assert_welcome(inbox, f"proxied@{DOMAIN}")
    # Signing in again by header creates nobody, so welcomes nobody.
    inbox.messages.clear()
    again = browse(gate, None, go, peer="203.0.113.7", **proxy, **ON)
    assert again.status_code == 303 and inbox.messages == []


def test_the_api_sends_none_as_mailu(gate: GateHarness, inbox: Inbox) -> None:
    async def go(client: httpx.AsyncClient) -> httpx.Response:
        body = {"email": f"scripted@{DOMAIN}", "raw_password": PASSWORD}
        return await client.post("/api/v1/user", json=body, headers={"Authorization": API_TOKEN})

    answer = browse(gate, None, go, API=True, API_TOKEN=API_TOKEN, **ON)
    assert answer.status_code == 200, answer.text
    assert user_row(gate, f"scripted@{DOMAIN}") is not None
    assert inbox.messages == []


# -- failures cost only the message ---------------------------------------------------------


def test_a_refused_message_is_logged_and_the_user_made(
    gate: GateHarness, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    inbox.refuse.add(f"new3@{DOMAIN}")
    with caplog.at_level(logging.INFO, logger="roost.web"):
        made = browse(gate, BOSS, admin_creates("new3"), **ON)
    assert made.status_code == 303
    assert user_row(gate, f"new3@{DOMAIN}") is not None
    assert f"Welcome message to new3@{DOMAIN}: not sent: 550 5.2.1 Mailbox disabled" in (
        caplog.text
    )


def test_postfix_away_is_logged_and_the_user_made(
    gate: GateHarness, inbox: Inbox, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    monkeypatch.setattr(mailout, "POSTFIX_FRONT_PORT", 9)  # nothing listens there
    with caplog.at_level(logging.INFO, logger="roost.web"):
        made = browse(gate, BOSS, admin_creates("new4"), **ON)
    assert made.status_code == 303
    assert user_row(gate, f"new4@{DOMAIN}") is not None
    assert f"Welcome message to new4@{DOMAIN}: not sent: cannot reach Postfix" in caplog.text
    assert inbox.messages == []


def test_a_bug_while_sending_is_logged_not_raised(
    gate: GateHarness, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(mailout, "send_all", broken)
    with caplog.at_level(logging.INFO, logger="roost.web"):
        assert send_welcome_now(settings_with(gate.settings, **ON), f"x@{DOMAIN}") is False
    assert f"Welcome message to x@{DOMAIN}: not sent" in caplog.text and "boom" in caplog.text
