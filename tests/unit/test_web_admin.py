"""The administration pages against a real gate, Redis and store: who sees what, the rank
rule (by the UI and by crafted requests), and each page's change made through the store.

Driven in process with httpx through tests/unit/web_harness.py.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select

from roost.gate.control import request_reload
from roost.store.entities.manager import remove_manager
from roost.store.models import Alias, Alternative, Domain, Relay, User, manager
from roost.web.admin.rights import Target, can_edit_user, can_manage_domain
from roost.web.auth import Account
from tests.unit.test_gate_support import (
    DOMAIN,
    GateHarness,
    add_domain,
    add_user,
    flush_limits,
    password_hash,
    running_gate,
)
from tests.unit.web_harness import PASSWORD, Browser, csrf_of, post_form, user_row

ADMIN = "/admin"
BOSS = f"boss@{DOMAIN}"
BOSS2 = f"boss2@{DOMAIN}"
MGR = f"mgr@{DOMAIN}"
CO = f"co@{DOMAIN}"
PLAIN = f"plain@{DOMAIN}"
FAR = "victim@other.test"
BIG = "big.test"
BIG_USERS = 10_000


def _manage(store: Any, email: str, *domains: str) -> None:
    with store.session() as session:
        for domain in domains:
            session.execute(insert(manager).values(domain_name=domain, user_email=email))


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateHarness]:
    with running_gate(tmp_path_factory.mktemp("admin"), "127.0.24.50") as harness:
        store = harness.store
        add_user(store, BOSS, PASSWORD, global_admin=True)
        add_user(store, BOSS2, PASSWORD, global_admin=True)
        add_user(store, MGR, PASSWORD)
        add_user(store, CO, PASSWORD)
        add_user(store, PLAIN, PASSWORD)
        add_user(store, FAR, PASSWORD)
        _manage(store, MGR, DOMAIN)
        _manage(store, CO, DOMAIN, "other.test")
        add_domain(store, BIG)
        hashed = password_hash(PASSWORD)
        with store.session() as session:
            session.execute(
                insert(User),
                [
                    {
                        "email": f"u{n:05d}@{BIG}",
                        "localpart": f"u{n:05d}",
                        "domain_name": BIG,
                        "password": hashed,
                    }
                    for n in range(BIG_USERS)
                ],
            )
        request_reload(harness.layout)
        yield harness


@pytest.fixture(autouse=True)
def fresh_limits(gate: GateHarness) -> None:
    flush_limits(gate)


browse = Browser(client_ip="198.51.100.24")


# -- the rights function itself ----------------------------------------------------------


def _account(email: str, admin: bool = False, managed: tuple[str, ...] = ()) -> Account:
    return Account(email, "", admin, False, 0, 0, managed)


def test_sizes_read_back_as_written() -> None:
    from roost.web.admin.common import parse_size, show_size

    for value in (0, 1, 1500, 2 * 10**9, 500 * 10**6, 10**12, 1_234_567):
        assert parse_size(show_size(value), "q") == value
    assert show_size(2 * 10**9) == "2G" and parse_size("1.5 GB", "q") == 1_500_000_000
    with pytest.raises(ValueError, match="give bytes or a size"):
        parse_size("lots", "quota")


def test_rank_rule_cases() -> None:
    boss = _account("b@a.test", admin=True)
    mgr = _account("m@a.test", managed=("a.test",))
    user = _account("u@a.test")
    plain = Target("p@a.test", "a.test", False, frozenset())
    admin = Target("x@a.test", "a.test", True, frozenset())
    fellow = Target("c@a.test", "a.test", False, frozenset({"a.test", "b.test"}))
    peer = Target("d@a.test", "a.test", False, frozenset({"a.test"}))
    stranger = Target("s@b.test", "b.test", False, frozenset())
    itself = Target("m@a.test", "a.test", False, frozenset({"a.test"}))
    assert can_manage_domain(boss, "z.test") and can_manage_domain(mgr, "a.test")
    assert not can_manage_domain(mgr, "b.test") and not can_manage_domain(user, "a.test")
    assert all(can_edit_user(boss, t) for t in (plain, admin, fellow, stranger))
    assert can_edit_user(mgr, plain) and can_edit_user(mgr, peer) and can_edit_user(mgr, itself)
    assert not can_edit_user(mgr, admin)  # outranks: a global administrator
    assert not can_edit_user(mgr, fellow)  # outranks: manages a domain mgr does not
    assert not can_edit_user(mgr, stranger)  # another domain's user
    assert not can_edit_user(user, plain)
    assert not can_edit_user(user, Target("u@a.test", "a.test", False, frozenset()))


# -- who sees what -----------------------------------------------------------------------


def test_signed_out_is_sent_to_sign_in_and_a_user_gets_no_admin_page(gate: GateHarness) -> None:
    page = browse(gate, None, lambda c: c.get(f"{ADMIN}/domain"))
    assert page.status_code == 303 and page.headers["location"].startswith("/sso/login")

    async def plain(client: httpx.AsyncClient) -> list[int]:
        urls = ["/domain", f"/domain/details/{DOMAIN}", f"/user/list/{DOMAIN}", "/relay"]
        return [(await client.get(ADMIN + url)).status_code for url in urls]

    assert browse(gate, PLAIN, plain) == [403, 403, 403, 403]


def test_the_admin_root_lands_managers_on_domains_and_users_on_their_account(
    gate: GateHarness,
) -> None:
    for who, landing in ((BOSS, "/domain"), (MGR, "/domain"), (PLAIN, "/account")):
        page = browse(gate, who, lambda c: c.get(f"{ADMIN}/"))
        assert (page.status_code, page.headers["location"]) == (303, ADMIN + landing)
    account = browse(gate, MGR, lambda c: c.get(f"{ADMIN}/account"))
    assert f'href="{ADMIN}/domain"' in account.text  # the nav shows the admin pages
    assert f'href="{ADMIN}/relay"' not in account.text


def test_admin_sees_every_domain_and_a_manager_only_theirs(gate: GateHarness) -> None:
    boss = browse(gate, BOSS, lambda c: c.get(f"{ADMIN}/domain"))
    assert boss.status_code == 200
    for name in (DOMAIN, "other.test", BIG):
        assert f"/domain/details/{name}" in boss.text
    assert "New domain" in boss.text and "/relay" in boss.text
    mgr = browse(gate, MGR, lambda c: c.get(f"{ADMIN}/domain"))
    assert f"/domain/details/{DOMAIN}" in mgr.text
    assert "other.test" not in mgr.text and BIG not in mgr.text
    assert "New domain" not in mgr.text and f"{ADMIN}/relay" not in mgr.text
    # A manager's domain page leads to the domain's anonymous-alias grants.
    details = browse(gate, MGR, lambda c: c.get(f"{ADMIN}/domain/details/{DOMAIN}"))
    assert f'href="{ADMIN}/domain/access/list/{DOMAIN}"' in details.text

    async def crafted(client: httpx.AsyncClient) -> list[int]:
        urls = [
            "/domain/details/other.test",
            "/user/list/other.test",
            "/alias/list/other.test",
            "/domain/create",
            f"/domain/edit/{DOMAIN}",
            "/relay",
        ]
        return [(await client.get(ADMIN + url)).status_code for url in urls]

    assert browse(gate, MGR, crafted) == [403] * 6


def test_domain_list_search_and_pages(gate: GateHarness) -> None:
    page = browse(gate, BOSS, lambda c: c.get(f"{ADMIN}/domain", params={"q": "oth"}))
    assert "other.test" in page.text and f"/domain/details/{BIG}" not in page.text
    assert "1 in all" in page.text
    nothing = browse(gate, BOSS, lambda c: c.get(f"{ADMIN}/domain", params={"q": "%"}))
    assert "No domain matches" in nothing.text


# -- domains ---------------------------------------------------------------------------------


def test_admin_creates_edits_and_deletes_a_domain(gate: GateHarness) -> None:
    async def go(client: httpx.AsyncClient) -> list[httpx.Response]:
        form = f"{ADMIN}/domain/create"
        bad = await post_form(
            client, form, form, {"name": "new.test", "max_users": "x", "max_aliases": "5"}
        )
        made = await post_form(
            client,
            form,
            form,
            {
                "name": "New.Test",
                "max_users": "3",
                "max_aliases": "4",
                "max_quota_bytes": "2G",
                "comment": "first",
            },
        )
        again = await post_form(client, form, form, {"name": "new.test"})
        edit = f"{ADMIN}/domain/edit/new.test"
        edited = await post_form(
            client,
            edit,
            edit,
            {
                "max_users": "7",
                "max_aliases": "-1",
                "max_quota_bytes": "0",
                "comment": "second",
                "totp_required": "on",
            },
        )
        details = await client.get(f"{ADMIN}/domain/details/new.test")
        zone = await client.get(f"{ADMIN}/domain/details/new.test/zonefile")
        delete = f"{ADMIN}/domain/delete/new.test"
        deleted = await post_form(client, delete, delete, {})
        return [bad, made, again, edited, details, zone, deleted]

    bad, made, again, edited, details, zone, deleted = browse(gate, BOSS, go)
    assert bad.status_code == 400 and "max users" in bad.text
    assert 'value="new.test"' in bad.text  # the form keeps what was typed
    assert made.status_code == 303 and made.headers["location"].endswith("/details/new.test")
    assert again.status_code == 400 and "new.test" in again.text
    assert edited.status_code == 303
    assert "second" in details.text and "required" in details.text
    assert " IN MX " in details.text or ">MX<" in details.text
    assert zone.headers["content-disposition"] == 'attachment; filename="new.test-zonefile.txt"'
    assert "new.test." in zone.text and " IN MX " in zone.text
    assert deleted.status_code == 303
    with gate.store.session() as session:
        assert session.get(Domain, "new.test") is None


def test_domain_delete_needs_a_post_with_csrf(gate: GateHarness) -> None:
    async def go(client: httpx.AsyncClient) -> int:
        return (await client.post(f"{ADMIN}/domain/delete/other.test", data={})).status_code

    assert browse(gate, BOSS, go) == 403
    with gate.store.session() as session:
        assert session.get(Domain, "other.test") is not None


def anonmail_flag(gate: GateHarness, name: str) -> bool:
    with gate.store.session() as session:
        found = session.get(Domain, name)
        assert found is not None
        return bool(found.anonmail_enabled)


def test_the_domain_form_opens_anonymous_email_to_the_domains_users(gate: GateHarness) -> None:
    create, edit = f"{ADMIN}/domain/create", f"{ADMIN}/domain/edit/anon.test"
    fields = {"name": "anon.test", "max_users": "5", "max_aliases": "5", "max_quota_bytes": "0"}

    async def made(client: httpx.AsyncClient) -> list[httpx.Response]:
        form = await client.get(create)
        created = await post_form(client, create, create, {**fields, "anonmail_enabled": "on"})
        listed = await client.get(f"{ADMIN}/domain", params={"q": "anon.test"})
        return [form, created, listed, await client.get(edit)]

    async def unticked(client: httpx.AsyncClient) -> list[httpx.Response]:
        saved = await post_form(client, edit, edit, fields)  # a checkbox left empty is not sent
        listed = await client.get(f"{ADMIN}/domain", params={"q": "anon.test"})
        return [saved, listed, await client.get(f"{ADMIN}/domain/details/anon.test")]

    form, created, listed, ticked = browse(gate, BOSS, made)
    assert 'name="anonmail_enabled"' in form.text
    assert "global anonymous email service" in form.text
    assert created.status_code == 303, created.text
    assert anonmail_flag(gate, "anon.test") is True
    assert "anonymous mail</span>" in listed.text
    assert re.search(r'name="anonmail_enabled"\s+checked', ticked.text)

    saved, listed, details = browse(gate, BOSS, unticked)
    assert saved.status_code == 303, saved.text
    assert anonmail_flag(gate, "anon.test") is False
    assert "anonymous mail</span>" not in listed.text and "anon.test" in listed.text
    assert "managers and granted users" in details.text


def test_alternatives_relays_and_managers(gate: GateHarness) -> None:
    details = f"{ADMIN}/domain/details/{DOMAIN}"

    async def go(client: httpx.AsyncClient) -> list[httpx.Response]:
        added = await post_form(
            client, details, f"{ADMIN}/alternative/create/{DOMAIN}", {"name": "alt2.test"}
        )
        taken = await post_form(
            client, details, f"{ADMIN}/alternative/create/{DOMAIN}", {"name": "other.test"}
        )
        alt = f"{ADMIN}/alternative/delete/alt2.test"
        gone = await post_form(client, alt, alt, {})
        relay = await post_form(
            client,
            f"{ADMIN}/relay",
            f"{ADMIN}/relay/create",
            {"name": "r.test", "smtp": "mx.r.test:2525"},
        )
        bad_relay = await post_form(
            client,
            f"{ADMIN}/relay",
            f"{ADMIN}/relay/create",
            {"name": "r2.test", "smtp": "mx:[bad"},
        )
        rel = f"{ADMIN}/relay/delete/r.test"
        relay_gone = await post_form(client, rel, rel, {})
        mgr = await post_form(
            client, details, f"{ADMIN}/manager/create/{DOMAIN}", {"localpart": "plain"}
        )
        page = await client.get(details)
        rm = f"{ADMIN}/manager/delete/{DOMAIN}/{PLAIN}"
        unmade = await post_form(client, rm, rm, {})
        return [added, taken, gone, relay, bad_relay, relay_gone, mgr, page, unmade]

    added, taken, gone, relay, bad_relay, relay_gone, mgr, page, unmade = browse(gate, BOSS, go)
    assert added.status_code == 303 and gone.status_code == 303
    assert taken.status_code == 400 and 'value="other.test"' in taken.text
    assert relay.status_code == 303 and relay_gone.status_code == 303
    assert bad_relay.status_code == 400 and 'value="mx:[bad"' in bad_relay.text
    assert mgr.status_code == 303 and PLAIN in page.text and unmade.status_code == 303
    with gate.store.session() as session:
        assert session.get(Alternative, "alt2.test") is None
        assert session.get(Relay, "r.test") is None and session.get(Relay, "r2.test") is None
        assert not session.get(User, PLAIN).manager_of  # type: ignore[union-attr]


def test_manager_cannot_change_alternatives_or_remove_a_fellow_who_outranks(
    gate: GateHarness,
) -> None:
    details = f"{ADMIN}/domain/details/{DOMAIN}"

    async def go(client: httpx.AsyncClient) -> list[int]:
        page = await client.get(details)
        token = csrf_of(page)
        alt = await client.post(
            f"{ADMIN}/alternative/create/{DOMAIN}", data={"name": "x.test", "csrf_token": token}
        )
        fellow = await client.post(
            f"{ADMIN}/manager/delete/{DOMAIN}/{CO}", data={"csrf_token": token}
        )
        boss = await client.post(
            f"{ADMIN}/manager/create/{DOMAIN}", data={"localpart": "boss", "csrf_token": token}
        )
        other = await client.post(
            f"{ADMIN}/manager/create/other.test", data={"localpart": "victim", "csrf_token": token}
        )
        return [alt.status_code, fellow.status_code, boss.status_code, other.status_code]

    assert browse(gate, MGR, go) == [403, 403, 403, 403]
    with gate.store.session() as session:
        assert session.get(Alternative, "x.test") is None
        assert len(session.get(User, CO).manager_of) == 2  # type: ignore[union-attr]
        assert not session.get(User, BOSS).manager_of  # type: ignore[union-attr]


def managers_of(gate: GateHarness, domain: str) -> set[str]:
    with gate.store.session() as session:
        found = session.get(Domain, domain)
        assert found is not None
        return {u.email for u in found.managers}


def test_the_manager_page_lists_the_candidates_or_asks_for_an_address(
    gate: GateHarness,
) -> None:
    create = f"{ADMIN}/manager/create/{DOMAIN}"
    before = managers_of(gate, DOMAIN)
    assert before == {MGR, CO}

    async def as_manager(client: httpx.AsyncClient) -> list[httpx.Response]:
        page = await client.get(create)
        unknown = await post_form(client, create, create, {"email": f"nobody@{DOMAIN}"})
        # Crafted: a user of a domain MGR does not manage, and a fellow who outranks MGR.
        token = csrf_of(page)
        far = await client.post(create, data={"email": FAR, "csrf_token": token})
        co = await client.post(create, data={"email": CO, "csrf_token": token})
        picked = await post_form(client, create, create, {"email": PLAIN})
        return [page, unknown, far, co, picked]

    async def as_admin(client: httpx.AsyncClient) -> list[httpx.Response]:
        page = await client.get(create)
        twice = await post_form(client, create, create, {"email": CO})
        typed = await post_form(client, create, create, {"email": FAR})
        return [page, twice, typed, await client.get(f"{ADMIN}/domain/details/{DOMAIN}")]

    try:
        page, unknown, far, co, picked = browse(gate, MGR, as_manager)
        # MGR's candidates: the users of the domain they manage whom the rank rule lets
        # them act on, less its managers; a short list, so a list to choose from.
        options = set(re.findall(r'<option value="([^"]+)"', page.text))
        assert '<select id="mgr" name="email"' in page.text
        assert PLAIN in options
        assert not options & {MGR, CO, BOSS, BOSS2, FAR}
        assert unknown.status_code == 400 and "no user" in unknown.text
        assert far.status_code == 403 and co.status_code == 403
        assert picked.status_code == 303, picked.text
        assert managers_of(gate, DOMAIN) == before | {PLAIN}

        page, twice, typed, details = browse(gate, BOSS, as_admin)
        # A global administrator's candidates are every user: 10,000 and more, so the
        # form asks for an address instead of listing them.
        assert '<input id="mgr" name="email" type="text"' in page.text
        assert "<option" not in page.text
        assert twice.status_code == 400 and "already" in twice.text
        assert f'value="{CO}"' in twice.text
        assert typed.status_code == 303, typed.text  # a user of another domain may manage
        assert managers_of(gate, DOMAIN) == before | {PLAIN, FAR}
        assert FAR in details.text
    finally:
        with gate.store.session() as session:
            for email in (PLAIN, FAR):
                remove_manager(session, DOMAIN, email)
    assert managers_of(gate, DOMAIN) == before


def test_dns_check_page_answers(gate: GateHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    from roost import dnscheck

    seen: list[int] = []

    def fake(records: Any, *args: Any, **kwargs: Any) -> list[dnscheck.Check]:
        seen.append(len(records))
        return [dnscheck.Check(r, dnscheck.MISSING) for r in records]

    monkeypatch.setattr(dnscheck, "check_records", fake)
    page = browse(gate, MGR, lambda c: c.get(f"{ADMIN}/domain/details/{DOMAIN}/check"))
    assert page.status_code == 200 and seen and seen[0] > 0
    assert "missing" in page.text


# -- users -----------------------------------------------------------------------------------


def test_user_list_pages_10000_users_fast_and_searches(gate: GateHarness) -> None:
    async def go(client: httpx.AsyncClient) -> list[tuple[httpx.Response, float]]:
        out = []
        for params in ({}, {"page": "150"}, {"q": "u09999"}, {"page": "999999"}):
            start = time.perf_counter()
            page = await client.get(f"{ADMIN}/user/list/{BIG}", params=params)
            out.append((page, time.perf_counter() - start))
        return out

    first, middle, found, past = browse(gate, BOSS, go)
    for page, seconds in (first, middle, found, past):
        assert page.status_code == 200 and seconds < 1.0, seconds
    assert "u00000@big.test" in first[0].text and "u00050@big.test" not in first[0].text
    assert "Page 1 of 200" in first[0].text
    assert "u07450@big.test" in middle[0].text and "Page 150 of 200" in middle[0].text
    assert "u09999@big.test" in found[0].text and "1 in all" in found[0].text
    assert "Page 200 of 200" in past[0].text


def test_manager_creates_and_edits_a_user(gate: GateHarness) -> None:
    create = f"{ADMIN}/user/create/{DOMAIN}"
    edit = f"{ADMIN}/user/edit/new1@{DOMAIN}"

    async def go(client: httpx.AsyncClient) -> list[httpx.Response]:
        short = await post_form(
            client,
            create,
            create,
            {"localpart": "new1", "password": "short", "password2": "short"},
        )
        made = await post_form(
            client,
            create,
            create,
            {
                "localpart": "new1",
                "password": PASSWORD,
                "password2": PASSWORD,
                "quota_bytes": "500M",
                "enabled": "on",
                "enable_imap": "on",
                "displayed_name": "New One",
                "global_admin": "on",
            },
        )
        taken = await post_form(
            client,
            create,
            create,
            {"localpart": "new1", "password": PASSWORD, "password2": PASSWORD},
        )
        saved = await post_form(
            client,
            edit,
            edit,
            {
                "displayed_name": "Renamed",
                "quota_bytes": "1G",
                "enabled": "on",
                "enable_pop": "on",
                "allow_spoofing": "on",
                "comment": "c",
                "global_admin": "on",
            },
        )
        settings = await post_form(
            client,
            edit,
            f"{ADMIN}/user/settings/new1@{DOMAIN}",
            {
                "forward_enabled": "on",
                "forward_destination": "a@far.test, b@far.test",
                "spam_enabled": "on",
                "spam_threshold": "60",
            },
        )
        bad_reply = await post_form(
            client,
            edit,
            f"{ADMIN}/user/reply/new1@{DOMAIN}",
            {"reply_enabled": "on", "reply_subject": "Away", "reply_body": ""},
        )
        reply = await post_form(
            client,
            edit,
            f"{ADMIN}/user/reply/new1@{DOMAIN}",
            {
                "reply_enabled": "on",
                "reply_subject": "Away",
                "reply_body": "Back soon",
                "reply_enddate": "2999-01-01",
            },
        )
        page = await client.get(edit)
        return [short, made, taken, saved, settings, bad_reply, reply, page]

    short, made, taken, saved, settings, bad_reply, reply, page = browse(gate, MGR, go)
    assert short.status_code == 400 and "at least 8" in short.text
    assert 'value="new1"' in short.text and "short" not in re.findall(
        r'value="([^"]*)"', short.text
    )
    assert made.status_code == 303
    assert taken.status_code == 400
    assert saved.status_code == 303 and settings.status_code == 303, settings.text
    assert bad_reply.status_code == 400 and "needs a body" in bad_reply.text
    assert 'value="Away"' in bad_reply.text
    assert reply.status_code == 303
    assert "Renamed" in page.text and "Global administrator" not in page.text
    user = user_row(gate, f"new1@{DOMAIN}")
    assert user is not None
    assert user.displayed_name == "Renamed" and user.quota_bytes == 10**9
    assert not user.global_admin  # a manager cannot make an administrator
    assert user.enable_pop and not user.enable_imap and user.allow_spoofing
    assert user.forward_enabled and user.forward_destination == ["a@far.test", "b@far.test"]
    assert user.spam_threshold == 60 and not user.spam_mark_as_read
    assert user.reply_enabled and user.reply_body == "Back soon"


def test_manager_cannot_touch_an_admin_another_domain_or_an_outranking_fellow(
    gate: GateHarness,
) -> None:
    before = {e: user_row(gate, e) for e in (BOSS2, FAR, CO)}

    async def go(client: httpx.AsyncClient) -> list[int]:
        token = csrf_of(await client.get(f"{ADMIN}/domain"))
        codes = []
        for email in (BOSS2, FAR, CO):
            codes.append((await client.get(f"{ADMIN}/user/edit/{email}")).status_code)
            for action in ("edit", "settings", "reply", "password", "delete"):
                data = {
                    "csrf_token": token,
                    "displayed_name": "pwned",
                    "password": "pwned-password",
                    "password2": "pwned-password",
                    "enabled": "",
                }
                response = await client.post(f"{ADMIN}/user/{action}/{email}", data=data)
                codes.append(response.status_code)
        codes.append(
            (
                await client.post(
                    f"{ADMIN}/user/create/other.test",
                    data={
                        "csrf_token": token,
                        "localpart": "x",
                        "password": PASSWORD,
                        "password2": PASSWORD,
                    },
                )
            ).status_code
        )
        return codes

    assert set(browse(gate, MGR, go)) == {403}
    for email, old in before.items():
        now = user_row(gate, email)
        assert now is not None and old is not None
        assert (now.displayed_name, now.password, now.enabled) == (
            old.displayed_name,
            old.password,
            old.enabled,
        )
    assert user_row(gate, "x@other.test") is None


def test_admin_grants_global_admin_resets_a_password_and_deletes_a_user(
    gate: GateHarness,
) -> None:
    add_user(gate.store, f"temp@{DOMAIN}", PASSWORD)
    edit = f"{ADMIN}/user/edit/temp@{DOMAIN}"

    async def go(client: httpx.AsyncClient) -> list[httpx.Response]:
        granted = await post_form(
            client, edit, edit, {"enabled": "on", "global_admin": "on", "quota_bytes": "0"}
        )
        mismatch = await post_form(
            client,
            edit,
            f"{ADMIN}/user/password/temp@{DOMAIN}",
            {"password": "new-password-1", "password2": "other-password"},
        )
        reset = await post_form(
            client,
            edit,
            f"{ADMIN}/user/password/temp@{DOMAIN}",
            {"password": "new-password-1", "password2": "new-password-1"},
        )
        return [granted, mismatch, reset]

    granted, mismatch, reset = browse(gate, BOSS, go)
    assert granted.status_code == 303 and mismatch.status_code == 400 and "differ" in mismatch.text
    assert reset.status_code == 303
    user = user_row(gate, f"temp@{DOMAIN}")
    assert user is not None and user.global_admin and user.change_pw_next_login
    assert user.quota_bytes == 0

    async def delete(client: httpx.AsyncClient) -> httpx.Response:
        url = f"{ADMIN}/user/delete/temp@{DOMAIN}"
        return await post_form(client, url, url, {})

    assert browse(gate, BOSS, delete).status_code == 303
    assert user_row(gate, f"temp@{DOMAIN}") is None


# -- aliases ---------------------------------------------------------------------------------


def test_manager_creates_edits_and_deletes_aliases(gate: GateHarness) -> None:
    create = f"{ADMIN}/alias/create/{DOMAIN}"

    async def go(client: httpx.AsyncClient) -> list[httpx.Response]:
        bad = await post_form(client, create, create, {"localpart": "sales", "destination": ""})
        made = await post_form(
            client, create, create, {"localpart": "sales", "destination": PLAIN, "comment": "s"}
        )
        wild = await post_form(
            client,
            create,
            create,
            {"localpart": "sales-%", "wildcard": "on", "destination": PLAIN},
        )
        listed = await client.get(f"{ADMIN}/alias/list/{DOMAIN}", params={"q": "sales"})
        edit = f"{ADMIN}/alias/edit/sales@{DOMAIN}"
        edited = await post_form(client, edit, edit, {"destination": f"{MGR}, x@far.test"})
        wild_delete = f"{ADMIN}/alias/delete/sales-%25@{DOMAIN}"
        gone = await post_form(client, wild_delete, wild_delete, {})
        return [bad, made, wild, listed, edited, gone]

    bad, made, wild, listed, edited, gone = browse(gate, MGR, go)
    assert bad.status_code == 400 and "destination" in bad.text and 'value="sales"' in bad.text
    assert made.status_code == 303 and wild.status_code == 303
    assert f"sales@{DOMAIN}" in listed.text and "pattern" in listed.text
    assert "2 in all" in listed.text
    assert edited.status_code == 303 and gone.status_code == 303
    with gate.store.session() as session:
        alias = session.get(Alias, f"sales@{DOMAIN}")
        assert alias is not None and alias.destination == [MGR, "x@far.test"]
        assert session.get(Alias, f"sales-%@{DOMAIN}") is None


def test_manager_cannot_touch_another_domains_alias(gate: GateHarness) -> None:
    async def go(client: httpx.AsyncClient) -> list[int]:
        token = csrf_of(await client.get(f"{ADMIN}/domain"))
        return [
            (await client.get(f"{ADMIN}/alias/edit/%25@other.test")).status_code,
            (
                await client.post(
                    f"{ADMIN}/alias/edit/%25@other.test",
                    data={"csrf_token": token, "destination": MGR},
                )
            ).status_code,
            (
                await client.post(
                    f"{ADMIN}/alias/delete/%25@other.test", data={"csrf_token": token}
                )
            ).status_code,
            (
                await client.post(
                    f"{ADMIN}/alias/create/other.test",
                    data={"csrf_token": token, "localpart": "x", "destination": MGR},
                )
            ).status_code,
        ]

    assert browse(gate, MGR, go) == [403, 403, 403, 403]
    with gate.store.session() as session:
        alias = session.get(Alias, "%@other.test")
        assert alias is not None and alias.destination == [f"joe@{DOMAIN}"]
        assert session.scalar(select(Alias).where(Alias.email == "x@other.test")) is None
