"""An administrator acting for a user: the settings, app token and fetched-account pages
at Mailu's paths with the user's address (``/user/usersettings/<email>``,
``/token/list/<email>``, ``/fetch/list/<email>`` and below), served by the same handlers
as the user's own pages, against a real gate, Redis and store.

Who may: the user, a global administrator, a manager of the user's domain whom the rank
rule lets act on them. Everyone else is refused by the pages and by crafted requests
(with a valid CSRF token), and nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import insert

from roost.gate.control import request_reload
from roost.store.models import manager
from tests.unit.test_gate_support import (
    DOMAIN,
    GateHarness,
    add_token,
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

ADMIN = "/admin"
BOSS = f"boss@{DOMAIN}"
MGR = f"mgr@{DOMAIN}"
CO = f"co@{DOMAIN}"
PLAIN = f"plain@{DOMAIN}"
OTHER = f"other@{DOMAIN}"
FAR = "far@other.test"
FETCH = {
    "protocol": "imap",
    "host": "imap.example.net",
    "username": "remote",
    "password": "remote-secret",
    "tls": "on",
}


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateHarness]:
    with running_gate(
        tmp_path_factory.mktemp("acting"), "127.0.43.60", FETCHMAIL_ENABLED=True
    ) as harness:
        store = harness.store
        add_user(store, BOSS, PASSWORD, global_admin=True)
        for email in (MGR, CO, PLAIN, OTHER, FAR):
            add_user(store, email, PASSWORD)
        with store.session() as session:
            session.execute(
                insert(manager),
                [
                    {"domain_name": DOMAIN, "user_email": MGR},
                    {"domain_name": DOMAIN, "user_email": CO},
                    {"domain_name": "other.test", "user_email": CO},
                ],
            )
        request_reload(harness.layout)
        yield harness


@pytest.fixture(autouse=True)
def fresh_limits(gate: GateHarness) -> None:
    flush_limits(gate)


browse = Browser(client_ip="198.51.100.43")


def pages(email: str) -> dict[str, str]:
    return {
        "settings": f"{ADMIN}/user/usersettings/{email}",
        "tokens": f"{ADMIN}/token/list/{email}",
        "fetches": f"{ADMIN}/fetch/list/{email}",
        "fetch_new": f"{ADMIN}/fetch/create/{email}",
    }


# -- who may --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "target", "status"),
    [
        (BOSS, PLAIN, 200),  # a global administrator: anyone
        (BOSS, CO, 200),
        (MGR, PLAIN, 200),  # a manager of the user's domain
        (MGR, MGR, 200),
        (PLAIN, PLAIN, 200),  # the user themself, by address
        (MGR, BOSS, 403),  # outranks the manager
        (MGR, CO, 403),  # manages a domain the manager does not
        (MGR, FAR, 403),  # another domain's user
        (PLAIN, OTHER, 403),  # a plain user: only their own
        (PLAIN, f"nobody@{DOMAIN}", 403),  # ... and learns nothing about who exists
        (MGR, f"nobody@{DOMAIN}", 404),
        (BOSS, "not an address", 404),
    ],
)
def test_the_rank_rule_decides_who_opens_a_users_pages(
    gate: GateHarness, who: str, target: str, status: int
) -> None:
    async def scenario(client: httpx.AsyncClient) -> list[int]:
        return [(await client.get(url)).status_code for url in pages(target).values()]

    assert browse(gate, who, scenario) == [status] * 4


def test_nobody_signed_in_is_sent_to_sign_in(gate: GateHarness) -> None:
    async def scenario(client: httpx.AsyncClient) -> list[str]:
        return [(await client.get(url)).headers["location"] for url in pages(PLAIN).values()]

    for location in browse(gate, None, scenario):
        assert location.startswith("/sso/login?url=")


def test_crafted_changes_for_a_user_one_may_not_act_on_change_nothing(
    gate: GateHarness,
) -> None:
    add_token(gate.store, BOSS, "f" * 32)
    before = existing_user(gate, BOSS)
    token_id = tokens_of(gate, BOSS)[0].id

    async def scenario(client: httpx.AsyncClient) -> list[int]:
        # A valid CSRF token from the manager's own page: only the rank rule refuses.
        token = csrf_of(await client.get(f"{ADMIN}/account/settings"))
        posts = [
            (f"/user/usersettings/{BOSS}/forward", {"forward_enabled": "on"}),
            (f"/user/usersettings/{BOSS}/spam", {"spam_threshold": "3"}),
            (f"/token/create/{BOSS}", {"comment": "mine now"}),
            (f"/token/delete/{BOSS}/{token_id}", {}),
            (f"/fetch/create/{BOSS}", FETCH),
        ]
        return [
            (await client.post(ADMIN + url, data={**data, "csrf_token": token})).status_code
            for url, data in posts
        ]

    assert browse(gate, MGR, scenario) == [403] * 5
    after = existing_user(gate, BOSS)
    assert after.forward_enabled == before.forward_enabled
    assert after.spam_threshold == before.spam_threshold
    assert [t.id for t in tokens_of(gate, BOSS)] == [token_id]
    assert fetches_of(gate, BOSS) == []


def test_a_plain_user_cannot_post_for_another(gate: GateHarness) -> None:
    async def scenario(client: httpx.AsyncClient) -> int:
        token = csrf_of(await client.get(f"{ADMIN}/account/tokens"))
        data = {"comment": "sneaky", "csrf_token": token}
        return (await client.post(f"{ADMIN}/token/create/{OTHER}", data=data)).status_code

    assert browse(gate, PLAIN, scenario) == 403
    assert tokens_of(gate, OTHER) == []


def test_without_the_csrf_token_nothing_changes_even_for_an_admin(gate: GateHarness) -> None:
    async def scenario(client: httpx.AsyncClient) -> int:
        await client.get(pages(OTHER)["tokens"])
        return (await client.post(f"{ADMIN}/token/create/{OTHER}", data={})).status_code

    assert browse(gate, BOSS, scenario) == 403
    assert tokens_of(gate, OTHER) == []


# -- what an administrator does there --------------------------------------------------------


def test_the_user_edit_page_links_the_users_pages(gate: GateHarness) -> None:
    async def scenario(client: httpx.AsyncClient) -> str:
        return (await client.get(f"{ADMIN}/user/edit/{PLAIN}")).text

    text = browse(gate, MGR, scenario)
    for name in ("settings", "tokens", "fetches"):
        assert f'href="{pages(PLAIN)[name]}"' in text


def test_a_manager_saves_a_users_settings_on_their_page(gate: GateHarness) -> None:
    url = pages(PLAIN)["settings"]

    async def scenario(client: httpx.AsyncClient) -> tuple[str, httpx.Response, str]:
        page = (await client.get(url)).text
        data = {"spam_enabled": "on", "spam_threshold": "42"}
        saved = await post_form(client, url, f"{url}/spam", data)
        shown = (await client.get(saved.headers["location"])).text
        return page, saved, shown

    page, saved, shown = browse(gate, MGR, scenario)
    # The page says whose it is, and its forms post to the user's paths, not the manager's.
    assert f"Settings of {PLAIN}" in page
    assert f'action="{url}/forward"' in page
    assert f'action="{ADMIN}/account/settings/forward"' not in page
    assert saved.status_code == 303
    assert saved.headers["location"] == f"{url}?msg=spam#spam"
    assert "Spam settings saved." in shown
    assert existing_user(gate, PLAIN).spam_threshold == 42
    assert existing_user(gate, MGR).spam_threshold != 42


def test_a_refused_value_comes_back_on_the_users_page(gate: GateHarness) -> None:
    url = pages(PLAIN)["settings"]

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        data = {"forward_enabled": "on", "forward_destination": "not an address"}
        return await post_form(client, url, f"{url}/forward", data)

    response = browse(gate, BOSS, scenario)
    assert response.status_code == 400
    assert 'value="not an address"' in response.text
    assert f'action="{url}/forward"' in response.text


def test_an_admin_makes_and_deletes_a_users_token(gate: GateHarness) -> None:
    url = pages(OTHER)["tokens"]

    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        made = await post_form(client, url, f"{ADMIN}/token/create/{OTHER}", {"comment": "phone"})
        [token] = tokens_of(gate, OTHER)
        gone = await post_form(client, url, f"{ADMIN}/token/delete/{OTHER}/{token.id}", {})
        return made, gone

    made, gone = browse(gate, BOSS, scenario)
    assert made.status_code == 200
    assert "The new token" in made.text
    assert made.headers["cache-control"] == "no-store"
    assert gone.status_code == 303
    assert gone.headers["location"] == f"{url}?msg=deleted"
    assert tokens_of(gate, OTHER) == []
    assert all(t.comment != "phone" for t in tokens_of(gate, BOSS))


def test_another_users_token_id_under_a_users_path_is_not_found(gate: GateHarness) -> None:
    add_token(gate.store, MGR, "e" * 32)
    [token] = tokens_of(gate, MGR)

    async def scenario(client: httpx.AsyncClient) -> int:
        # The manager may act on PLAIN, and names their own token under PLAIN's path.
        url = pages(PLAIN)["tokens"]
        answer = await post_form(client, url, f"{ADMIN}/token/delete/{PLAIN}/{token.id}", {})
        return answer.status_code

    assert browse(gate, MGR, scenario) == 404
    assert [t.id for t in tokens_of(gate, MGR)] == [token.id]


def test_a_manager_keeps_a_users_fetched_account(gate: GateHarness) -> None:
    urls = pages(PLAIN)

    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        added = await post_form(client, urls["fetch_new"], urls["fetch_new"], FETCH)
        [row] = fetches_of(gate, PLAIN)
        edit = f"{ADMIN}/fetch/edit/{PLAIN}/{row.id}"
        form = (await client.get(edit)).text
        changed = await post_form(client, edit, edit, {**FETCH, "password": "", "port": "995"})
        listed = (await client.get(urls["fetches"])).text
        deleted = await post_form(client, edit, f"{ADMIN}/fetch/delete/{PLAIN}/{row.id}", {})
        return [added, form, changed, listed, deleted, row.id]

    added, form, changed, listed, deleted, fetch_id = browse(gate, MGR, scenario)
    assert added.status_code == 303
    assert added.headers["location"] == f"{urls['fetches']}?msg=added"
    assert "remote-secret" not in form
    assert f'action="{ADMIN}/fetch/edit/{PLAIN}/{fetch_id}"' in form
    assert changed.headers["location"] == f"{urls['fetches']}?msg=saved"
    assert f'href="{ADMIN}/fetch/edit/{PLAIN}/{fetch_id}"' in listed
    assert ":995" in listed
    assert deleted.headers["location"] == f"{urls['fetches']}?msg=deleted"
    assert fetches_of(gate, PLAIN) == []
    assert fetches_of(gate, MGR) == []


def test_mailus_auto_reply_path_opens_the_settings_section(gate: GateHarness) -> None:
    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [await client.get(f"{ADMIN}/user/reply/{who}") for who in (PLAIN, BOSS)]

    allowed, refused = browse(gate, MGR, scenario)
    assert allowed.status_code == 303
    assert allowed.headers["location"] == f"{pages(PLAIN)['settings']}#reply"
    assert refused.status_code == 403


def test_the_users_own_pages_keep_their_paths(gate: GateHarness) -> None:
    async def scenario(client: httpx.AsyncClient) -> str:
        return (await client.get(f"{ADMIN}/account/tokens")).text

    text = browse(gate, PLAIN, scenario)
    assert f'action="{ADMIN}/account/tokens"' in text
    assert "/token/" not in text
    assert "App tokens of" not in text
