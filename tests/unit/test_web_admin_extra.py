"""Global administrators, the announcement and the client setup page, against a real gate,
Redis and store; the announcement goes to a real SMTP listener (aiosmtpd) standing where
the stack's Postfix listens (INTERNAL:10025), so what the web app sends is what Postfix
would get. Rights are tested with crafted requests: a manager or a user gets a 403 and
nothing changes. (The announcement through the real Postfix to IMAP:
tests/e2e/test_web_announcement.py.)
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import html
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from roost.gate.control import request_reload
from roost.layout import POSTFIX_FRONT_PORT
from roost.store.entities.names import ManageError
from roost.store.models import User
from roost.web.admin.admins import remaining_admins
from roost.web.admin.announcement import check_body, check_subject
from roost.web.autoconfig import client_servers
from tests.unit.test_gate_support import DOMAIN, GateHarness, add_user, flush_limits, running_gate
from tests.unit.test_web_admin import _manage, browse
from tests.unit.web_harness import PASSWORD, csrf_of, post_form, user_row

ADMIN = "/admin"
BOSS = f"boss@{DOMAIN}"
BOSS2 = f"boss2@{DOMAIN}"
MGR = f"mgr@{DOMAIN}"
PLAIN = f"plain@{DOMAIN}"
REFUSED = f"refused@{DOMAIN}"


@dataclass
class Inbox:
    """What the SMTP listener received, and which recipients it refuses."""

    messages: list[tuple[str, str, list[str], bytes]] = field(default_factory=list)
    sessions: int = 0
    refuse: set[str] = field(default_factory=set)
    #: While set, DATA is not answered (a slow Postfix).
    hold: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        with self.lock:
            self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.2.1 Mailbox disabled"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        while self.hold.is_set():
            await asyncio.sleep(0.01)
        with self.lock:
            self.messages.append(
                (session.peer[0], envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
            )
        return "250 OK queued"

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()
            self.sessions = 0


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateHarness]:
    with running_gate(tmp_path_factory.mktemp("extra"), "127.0.28.60") as harness:
        store = harness.store
        add_user(store, BOSS, PASSWORD, global_admin=True)
        add_user(store, BOSS2, PASSWORD, global_admin=True)
        add_user(store, MGR, PASSWORD)
        add_user(store, PLAIN, PASSWORD)
        add_user(store, REFUSED, PASSWORD)
        _manage(store, MGR, DOMAIN)
        request_reload(harness.layout)
        yield harness


@pytest.fixture(scope="module")
def inbox(gate: GateHarness) -> Iterator[Inbox]:
    handler = Inbox()
    controller = Controller(handler, hostname=gate.layout.internal_address, port=POSTFIX_FRONT_PORT)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


@pytest.fixture(autouse=True)
def fresh(gate: GateHarness, inbox: Inbox) -> None:
    flush_limits(gate)
    inbox.clear()
    inbox.refuse.clear()


def admins_in_store(gate: GateHarness) -> set[str]:
    with gate.store.session() as session:
        return set(session.scalars(select(User.email).where(User.global_admin.is_(True))))


def enabled_in_store(gate: GateHarness) -> set[str]:
    with gate.store.session() as session:
        return set(session.scalars(select(User.email).where(User.enabled.is_(True))))


# -- rights ---------------------------------------------------------------------------------


@pytest.mark.parametrize("who", [MGR, PLAIN])
def test_managers_and_users_get_403_and_change_nothing(
    gate: GateHarness, inbox: Inbox, who: str
) -> None:
    before = admins_in_store(gate)

    async def go(client: httpx.AsyncClient) -> list[int]:
        token = csrf_of(await client.get(f"{ADMIN}/account"))
        codes = [
            (await client.get(f"{ADMIN}/{path}")).status_code
            for path in ("admin/list", "admin/create", f"admin/delete/{BOSS2}", "announcement")
        ]
        posts = {
            "admin/create": {"email": who},
            f"admin/delete/{BOSS2}": {},
            "announcement": {"subject": "pwned", "body": "pwned"},
        }
        for path, data in posts.items():
            response = await client.post(f"{ADMIN}/{path}", data={**data, "csrf_token": token})
            codes.append(response.status_code)
        return codes

    assert set(browse(gate, who, go)) == {403}
    assert admins_in_store(gate) == before
    assert inbox.messages == []


def test_signed_out_gets_the_sign_in_page_for_every_new_page(gate: GateHarness) -> None:
    async def go(client: httpx.AsyncClient) -> list[httpx.Response]:
        paths = ("admin/list", "admin/create", "announcement", "client")
        return [await client.get(f"{ADMIN}/{p}") for p in paths]

    for response in browse(gate, None, go):
        assert response.status_code == 303
        assert response.headers["location"].startswith("/sso/login")


# -- global administrators ----------------------------------------------------------------------


def test_admin_lists_grants_and_revokes_global_administration(gate: GateHarness) -> None:
    async def go(client: httpx.AsyncClient) -> dict[str, Any]:
        out: dict[str, Any] = {"list": await client.get(f"{ADMIN}/admin/list")}
        out["unknown"] = await post_form(
            client, f"{ADMIN}/admin/create", f"{ADMIN}/admin/create", {"email": "nobody@x.test"}
        )
        out["grant"] = await post_form(
            client, f"{ADMIN}/admin/create", f"{ADMIN}/admin/create", {"email": PLAIN.upper()}
        )
        out["granted_list"] = await client.get(f"{ADMIN}/admin/list")
        out["confirm"] = await client.get(f"{ADMIN}/admin/delete/{PLAIN}")
        out["revoke"] = await post_form(
            client, f"{ADMIN}/admin/delete/{PLAIN}", f"{ADMIN}/admin/delete/{PLAIN}", {}
        )
        out["after"] = await client.get(f"{ADMIN}/admin/list")
        return out

    out = browse(gate, BOSS, go)
    assert out["list"].status_code == 200
    assert BOSS in out["list"].text and BOSS2 in out["list"].text
    assert PLAIN not in out["list"].text
    assert out["unknown"].status_code == 400 and "no user" in out["unknown"].text
    assert out["grant"].status_code == 303
    assert f"{PLAIN} is now a global administrator." in out["granted_list"].text
    assert out["confirm"].status_code == 200 and "Revoke global administration" in (
        out["confirm"].text
    )
    assert out["revoke"].status_code == 303
    assert f"{PLAIN} is no longer a global administrator." in out["after"].text
    row = user_row(gate, PLAIN)
    assert row is not None and not row.global_admin


def test_granted_admin_can_act_at_once_and_loses_it_at_once(gate: GateHarness) -> None:
    async def as_plain(client: httpx.AsyncClient) -> int:
        return (await client.get(f"{ADMIN}/admin/list")).status_code

    async def grant(client: httpx.AsyncClient) -> int:
        page = f"{ADMIN}/admin/create"
        return (await post_form(client, page, page, {"email": PLAIN})).status_code

    async def revoke(client: httpx.AsyncClient) -> int:
        page = f"{ADMIN}/admin/delete/{PLAIN}"
        return (await post_form(client, page, page, {})).status_code

    assert browse(gate, PLAIN, as_plain) == 403
    assert browse(gate, BOSS, grant) == 303
    assert browse(gate, PLAIN, as_plain) == 200
    assert browse(gate, BOSS, revoke) == 303
    assert browse(gate, PLAIN, as_plain) == 403


def test_nobody_revokes_themself(gate: GateHarness) -> None:
    async def go(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        listing = await client.get(f"{ADMIN}/admin/list")
        token = csrf_of(listing)
        refused = await client.post(f"{ADMIN}/admin/delete/{BOSS}", data={"csrf_token": token})
        return listing, refused

    listing, refused = browse(gate, BOSS, go)
    # No revoke link for yourself, and a crafted POST is refused.
    assert f'href="{ADMIN}/admin/delete/{BOSS}"' not in listing.text
    assert refused.status_code == 409 and "your own" in refused.text
    row = user_row(gate, BOSS)
    assert row is not None and row.global_admin


def test_the_last_enabled_administrator_is_counted_in_the_transaction(gate: GateHarness) -> None:
    """Self-revocation being refused, the signed-in administrator always remains; the count
    is what stops two administrators revoking each other at once (both counts run inside
    their own write transaction, and SQLite serialises them)."""
    with gate.store.session() as session:
        assert remaining_admins(session, BOSS) == 1  # BOSS2
        session.get(User, BOSS2).enabled = False  # type: ignore[union-attr]
        session.flush()
        assert remaining_admins(session, BOSS) == 0
        session.rollback()


def test_revoking_a_non_admin_or_unknown_is_refused(gate: GateHarness) -> None:
    async def go(client: httpx.AsyncClient) -> list[int]:
        token = csrf_of(await client.get(f"{ADMIN}/admin/list"))
        codes = []
        for who in (MGR, "ghost@example.test"):
            r = await client.post(f"{ADMIN}/admin/delete/{who}", data={"csrf_token": token})
            codes.append(r.status_code)
        return codes

    assert browse(gate, BOSS, go) == [400, 404]


def test_admin_pages_need_csrf(gate: GateHarness, inbox: Inbox) -> None:
    async def go(client: httpx.AsyncClient) -> list[int]:
        return [
            (await client.post(f"{ADMIN}/admin/create", data={"email": PLAIN})).status_code,
            (await client.post(f"{ADMIN}/admin/delete/{BOSS2}")).status_code,
            (
                await client.post(f"{ADMIN}/announcement", data={"subject": "s", "body": "b"})
            ).status_code,
        ]

    assert set(browse(gate, BOSS, go)) == {403}
    assert BOSS2 in admins_in_store(gate) and PLAIN not in admins_in_store(gate)
    assert inbox.messages == []


# -- the announcement -----------------------------------------------------------------------------


async def finished(client: httpx.AsyncClient) -> str:
    """The announcement page once sending has finished (it refreshes itself meanwhile)."""
    deadline = time.monotonic() + 20
    while True:
        after = await client.get(f"{ADMIN}/announcement")
        if "so far" not in after.text or time.monotonic() > deadline:
            return html.unescape(after.text)
        assert '<meta http-equiv="refresh"' in after.text
        await asyncio.sleep(0.05)


async def announce(client: httpx.AsyncClient, data: dict[str, str]) -> tuple[int, str]:
    """Send an announcement: the POST's status and the page once sending has finished."""
    page = f"{ADMIN}/announcement"
    sent = await post_form(client, page, page, data)
    return sent.status_code, await finished(client)


def test_announcement_one_message_per_enabled_user_from_loopback(
    gate: GateHarness, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("roost.web.admin.announcement.BATCH", 3)

    subject = "Maintenance tonight — 22:00"
    data = {"subject": subject, "body": "Hello,\r\nback at 23:00.\r\n"}
    status, after = browse(gate, BOSS, lambda client: announce(client, data))
    assert status == 303
    enabled = enabled_in_store(gate)
    assert f"off@{DOMAIN}" not in enabled
    n = len(enabled)
    assert f"Announcement “{subject}” sent to {n} of {n} enabled users." in after
    assert sorted(r for _, _, rcpts, _ in inbox.messages for r in rcpts) == sorted(enabled)
    for peer, sender, rcpts, content in inbox.messages:
        assert peer == "127.0.0.1"  # the source Postfix trusts, not the stack's own address
        assert sender == f"postmaster@{DOMAIN}"
        assert len(rcpts) == 1
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert message["To"] == rcpts[0]
        assert message["From"] == f"postmaster@{DOMAIN}"
        assert message["Subject"] == "Maintenance tonight — 22:00"
        assert message.get_content().replace("\r\n", "\n") == "Hello,\nback at 23:00.\n"
        assert message["Message-ID"].endswith(f"@{gate.settings.hostname}>")
    # In batches: one SMTP session per BATCH messages.
    assert inbox.sessions == -(-len(enabled) // 3) > 1


def test_announcement_counts_and_names_refused_recipients(gate: GateHarness, inbox: Inbox) -> None:
    inbox.refuse.add(REFUSED)

    _, after = browse(gate, BOSS, lambda client: announce(client, {"subject": "s", "body": "b"}))
    total = len(enabled_in_store(gate))
    assert f"Announcement “s” sent to {total - 1} of {total} enabled users. 1 failed." in after
    assert f'<span class="mono">{REFUSED}</span>: 550 5.2.1 Mailbox disabled' in after
    assert len(inbox.messages) == total - 1


@pytest.mark.parametrize(
    "subject",
    [
        "Hello\r\nBcc: victim@elsewhere.test",
        "Hello\nBcc: victim@elsewhere.test",
        "Hello\rX: y",
        "tab\there",
        "nul\x00",
        "line\u2028separator",
        "next\x85line",
        "   ",
        "x" * 201,
    ],
)
def test_announcement_subject_must_be_one_clean_line(
    gate: GateHarness, inbox: Inbox, subject: str
) -> None:
    with pytest.raises(ManageError):
        check_subject(subject)

    async def go(client: httpx.AsyncClient) -> httpx.Response:
        page = f"{ADMIN}/announcement"
        return await post_form(client, page, page, {"subject": subject, "body": "b"})

    refused = browse(gate, BOSS, go)
    assert refused.status_code == 400
    assert 'class="error"' in refused.text
    assert inbox.messages == []


def test_announcement_body_checks() -> None:
    assert check_body("a\r\nb\rc") == "a\nb\nc\n"
    for bad in ("", " \n ", "bell\x07", "esc\x1b[31m", "x" * 100_001):
        with pytest.raises(ManageError):
            check_body(bad)


def test_announcement_without_postfix_reports_every_failure(
    gate: GateHarness, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("roost.mailout.POSTFIX_FRONT_PORT", 1)

    _, after = browse(gate, BOSS, lambda client: announce(client, {"subject": "s", "body": "b"}))
    total = len(enabled_in_store(gate))
    assert f"Announcement “s” sent to 0 of {total} enabled users. {total} failed." in after
    assert "cannot reach Postfix" in after


def test_one_announcement_at_a_time(
    gate: GateHarness, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one is being sent, a second is refused (a double click sends nothing twice)."""
    inbox.hold.set()

    async def go(client: httpx.AsyncClient) -> tuple[int, str, int, str]:
        page = f"{ADMIN}/announcement"
        first = await post_form(client, page, page, {"subject": "first", "body": "b"})
        running = await client.get(page)
        second = await client.post(
            page, data={"subject": "second", "body": "b", "csrf_token": csrf_of(running)}
        )
        inbox.hold.clear()
        await finished(client)
        _, done = await announce(client, {"subject": "third", "body": "b"})
        return first.status_code, html.unescape(running.text), second.status_code, done

    try:
        first, running, second, done = browse(gate, BOSS, go)
    finally:
        inbox.hold.clear()
    assert first == 303
    assert "Sending “first”:" in running and "so far" in running
    assert second == 409
    subjects = [
        email.message_from_bytes(content, policy=email.policy.default)["Subject"]
        for *_, content in inbox.messages
    ]
    assert "second" not in subjects
    # The third, sent once the first had finished, went out.
    total = len(enabled_in_store(gate))
    assert subjects.count("first") == total
    assert subjects.count("third") == total
    assert f"“third” sent to {total} of {total}" in done


# -- client setup ------------------------------------------------------------------------------


def test_client_page_for_every_signed_in_user(gate: GateHarness) -> None:
    async def go(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get(f"{ADMIN}/client")

    page = browse(gate, PLAIN, go)
    assert page.status_code == 200
    text = page.text
    assert gate.settings.hostname in text and PLAIN in text
    servers = client_servers(gate.settings)
    assert servers
    for server in servers:
        assert f"<td>{server.port}</td>" in text
    assert f"/apple.mobileconfig?emailaddress={PLAIN}" in text
    assert f"/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress={PLAIN}" in text
    assert f'href="{ADMIN}/client"' in text  # in the navigation for everyone


def test_client_page_follows_ports(tmp_path_factory: pytest.TempPathFactory) -> None:
    """PORTS without 993/465: the page offers neither (the same list autoconfig uses)."""
    from roost.web.admin.client_setup import SECURITY

    with running_gate(
        tmp_path_factory.mktemp("ports"), "127.0.28.61", PORTS=(25, 80, 443, 143, 587)
    ) as harness:
        add_user(harness.store, PLAIN, PASSWORD)
        request_reload(harness.layout)
        page = browse(harness, PLAIN, lambda c: c.get(f"{ADMIN}/client"))
    assert page.status_code == 200
    assert "<td>993</td>" not in page.text and "<td>465</td>" not in page.text
    assert "<td>143</td>" in page.text and "<td>587</td>" in page.text
    assert SECURITY["STARTTLS"] in page.text


def test_client_page_says_when_only_app_tokens_open_mail(gate: GateHarness) -> None:
    """The gate's rule: AUTH_REQUIRE_TOKENS, or two-factor login without
    AUTH_TOTP_MAIL_PASSWORDS, leaves mail programs to app tokens."""
    from dataclasses import replace

    from roost.web.admin.client_setup import tokens_only

    settings = gate.settings
    assert not tokens_only(settings, False)
    assert tokens_only(settings, True)
    assert not tokens_only(replace(settings, AUTH_TOTP_MAIL_PASSWORDS=True), True)
    assert tokens_only(replace(settings, AUTH_REQUIRE_TOKENS=True), False)
    page = browse(gate, PLAIN, lambda c: c.get(f"{ADMIN}/client"))
    assert "your password, or an app token" in page.text


def test_client_page_names_the_calendar_server_when_webdav_is_on(
    gate: GateHarness, tmp_path_factory: pytest.TempPathFactory
) -> None:
    assert (
        "Calendars and contacts" not in browse(gate, PLAIN, lambda c: c.get(f"{ADMIN}/client")).text
    )
    with running_gate(
        tmp_path_factory.mktemp("webdav"), "127.0.50.61", WEBDAV="radicale"
    ) as harness:
        add_user(harness.store, PLAIN, PASSWORD)
        request_reload(harness.layout)
        page = browse(harness, PLAIN, lambda c: c.get(f"{ADMIN}/client"))
    assert page.status_code == 200
    server = f"https://{harness.settings.hostname}/webdav/"
    assert "Calendars and contacts" in page.text
    assert f'<dd class="mono">{server}</dd>' in page.text
    assert f'<dd class="mono">{server}{PLAIN}/</dd>' in page.text
