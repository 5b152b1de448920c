"""The self-service pages (settings, app tokens, fetched accounts) against a real gate,
Redis and store: each form's change lands in the store, a refused value comes back with
its message and what was typed, CSRF is checked, nobody reaches another user's rows, and
a new token's secret is shown once and never logged.

Driven in process with httpx through tests/unit/web_harness.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
from collections.abc import Iterator

import httpx
import pytest

from roost.core.passwords import verify_token
from roost.gate.control import request_reload
from tests.unit.test_gate_support import (
    DOMAIN,
    GateHarness,
    add_user,
    flush_limits,
    running_gate,
)
from tests.unit.web_harness import (
    PASSWORD,
    Browser,
    csrf_of,
    existing_user,
    fetches_of,
    post_form,
    tokens_of,
)

ACCOUNT = "/admin/account"
ANN = f"ann@{DOMAIN}"
BOB = f"bob@{DOMAIN}"


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateHarness]:
    with running_gate(
        tmp_path_factory.mktemp("self"), "127.0.27.50", FETCHMAIL_ENABLED=True
    ) as harness:
        add_user(harness.store, ANN, PASSWORD)
        add_user(harness.store, BOB, PASSWORD)
        request_reload(harness.layout)
        yield harness


@pytest.fixture(autouse=True)
def fresh_limits(gate: GateHarness) -> None:
    flush_limits(gate)


browse = Browser(client_ip="198.51.100.27")


# -- access --------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["/settings", "/tokens", "/fetches", "/fetches/new"])
def test_the_pages_need_a_signed_in_user(gate: GateHarness, page: str) -> None:
    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get(ACCOUNT + page)

    response = browse(gate, None, scenario)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/sso/login?url=")


def test_the_account_page_links_the_self_service_pages(gate: GateHarness) -> None:
    async def scenario(client: httpx.AsyncClient) -> str:
        return (await client.get(ACCOUNT)).text

    text = browse(gate, ANN, scenario)
    for page in ("/settings", "/tokens", "/fetches"):
        assert f'href="{ACCOUNT}{page}"' in text


def test_a_form_without_the_csrf_token_changes_nothing(gate: GateHarness) -> None:
    async def scenario(client: httpx.AsyncClient) -> list[int]:
        await client.get(ACCOUNT + "/settings")
        posts = [
            (ACCOUNT + "/settings/spam", {"spam_threshold": "3"}),
            (ACCOUNT + "/tokens", {"comment": "sneaky"}),
            (ACCOUNT + "/fetches/new", {"protocol": "imap", "host": "h", "username": "u"}),
        ]
        return [(await client.post(url, data=data)).status_code for url, data in posts]

    assert browse(gate, BOB, scenario) == [403, 403, 403]
    assert existing_user(gate, BOB).spam_threshold != 3
    assert tokens_of(gate, BOB) == []
    assert fetches_of(gate, BOB) == []


# -- settings ------------------------------------------------------------------------------


def test_forwarding_is_saved_and_shown_again(gate: GateHarness) -> None:
    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, str]:
        data = {
            "forward_enabled": "on",
            "forward_destination": "Away@Example.com, second@example.org",
        }
        saved = await post_form(client, ACCOUNT + "/settings", ACCOUNT + "/settings/forward", data)
        page = await client.get(saved.headers["location"])
        return saved, page.text

    saved, text = browse(gate, ANN, scenario)
    assert saved.status_code == 303
    user = existing_user(gate, ANN)
    assert user.forward_enabled is True
    assert user.forward_keep is False  # the box was not ticked
    assert user.forward_destination == ["away@example.com", "second@example.org"]
    assert "Forwarding saved." in text
    assert "away@example.com, second@example.org" in text


def test_a_refused_forward_comes_back_with_the_message_and_what_was_typed(
    gate: GateHarness,
) -> None:
    before = existing_user(gate, BOB)

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        data = {"forward_enabled": "on", "forward_destination": "not an address"}
        return await post_form(client, ACCOUNT + "/settings", ACCOUNT + "/settings/forward", data)

    response = browse(gate, BOB, scenario)
    assert response.status_code == 400
    assert 'class="error"' in response.text
    assert 'value="not an address"' in response.text
    after = existing_user(gate, BOB)
    assert after.forward_enabled == before.forward_enabled
    assert after.forward_destination == before.forward_destination


def test_the_auto_reply_is_saved_with_its_dates(gate: GateHarness) -> None:
    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        data = {
            "reply_enabled": "on",
            "reply_subject": "Away",
            "reply_body": "Back on Monday.\r\nAnn",
            "reply_startdate": "2026-01-02",
            "reply_enddate": "",
        }
        return await post_form(client, ACCOUNT + "/settings", ACCOUNT + "/settings/reply", data)

    assert browse(gate, ANN, scenario).status_code == 303
    user = existing_user(gate, ANN)
    assert user.reply_enabled is True
    assert user.reply_subject == "Away"
    assert user.reply_body == "Back on Monday.\nAnn"
    assert user.reply_startdate == dt.date(2026, 1, 2)
    assert user.reply_enddate == dt.date(2999, 12, 31)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"reply_enabled": "on", "reply_subject": "x", "reply_body": ""}, "needs a body"),
        (
            {
                "reply_body": "b",
                "reply_startdate": "2026-05-02",
                "reply_enddate": "2026-05-01",
            },
            "before it starts",
        ),
        ({"reply_body": "b", "reply_startdate": "tomorrow"}, "YYYY-MM-DD"),
    ],
)
def test_a_refused_auto_reply_changes_nothing(
    gate: GateHarness, data: dict[str, str], message: str
) -> None:
    before = existing_user(gate, BOB)

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await post_form(client, ACCOUNT + "/settings", ACCOUNT + "/settings/reply", data)

    response = browse(gate, BOB, scenario)
    assert response.status_code == 400
    assert message in response.text
    for typed in data.values():
        if typed:
            assert typed in response.text
    after = existing_user(gate, BOB)
    assert (after.reply_enabled, after.reply_body, after.reply_startdate) == (
        before.reply_enabled,
        before.reply_body,
        before.reply_startdate,
    )


def test_spam_settings_are_saved_and_the_threshold_is_checked(gate: GateHarness) -> None:
    async def scenario(client: httpx.AsyncClient) -> tuple[int, httpx.Response]:
        good = await post_form(
            client,
            ACCOUNT + "/settings",
            ACCOUNT + "/settings/spam",
            {"spam_enabled": "on", "spam_threshold": "42"},
        )
        bad = await post_form(
            client,
            ACCOUNT + "/settings",
            ACCOUNT + "/settings/spam",
            {"spam_threshold": "101"},
        )
        return good.status_code, bad

    good, bad = browse(gate, ANN, scenario)
    assert good == 303
    assert bad.status_code == 400
    assert "whole number from 0 to 100" in bad.text
    assert 'value="101"' in bad.text
    user = existing_user(gate, ANN)
    assert (user.spam_enabled, user.spam_mark_as_read, user.spam_threshold) == (True, False, 42)


def test_an_unknown_settings_form_is_not_found(gate: GateHarness) -> None:
    async def scenario(client: httpx.AsyncClient) -> int:
        page = await client.get(ACCOUNT + "/settings")
        data = {"csrf_token": csrf_of(page), "global_admin": "on"}
        return (await client.post(ACCOUNT + "/settings/account", data=data)).status_code

    assert browse(gate, BOB, scenario) == 404
    assert existing_user(gate, BOB).global_admin is False


# -- tokens --------------------------------------------------------------------------------


def test_a_token_is_shown_once_works_and_is_never_logged(
    gate: GateHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, str]:
        made = await post_form(
            client,
            ACCOUNT + "/tokens",
            ACCOUNT + "/tokens",
            {"comment": "phone", "networks": "203.0.113.7, 2001:db8::/32"},
        )
        again = await client.get(ACCOUNT + "/tokens")
        return made, again.text

    made, again = browse(gate, ANN, scenario)
    assert made.status_code == 200
    assert made.headers["cache-control"] == "no-store"
    match = re.search(r'<code id="token">([0-9a-f]{32})</code>', made.text)
    assert match, made.text
    raw = match.group(1)
    (row,) = [t for t in tokens_of(gate, ANN) if t.comment == "phone"]
    assert sorted(row.ip) == ["2001:db8::/32", "203.0.113.7/32"]
    assert verify_token(row.password, raw)[0]
    assert raw not in row.password
    assert raw not in again
    assert "203.0.113.7/32" in again
    assert "2001:db8::/32" in again
    assert any("token creation by " + ANN in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert raw not in record.getMessage()
        assert raw not in str(record.args)


def test_a_bad_network_is_refused_and_no_token_made(gate: GateHarness) -> None:
    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        data = {"comment": "laptop", "networks": "300.1.2.3"}
        return await post_form(client, ACCOUNT + "/tokens", ACCOUNT + "/tokens", data)

    response = browse(gate, BOB, scenario)
    assert response.status_code == 400
    assert "is not an IP address or network" in response.text
    assert 'value="laptop"' in response.text
    assert 'id="token"' not in response.text
    assert tokens_of(gate, BOB) == []


def test_a_token_is_deleted_by_its_owner_only(gate: GateHarness) -> None:
    async def make(client: httpx.AsyncClient) -> None:
        data = {"comment": "ann-delete-me"}
        made = await post_form(client, ACCOUNT + "/tokens", ACCOUNT + "/tokens", data)
        assert made.status_code == 200

    browse(gate, ANN, make)
    (row,) = [t for t in tokens_of(gate, ANN) if t.comment == "ann-delete-me"]

    async def crafted(client: httpx.AsyncClient) -> int:
        page = await client.get(ACCOUNT + "/tokens")
        url = f"{ACCOUNT}/tokens/{row.id}/delete"
        return (await client.post(url, data={"csrf_token": csrf_of(page)})).status_code

    assert browse(gate, BOB, crafted) == 404
    assert row.id in [t.id for t in tokens_of(gate, ANN)]

    async def own(client: httpx.AsyncClient) -> tuple[int, str]:
        page = await client.get(ACCOUNT + "/tokens")
        assert f"/tokens/{row.id}/delete" in page.text
        url = f"{ACCOUNT}/tokens/{row.id}/delete"
        done = await client.post(url, data={"csrf_token": csrf_of(page)})
        return done.status_code, (await client.get(done.headers["location"])).text

    status, text = browse(gate, ANN, own)
    assert status == 303
    assert "Deleted." in text
    assert row.id not in [t.id for t in tokens_of(gate, ANN)]


# -- fetched accounts ----------------------------------------------------------------------


def test_a_fetch_is_added_edited_and_its_password_never_shown(gate: GateHarness) -> None:
    async def add(client: httpx.AsyncClient) -> tuple[int, str]:
        data = {
            "protocol": "pop3",
            "host": "pop.example.net",
            "port": "",
            "tls": "on",
            "username": "ann.remote",
            "password": "remote-secret-1",
            "comment": "old mailbox",
        }
        done = await post_form(client, ACCOUNT + "/fetches/new", ACCOUNT + "/fetches/new", data)
        assert done.status_code == 303, done.text
        return done.status_code, (await client.get(done.headers["location"])).text

    _, listing = browse(gate, ANN, add)
    (row,) = fetches_of(gate, ANN)
    assert (row.protocol, row.host, row.port, row.tls, row.username, row.password) == (
        "pop3",
        "pop.example.net",
        995,
        True,
        "ann.remote",
        "remote-secret-1",
    )
    assert "ann.remote@pop.example.net:995" in listing
    assert "remote-secret-1" not in listing

    async def edit(client: httpx.AsyncClient) -> tuple[str, httpx.Response, httpx.Response]:
        url = f"{ACCOUNT}/fetches/{row.id}"
        form = await client.get(url)
        token = csrf_of(form)
        data = {
            "protocol": "imap",
            "host": "imap.example.net",
            "port": "1143",
            "username": "ann.remote",
            "password": "",
            "csrf_token": token,
        }
        saved = await client.post(url, data=data)
        refused = await client.post(
            url, data={**data, "port": "70000", "password": "typed-but-refused"}
        )
        return form.text, saved, refused

    form, saved, refused = browse(gate, ANN, edit)
    assert "remote-secret-1" not in form
    assert 'value="pop.example.net"' in form
    assert saved.status_code == 303
    assert refused.status_code == 400
    assert "Port" in refused.text
    assert 'value="70000"' in refused.text
    assert "typed-but-refused" not in refused.text
    (row,) = fetches_of(gate, ANN)
    assert (row.protocol, row.host, row.port, row.tls, row.password) == (
        "imap",
        "imap.example.net",
        1143,
        False,
        "remote-secret-1",  # an empty password field keeps the stored one
    )


def test_a_new_fetch_needs_a_password_and_a_host(gate: GateHarness) -> None:
    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        base = {"protocol": "imap", "host": "h.example", "username": "u", "password": "p"}
        out = []
        for data in ({**base, "password": ""}, {**base, "host": ""}, {**base, "protocol": "x"}):
            out.append(
                await post_form(client, ACCOUNT + "/fetches/new", ACCOUNT + "/fetches/new", data)
            )
        return out

    responses = browse(gate, BOB, scenario)
    assert [r.status_code for r in responses] == [400, 400, 400]
    assert "Password" in responses[0].text
    assert "Server" in responses[1].text
    assert "Protocol" in responses[2].text
    assert fetches_of(gate, BOB) == []


def test_another_users_fetch_is_not_found_and_unchanged(gate: GateHarness) -> None:
    async def add(client: httpx.AsyncClient) -> None:
        data = {
            "protocol": "imap",
            "host": "mine.example",
            "username": "bob.remote",
            "password": "bob-secret-9",
        }
        done = await post_form(client, ACCOUNT + "/fetches/new", ACCOUNT + "/fetches/new", data)
        assert done.status_code == 303

    browse(gate, BOB, add)
    (row,) = fetches_of(gate, BOB)

    async def crafted(client: httpx.AsyncClient) -> list[int]:
        page = await client.get(ACCOUNT + "/fetches")
        token = csrf_of(page)
        url = f"{ACCOUNT}/fetches/{row.id}"
        data = {
            "protocol": "imap",
            "host": "evil.example",
            "username": "x",
            "password": "y",
            "csrf_token": token,
        }
        return [
            (await client.get(url)).status_code,
            (await client.post(url, data=data)).status_code,
            (await client.post(url + "/delete", data={"csrf_token": token})).status_code,
        ]

    assert browse(gate, ANN, crafted) == [404, 404, 404]
    (after,) = fetches_of(gate, BOB)
    assert (after.host, after.username, after.password) == (
        "mine.example",
        "bob.remote",
        "bob-secret-9",
    )

    async def own(client: httpx.AsyncClient) -> int:
        page = await client.get(ACCOUNT + "/fetches")
        url = f"{ACCOUNT}/fetches/{row.id}/delete"
        return (await client.post(url, data={"csrf_token": csrf_of(page)})).status_code

    assert browse(gate, BOB, own) == 303
    assert fetches_of(gate, BOB) == []


def test_a_fetch_sets_its_folders_scanning_and_headers(gate: GateHarness) -> None:
    async def add(client: httpx.AsyncClient) -> str:
        data = {
            "protocol": "imap",
            "host": "imap.example.org",
            "tls": "on",
            "username": "old",
            "password": "remote-secret-2",
            "folders": " INBOX, Envoyés ,, Archive",
            "scan": "on",
            "invisible": "on",
        }
        done = await post_form(client, ACCOUNT + "/fetches/new", ACCOUNT + "/fetches/new", data)
        assert done.status_code == 303, done.text
        (row,) = [f for f in fetches_of(gate, BOB) if f.host == "imap.example.org"]
        return (await client.get(f"{ACCOUNT}/fetches/{row.id}")).text

    form = browse(gate, BOB, add)
    (row,) = [f for f in fetches_of(gate, BOB) if f.host == "imap.example.org"]
    # The store keeps the names sorted, as Mailu's comma-separated column does.
    assert (row.folders, row.scan, row.invisible, row.keep) == (
        ["Archive", "Envoyés", "INBOX"],
        True,
        True,
        False,
    )
    assert 'value="Archive, Envoyés, INBOX"' in form
    assert 'name="scan" checked' in form and 'name="invisible" checked' in form


def test_without_fetchmail_the_fetch_pages_are_not_there(gate: GateHarness) -> None:
    off = dataclasses.replace(gate.settings, FETCHMAIL_ENABLED=False)

    async def scenario(client: httpx.AsyncClient) -> tuple[list[int], str, str]:
        codes = [
            (await client.get(ACCOUNT + page)).status_code
            for page in ("/fetches", "/fetches/new", "/fetches/1")
        ]
        codes.append((await client.get(f"/admin/fetch/list/{ANN}")).status_code)
        return codes, (await client.get(ACCOUNT)).text, (await client.get(ACCOUNT + "/tokens")).text

    codes, account, tokens = browse(gate, ANN, scenario, settings=off)
    assert codes == [404, 404, 404, 404]
    assert "/fetches" not in account and "/fetches" not in tokens
    assert f'href="{ACCOUNT}/tokens"' in account
