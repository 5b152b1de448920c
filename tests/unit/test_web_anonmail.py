"""Anonymous aliases against a real gate, Redis and store: the store's operations, the
pages of a user's own aliases, a domain's access grants, and the SimpleLogin-compatible
endpoint ``POST /api/alias/random/new`` (app tokens through the gate, its rate limits).

Driven in process with httpx, as tests/unit/test_web_selfservice.py does.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from roost.gate.control import request_reload
from roost.store.entities import anonalias
from roost.store.entities import user as users
from roost.store.entities.access import anonmail_domains
from roost.store.models import Alias, Domain, DomainAccess, User
from tests.unit.test_gate_support import (
    DOMAIN,
    GateHarness,
    add_alias,
    add_domain,
    add_token,
    add_user,
    flush_limits,
    running_gate,
    settings_with,
)
from tests.unit.web_harness import PASSWORD, Browser, Scenario, csrf_of, post_form

NEW = "/api/alias/random/new"
ANON = "anon.test"
OPEN = "open.test"
ANN = f"ann@{DOMAIN}"  # a plain user: access to ANON by a grant (given in the tests)
BOB = f"bob@{DOMAIN}"  # a plain user without any access
MGR = f"mgr@{ANON}"  # manages ANON
BOSS = f"boss@{DOMAIN}"  # global administrator
OLI = f"oli@{OPEN}"  # a user of a domain with anonmail_enabled
ANN_TOKEN = "0123456789abcdef0123456789abcdef"
BOB_TOKEN = "fedcba9876543210fedcba9876543210"
OLI_TOKEN = "00112233445566778899aabbccddeeff"
FENCED_TOKEN = "ffeeddccbbaa99887766554433221100"  # ANN's, only from 192.0.2.0/24
CLIENT = "198.51.100.41"


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateHarness]:
    with running_gate(tmp_path_factory.mktemp("anon"), "127.0.41.60", API=True) as harness:
        store = harness.store
        add_domain(store, ANON)
        add_domain(store, OPEN)
        for email in (ANN, BOB, MGR, OLI):
            add_user(store, email, PASSWORD)
        add_user(store, BOSS, PASSWORD, global_admin=True)
        with store.session() as session:
            open_domain = session.get(Domain, OPEN)
            assert open_domain is not None
            open_domain.anonmail_enabled = True
            manager = session.get(User, MGR)
            anon = session.get(Domain, ANON)
            assert manager is not None and anon is not None
            manager.manager_of.append(anon)
        add_token(store, ANN, ANN_TOKEN)
        add_token(store, ANN, FENCED_TOKEN, ip=["192.0.2.0/24"])
        add_token(store, BOB, BOB_TOKEN)
        add_token(store, OLI, OLI_TOKEN)
        request_reload(harness.layout)
        yield harness


@pytest.fixture(autouse=True)
def fresh(gate: GateHarness) -> None:
    """No rate-limit counts, no grants, no anonymous aliases left by another test."""
    flush_limits(gate)
    with gate.store.session() as session:
        for row in session.scalars(select(DomainAccess)):
            session.delete(row)
        for alias in session.scalars(select(Alias).where(Alias.owner_email.is_not(None))):
            session.delete(alias)
        for email in (ANN, BOB, OLI):
            user = session.get(User, email)
            assert user is not None
            user.enabled = True
    request_reload(gate.layout)


def browse(
    gate: GateHarness,
    who: str | None,
    scenario: Scenario,
    *,
    client: str = CLIENT,
    **overrides: Any,
) -> Any:
    """Sign in as ``who`` (None: nobody), then run ``scenario`` (``overrides``: settings)."""
    settings = settings_with(gate.settings, **overrides) if overrides else None
    return Browser(client)(gate, who, scenario, settings)


def grant(gate: GateHarness, domain: str, email: str) -> None:
    with gate.store.session() as session:
        session.add(DomainAccess(domain_name=domain, user_email=email))
    request_reload(gate.layout)


def owned(gate: GateHarness, owner: str) -> list[Alias]:
    with gate.store.session() as session:
        rows = list(session.scalars(select(Alias).where(Alias.owner_email == owner)))
        for row in rows:
            session.expunge(row)
        return rows


def set_enabled(gate: GateHarness, email: str, enabled: bool) -> None:
    with gate.store.session() as session:
        user = session.get(User, email)
        assert user is not None
        user.enabled = enabled
    request_reload(gate.layout)


def call(
    gate: GateHarness,
    auth: str | None,
    *,
    query: str = "",
    body: Any = None,
    client: str = CLIENT,
    **overrides: Any,
) -> httpx.Response:
    async def scenario(http: httpx.AsyncClient) -> httpx.Response:
        headers = {} if auth is None else {"Authentication": auth}
        if body is None:
            return await http.post(NEW + query, headers=headers)
        return await http.post(NEW + query, headers=headers, json=body)

    return browse(gate, None, scenario, client=client, **overrides)


# -- the store -------------------------------------------------------------------------------


def test_who_may_create_anonymous_aliases_where(gate: GateHarness) -> None:
    grant(gate, ANON, ANN)
    with gate.store.session() as session:
        everything = sorted(session.scalars(select(Domain.name)))
        assert anonmail_domains(session, BOSS) == everything
        assert anonmail_domains(session, MGR) == [ANON]
        assert anonmail_domains(session, ANN) == [ANON]
        assert anonmail_domains(session, OLI) == [OPEN]
        assert anonmail_domains(session, BOB) == []
        assert anonmail_domains(session, "nobody@example.test") == []


def test_a_candidate_is_taken_only_when_nothing_has_the_address(gate: GateHarness) -> None:
    grant(gate, ANON, ANN)
    add_alias(gate.store, f"git%@{ANON}", [BOB], wildcard=True)
    add_alias(gate.store, f"taken@{ANON}", [BOB])
    add_user(gate.store, f"user.word@{ANON}", PASSWORD)
    candidates = iter(["taken", "user.word", "github.word", "USER.WORD", "free.word"])
    try:
        with gate.store.session() as session:
            alias = anonalias.create_anonymous_alias(
                session,
                ANN,
                ANON,
                hostname="github.com",
                note="n",
                retries=10,
                local_part=lambda _site: next(candidates),
            )
            assert alias.email == f"free.word@{ANON}"
            assert (alias.destination, alias.owner_email) == ([ANN], ANN)
            assert (alias.hostname, alias.comment, alias.disabled) == ("github.com", "n", False)
    finally:
        with gate.store.session() as session:
            for email in (f"git%@{ANON}", f"taken@{ANON}"):
                session.delete(session.get(Alias, email))
            session.delete(session.get(User, f"user.word@{ANON}"))


def test_an_inactive_pattern_takes_no_candidate(gate: GateHarness) -> None:
    grant(gate, ANON, ANN)
    add_alias(gate.store, f"%.word@{ANON}", [BOB], wildcard=True)
    with gate.store.session() as session:
        pattern = session.get(Alias, f"%.word@{ANON}")
        assert pattern is not None
        pattern.disabled = True
    try:
        with gate.store.session() as session:
            alias = anonalias.create_anonymous_alias(
                session, ANN, ANON, hostname="", note="", retries=1, local_part=lambda _: "a.word"
            )
            assert alias.email == f"a.word@{ANON}"
    finally:
        with gate.store.session() as session:
            session.delete(session.get(Alias, f"%.word@{ANON}"))


def test_the_retries_run_out(gate: GateHarness) -> None:
    grant(gate, ANON, ANN)
    add_alias(gate.store, f"taken@{ANON}", [BOB])
    tries = itertools.count()

    def always_taken(_site: str | None) -> str:
        next(tries)
        return "taken"

    try:
        with pytest.raises(anonalias.AliasExhausted), gate.store.session() as session:
            anonalias.create_anonymous_alias(
                session, ANN, ANON, hostname="", note="", retries=4, local_part=always_taken
            )
        assert next(tries) == 4
    finally:
        with gate.store.session() as session:
            session.delete(session.get(Alias, f"taken@{ANON}"))


def test_only_the_owner_acts_on_an_anonymous_alias(gate: GateHarness) -> None:
    grant(gate, ANON, ANN)
    with gate.store.session() as session:
        email = anonalias.create_anonymous_alias(
            session, ANN, ANON, hostname=None, note="", retries=3
        ).email
        assert re.fullmatch(r"[a-z0-9]{16}@anon\.test", email)
    with gate.store.session() as session:
        with pytest.raises(anonalias.NotOwned):
            anonalias.set_anonymous_alias_disabled(session, BOB, email, True)
        with pytest.raises(anonalias.NotOwned):
            anonalias.own_alias(session, ANN, f"team@{DOMAIN}")  # an alias without owner
        anonalias.set_anonymous_alias_disabled(session, ANN, email, True)
    assert [a.disabled for a in owned(gate, ANN)] == [True]


def test_deleting_the_owner_deletes_their_anonymous_aliases_and_grants(
    gate: GateHarness,
) -> None:
    gone = add_user(gate.store, f"gone@{DOMAIN}", PASSWORD)
    grant(gate, ANON, gone)
    with gate.store.session() as session:
        email = anonalias.create_anonymous_alias(
            session, gone, ANON, hostname="", note="", retries=3
        ).email
    with gate.store.session() as session:
        users.delete_user(session, gone, really=True)
    with gate.store.session() as session:
        assert session.get(Alias, email) is None
        assert list(session.scalars(select(DomainAccess))) == []


# -- the mail path ---------------------------------------------------------------------------


def test_an_anonymous_alias_resolves_only_while_it_and_its_owner_are_enabled(
    gate: GateHarness,
) -> None:
    grant(gate, ANON, ANN)
    with gate.store.session() as session:
        email = anonalias.create_anonymous_alias(
            session, ANN, ANON, hostname="github.com", note="", retries=3
        ).email
    request_reload(gate.layout)
    assert gate.lookup("alias", email) == f"OK {ANN}"
    set_enabled(gate, ANN, False)
    assert gate.lookup("alias", email) == "NOTFOUND "
    set_enabled(gate, ANN, True)
    assert gate.lookup("alias", email) == f"OK {ANN}"
    with gate.store.session() as session:
        anonalias.set_anonymous_alias_disabled(session, ANN, email, True)
    request_reload(gate.layout)
    assert gate.lookup("alias", email) == "NOTFOUND "


# -- the pages of one's own aliases ----------------------------------------------------------


def test_the_pages_need_a_signed_in_user(gate: GateHarness) -> None:
    async def scenario(http: httpx.AsyncClient) -> list[httpx.Response]:
        return [await http.get("/admin/anonalias/list"), await http.get("/admin/anonalias/create")]

    for response in browse(gate, None, scenario):
        assert response.status_code == 303
        assert response.headers["location"].startswith("/sso/login?url=")


def test_a_user_without_access_is_told_so(gate: GateHarness) -> None:
    async def scenario(http: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        return await http.get("/admin/anonalias/list"), await http.get("/admin/anonalias/create")

    listing, form = browse(gate, BOB, scenario)
    assert listing.status_code == 200
    assert "No domain lets you create them" in listing.text
    assert 'href="/admin/anonalias/list"' in listing.text  # the menu entry
    assert form.status_code == 403
    assert "ask your domain" in form.text


def test_a_user_creates_lists_disables_enables_and_deletes_their_alias(
    gate: GateHarness,
) -> None:
    grant(gate, ANON, ANN)

    async def create(http: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        done = await post_form(
            http,
            "/admin/anonalias/create",
            "/admin/anonalias/create",
            {"domain": ANON, "hostname": "https://www.github.com/login", "note": ""},
        )
        return done, await http.get("/admin/anonalias/list")

    done, listing = browse(gate, ANN, create)
    assert done.status_code == 303
    (alias,) = owned(gate, ANN)
    assert re.fullmatch(r"github\.[a-z]{5,10}@anon\.test", alias.email)
    assert alias.destination == [ANN]
    assert alias.hostname == "https://www.github.com/login"
    assert alias.comment == f"Generated by UI for {ANN}"
    assert alias.email in listing.text
    assert f"Your new anonymous alias is {alias.email}" in listing.text

    for action, disabled in (("disable", True), ("enable", False)):

        async def act(http: httpx.AsyncClient, action: str = action) -> httpx.Response:
            url = f"/admin/anonalias/{action}/{alias.email}"
            return await post_form(http, url, url, {})

        assert browse(gate, ANN, act).status_code == 303
        assert owned(gate, ANN)[0].disabled is disabled

    async def delete(http: httpx.AsyncClient) -> httpx.Response:
        url = f"/admin/anonalias/delete/{alias.email}"
        return await post_form(http, url, url, {})

    assert browse(gate, ANN, delete).status_code == 303
    assert owned(gate, ANN) == []


def test_nobody_reaches_another_users_alias(gate: GateHarness) -> None:
    grant(gate, ANON, ANN)
    with gate.store.session() as session:
        email = anonalias.create_anonymous_alias(
            session, ANN, ANON, hostname="", note="", retries=3
        ).email

    async def scenario(http: httpx.AsyncClient) -> list[int]:
        token = csrf_of(await http.get("/admin/anonalias/create"))
        codes = []
        for action in ("delete", "disable", "enable"):
            url = f"/admin/anonalias/{action}/{email}"
            codes.append((await http.get(url)).status_code)
            codes.append((await http.post(url, data={"csrf_token": token})).status_code)
        codes.append((await http.get(f"/admin/anonalias/delete/team@{DOMAIN}")).status_code)
        codes.append((await http.get(f"/admin/anonalias/explode/{email}")).status_code)
        return codes

    # BOSS is a global administrator: the pages are still only for the owner.
    assert browse(gate, BOSS, scenario) == [404] * 8
    assert [a.disabled for a in owned(gate, ANN)] == [False]


def test_a_post_without_the_csrf_token_changes_nothing(gate: GateHarness) -> None:
    grant(gate, ANON, ANN)

    async def scenario(http: httpx.AsyncClient) -> int:
        response = await http.post("/admin/anonalias/create", data={"domain": ANON})
        return response.status_code

    assert browse(gate, ANN, scenario) == 403
    assert owned(gate, ANN) == []


def test_a_domain_the_user_may_not_use_is_refused(gate: GateHarness) -> None:
    grant(gate, ANON, ANN)

    async def scenario(http: httpx.AsyncClient) -> httpx.Response:
        return await post_form(
            http, "/admin/anonalias/create", "/admin/anonalias/create", {"domain": OPEN}
        )

    response = browse(gate, ANN, scenario)
    assert response.status_code == 403
    assert "you may not create anonymous aliases in open.test" in response.text
    assert owned(gate, ANN) == []


# -- a domain's grants -----------------------------------------------------------------------


def test_grants_are_for_the_domains_managers_and_global_administrators(gate: GateHarness) -> None:
    async def scenario(http: httpx.AsyncClient) -> list[int]:
        return [
            (await http.get(f"/admin/domain/access/list/{ANON}")).status_code,
            (await http.get(f"/admin/domain/access/list/{OPEN}")).status_code,
            (await http.get("/admin/domain/access/list/nothing.test")).status_code,
        ]

    assert browse(gate, MGR, scenario) == [200, 403, 404]
    assert browse(gate, BOSS, scenario) == [200, 200, 404]
    assert browse(gate, ANN, scenario) == [403, 403, 403]


def test_a_manager_grants_and_revokes_with_the_form(gate: GateHarness) -> None:
    async def scenario(http: httpx.AsyncClient) -> tuple[httpx.Response, str]:
        form_url = f"/admin/domain/access/create/{ANON}"
        done = await post_form(http, form_url, form_url, {"user": ANN})
        again = await post_form(http, form_url, form_url, {"user": ANN})
        assert again.status_code == 409
        assert "already" in again.text
        unknown = await post_form(http, form_url, form_url, {"user": f"ghost@{ANON}"})
        assert unknown.status_code == 404
        return done, (await http.get(f"/admin/domain/access/list/{ANON}")).text

    done, listing = browse(gate, MGR, scenario)
    assert done.status_code == 303
    assert ANN in listing
    with gate.store.session() as session:
        assert anonmail_domains(session, ANN) == [ANON]
        (row,) = session.scalars(select(DomainAccess))
        grant_id = row.id

    async def revoke(http: httpx.AsyncClient) -> httpx.Response:
        url = f"/admin/domain/access/delete/{ANON}/{grant_id}"
        return await post_form(http, url, url, {})

    assert browse(gate, MGR, revoke).status_code == 303
    with gate.store.session() as session:
        assert anonmail_domains(session, ANN) == []


def test_grants_take_json_too(gate: GateHarness) -> None:
    async def scenario(http: httpx.AsyncClient) -> list[httpx.Response]:
        page = await http.get(f"/admin/domain/access/list/{ANON}")
        headers = {"X-CSRF-Token": csrf_of(await http.get(f"/admin/domain/access/create/{ANON}"))}
        url = f"/admin/domain/access/create/{ANON}"
        assert page.status_code == 200
        return [
            await http.post(url, json={"user": ANN}, headers=headers),
            await http.post(url, json={"user": ANN}, headers=headers),
            await http.post(url, json={}, headers=headers),
            await http.post(url, json={"user": f"ghost@{ANON}"}, headers=headers),
            await http.post(url, json={"user": BOB}),  # no CSRF token
        ]

    created, duplicate, missing, unknown, forged = browse(gate, MGR, scenario)
    assert created.status_code == 201
    assert created.json()["user_email"] == ANN
    assert isinstance(created.json()["id"], int)
    assert duplicate.status_code == 409
    assert missing.status_code == 400
    assert unknown.status_code == 404
    assert forged.status_code == 403
    with gate.store.session() as session:
        assert anonmail_domains(session, BOB) == []


# -- POST /api/alias/random/new --------------------------------------------------------------


def test_an_app_token_creates_an_alias_for_a_site(gate: GateHarness) -> None:
    grant(gate, ANON, ANN)
    response = call(gate, f"{ANN}:{ANN_TOKEN}", query="?hostname=github.com")
    assert response.status_code == 201, response.text
    body = response.json()
    assert re.fullmatch(r"github\.[a-z]{5,10}@anon\.test", body["email"])
    assert body["alias"] == body["email"]
    assert body["enabled"] is True
    assert body["note"] == "Website: github.com"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d 00:00:00", body["creation_date"])
    assert body["creation_timestamp"] % 86400 == 0
    assert (body["nb_forward"], body["nb_block"], body["nb_reply"]) == (0, 0, 0)
    (alias,) = owned(gate, ANN)
    assert (alias.email, alias.hostname, alias.comment) == (
        body["email"],
        "github.com",
        "Website: github.com",
    )
    assert alias.destination == [ANN]


def test_the_note_is_taken_from_the_body_and_the_halves_are_unquoted(gate: GateHarness) -> None:
    response = call(
        gate,
        f"{OLI.replace('@', '%40')}:{OLI_TOKEN}",
        body={"note": "for the shop"},
    )
    assert response.status_code == 201, response.text
    email = response.json()["email"]
    assert re.fullmatch(r"[a-z0-9]{16}@open\.test", email)
    (alias,) = owned(gate, OLI)
    assert (alias.hostname, alias.comment) == ("", "for the shop")


def test_a_session_with_its_csrf_token_may_call_too(gate: GateHarness) -> None:
    async def scenario(http: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        token = csrf_of(await http.get("/admin/anonalias/create"))
        forged = await http.post(NEW)
        good = await http.post(NEW + "?hostname=example.org", headers={"X-CSRF-Token": token})
        return forged, good

    forged, good = browse(gate, OLI, scenario)
    assert forged.status_code == 403
    assert good.status_code == 201, good.text
    assert good.json()["email"].startswith("example.")


@pytest.mark.parametrize(
    ("auth", "status", "message"),
    [
        (None, 401, "A valid Authentication header is mandatory"),
        (ANN, 401, "Invalid credentials format (expected email:token)"),
        (f"{ANN}:", 401, "Invalid credentials format (expected email:token)"),
        (f"{ANN}:{BOB_TOKEN}", 403, "Invalid credentials"),
        (f"{ANN}:{PASSWORD}", 403, "Invalid credentials"),
        (f"{ANN}:{FENCED_TOKEN}", 403, "Invalid credentials"),
        (f"ghost@{DOMAIN}:{ANN_TOKEN}", 403, "Invalid credentials"),
    ],
)
def test_bad_credentials_are_refused(
    gate: GateHarness, auth: str | None, status: int, message: str
) -> None:
    grant(gate, ANON, ANN)
    response = call(gate, auth)
    assert response.status_code == status
    assert response.json() == {"message": message}
    assert owned(gate, ANN) == []


def test_a_token_works_from_its_network(gate: GateHarness) -> None:
    grant(gate, ANON, ANN)
    response = call(gate, f"{ANN}:{FENCED_TOKEN}", client="192.0.2.7")
    assert response.status_code == 201, response.text


def test_a_disabled_account_is_refused(gate: GateHarness) -> None:
    grant(gate, ANON, ANN)
    set_enabled(gate, ANN, False)
    response = call(gate, f"{ANN}:{ANN_TOKEN}")
    assert response.status_code == 403
    assert response.json() == {"message": "Invalid credentials"}


def test_a_user_without_access_gets_403(gate: GateHarness) -> None:
    response = call(gate, f"{BOB}:{BOB_TOKEN}")
    assert response.status_code == 403
    assert response.json() == {
        "code": 403,
        "message": "You do not have access to any domains for creating aliases",
    }


def test_a_catch_all_leaves_no_room(gate: GateHarness) -> None:
    # populate() gave other.test the catch-all %@other.test.
    grant(gate, "other.test", BOB)
    response = call(gate, f"{BOB}:{BOB_TOKEN}", ANONMAIL_MAX_RETRIES=3)
    assert response.status_code == 409
    assert response.json() == {
        "code": 409,
        "message": "Unable to find a unique alias after several retries",
    }
    assert owned(gate, BOB) == []


def test_a_bad_body_is_a_400(gate: GateHarness) -> None:
    grant(gate, ANON, ANN)
    for body in (["x"], {"note": 5}, {"note": "x" * 300}):
        response = call(gate, f"{ANN}:{ANN_TOKEN}", body=body)
        assert response.status_code == 400, body
        assert response.json()["code"] == 400
    assert owned(gate, ANN) == []


def test_guessing_is_rate_limited_but_a_real_token_still_works(gate: GateHarness) -> None:
    grant(gate, ANON, ANN)
    guesser = "203.0.113.9"
    # AUTH_RATELIMIT_IP is 5/hour in these tests: five distinct names spend the network.
    for n in range(5):
        response = call(gate, f"nobody{n}@{DOMAIN}:{BOB_TOKEN}", client=guesser)
        assert response.status_code == 403
    assert call(gate, None, client=guesser).status_code == 429
    assert call(gate, "junk", client=guesser).status_code == 429
    assert call(gate, f"{BOB}:{ANN_TOKEN}", client=guesser).status_code == 429
    assert call(gate, f"{ANN}:{ANN_TOKEN}", client=guesser).status_code == 201
    assert call(gate, None).status_code == 401  # another network


def test_the_endpoint_needs_api_on(gate: GateHarness) -> None:
    grant(gate, ANON, ANN)
    response = call(gate, f"{ANN}:{ANN_TOKEN}", API=False)
    assert response.status_code == 404
    assert owned(gate, ANN) == []
