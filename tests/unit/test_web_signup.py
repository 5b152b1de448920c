"""Sign-up pages against a real gate, Redis, store and a local DNS server: who may sign up
where, the limits and duplicates (wildcard aliases included), CSRF, the sign-up window and
that it never closes sign-in, DOMAIN_REGISTRATION and the MX check both ways.

Driven in process with httpx, as tests/unit/test_web_admin.py does.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
from dnslib import QTYPE, RCODE, RR, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer
from sqlalchemy import select, update

from roost.dnscheck import ResolverAddress
from roost.gate.control import request_reload
from roost.settings import Settings
from roost.store.entities import signup as signups
from roost.store.entities.names import ManageError
from roost.store.models import Domain, User
from roost.web.app import create_app
from tests.unit.test_gate_support import (
    GateHarness,
    add_alias,
    add_user,
    flush_limits,
    running_gate,
    settings_with,
)
from tests.unit.web_harness import csrf_of, post_form, user_row

BASE = "https://mail.example.test"
ADMIN = "/admin"
CLIENT = "198.51.100.77"
PASSWORD = "a-good-password"
HOSTNAME = "mail.example.test"
OPEN = "open.test"
CAPPED = "capped.test"
FULL = "full.test"
CLOSED = "closed.test"
CATCHALL = "catchall.test"
OWNER = f"owner@{OPEN}"

#: Domains a registration may name: one points its MX here, one elsewhere, one has none.
ZONE = f"""
good.test. 600 IN MX 10 {HOSTNAME}.
good2.test. 600 IN MX 10 MAIL.EXAMPLE.TEST.
mine.test. 600 IN MX 10 {HOSTNAME}.
elsewhere.test. 600 IN MX 10 mx.elsewhere.test.
bare.test. 600 IN A 192.0.2.1
"""


class Zone(BaseResolver):
    """Authoritative answers from ZONE; SERVFAIL for servfail.test."""

    def __init__(self) -> None:
        self.zone = list(RR.fromZone(ZONE))

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        qname, qtype = str(request.q.qname).lower(), QTYPE[request.q.qtype]
        reply = request.reply()
        if qname == "servfail.test.":
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        named = [rr for rr in self.zone if str(rr.rname).lower() == qname]
        if not named:
            reply.header.rcode = RCODE.NXDOMAIN
        for rr in named:
            if QTYPE[rr.rtype] == qtype:
                reply.add_answer(rr)
        return reply


@pytest.fixture(scope="module")
def dns_server() -> Iterator[ResolverAddress]:
    host = "127.0.42.53"
    try:
        server = DNSServer(Zone(), address=host, port=0, logger=DNSLogger("-request,-reply"))
    except OSError:
        host = "127.0.0.1"
        server = DNSServer(Zone(), address=host, port=0, logger=DNSLogger("-request,-reply"))
    server.start_thread()
    try:
        yield ResolverAddress(host, server.server.server_address[1])
    finally:
        server.stop()
        server.server.server_close()


def _domain(gate: GateHarness, name: str, **columns: Any) -> None:
    with gate.store.session() as session:
        session.add(Domain(name=name, **columns))


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateHarness]:
    with running_gate(
        tmp_path_factory.mktemp("signup"), "127.0.42.61", HOSTNAMES=(HOSTNAME,)
    ) as harness:
        _domain(harness, OPEN, signup_enabled=True)
        _domain(harness, CAPPED, signup_enabled=True, max_quota_bytes=500_000_000)
        _domain(harness, FULL, signup_enabled=True, max_users=1)
        _domain(harness, CLOSED)
        _domain(harness, CATCHALL, signup_enabled=True)
        add_user(harness.store, OWNER, PASSWORD)
        add_user(harness.store, f"one@{FULL}", PASSWORD)
        add_alias(harness.store, f"team@{OPEN}", [OWNER])
        add_alias(harness.store, f"sales%@{OPEN}", [OWNER], wildcard=True)
        add_alias(harness.store, f"%@{CATCHALL}", [OWNER], wildcard=True)
        request_reload(harness.layout)
        yield harness


@pytest.fixture(autouse=True)
def fresh_limits(gate: GateHarness) -> None:
    flush_limits(gate)


Scenario = Callable[[httpx.AsyncClient], Awaitable[Any]]


def browse(
    gate: GateHarness,
    scenario: Scenario,
    *,
    settings: Settings | None = None,
    resolver: ResolverAddress | None = None,
    who: str | None = None,
    client: str = CLIENT,
) -> Any:
    """Run ``scenario`` in a browser of its own (signed in as ``who`` first, if given)."""

    async def go() -> Any:
        app = create_app(settings or gate.settings)
        app.state.dns_resolver = resolver
        transport = httpx.ASGITransport(app=app, client=(client, 5555))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            try:
                if who is not None:
                    signed = await sign_in(http, who, PASSWORD)
                    assert signed.status_code == 303, signed.text
                return await scenario(http)
            finally:
                await app.state.sessions.close()
                limiter = getattr(app.state, "signup_limiter", None)
                if limiter is not None:
                    await limiter.close()

    return asyncio.run(go())


async def sign_in(http: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    page = await http.get("/sso/login")
    data = {"email": email, "password": password, "csrf_token": csrf_of(page)}
    return await http.post("/sso/login", data=data)


def signup(local: str, password: str = PASSWORD, again: str | None = None) -> dict[str, str]:
    return {"localpart": local, "password": password, "password2": again or password}


def domain_row(gate: GateHarness, name: str) -> Domain | None:
    with gate.store.session() as session:
        domain = session.get(Domain, name)
        if domain is not None:
            session.expunge(domain)
        return domain


def limiter_keys(gate: GateHarness) -> list[str]:
    client = redis.Redis(unix_socket_path=str(gate.layout.redis_socket), db=2)
    try:
        return sorted(k.decode() for k in client.keys("*"))
    finally:
        client.close()


# -- user sign-up --------------------------------------------------------------------------


def test_nobody_signs_up_where_no_domain_takes_sign_ups(gate: GateHarness) -> None:
    with gate.store.session() as session:
        opened = list(session.scalars(select(Domain.name).where(Domain.signup_enabled)))
        session.execute(update(Domain).values(signup_enabled=False))
    try:

        async def look(http: httpx.AsyncClient) -> tuple[httpx.Response, ...]:
            return (
                await http.get(f"{ADMIN}/user/signup"),
                await http.get(f"{ADMIN}/user/signup/{OPEN}"),
                await http.get("/sso/login"),
            )

        choice, form, login = browse(gate, look)
        assert choice.status_code == 404 and "no domain takes new accounts" in choice.text
        assert form.status_code == 404
        assert login.status_code == 200 and "/user/signup" not in login.text
        assert "Sign up" not in login.text
    finally:
        with gate.store.session() as session:
            session.execute(
                update(Domain).where(Domain.name.in_(opened)).values(signup_enabled=True)
            )


def test_the_sign_in_page_links_to_sign_up_and_the_choice_lists_open_domains(
    gate: GateHarness,
) -> None:
    async def look(http: httpx.AsyncClient) -> tuple[httpx.Response, ...]:
        return await http.get("/sso/login"), await http.get(f"{ADMIN}/user/signup")

    login, choice = browse(gate, look)
    assert f'href="{ADMIN}/user/signup"' in login.text and ">Sign up</a>" in login.text
    assert "/domain/signup" not in login.text  # DOMAIN_REGISTRATION is off
    assert choice.status_code == 200
    links = re.findall(rf'href="{ADMIN}/user/signup/([^"]+)"', choice.text)
    assert links == [CAPPED, CATCHALL, OPEN]  # full.test is full, closed.test is closed
    for closed in (CLOSED, "nowhere.test", "bad..name"):
        page = browse(gate, lambda h, d=closed: h.get(f"{ADMIN}/user/signup/{d}"))
        assert page.status_code == 404, closed
    full = browse(gate, lambda h: h.get(f"{ADMIN}/user/signup/{FULL}"))
    assert full.status_code == 409 and "full" in full.text


def test_a_visitor_signs_up_and_must_choose_a_new_password_at_sign_in(
    gate: GateHarness, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{ADMIN}/user/signup/{OPEN}"
    with caplog.at_level(logging.INFO, logger="roost.web"):
        done = browse(gate, lambda h: post_form(h, url, url, signup("New.Comer")))
    assert (done.status_code, done.headers["location"]) == (303, "/sso/login?msg=signed-up")
    user = user_row(gate, f"new.comer@{OPEN}")
    assert user is not None and user.enabled and not user.global_admin
    assert user.change_pw_next_login is True
    assert user.quota_bytes == gate.settings.DEFAULT_QUOTA  # the domain has no cap
    lines = [r.getMessage() for r in caplog.records if "Sign-up" in r.getMessage()]
    assert lines == [f"Sign-up: user new.comer@{OPEN} created from: {CLIENT}/5555"]
    assert all(PASSWORD not in r.getMessage() for r in caplog.records)

    async def come_back(http: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        notice = await http.get("/sso/login?msg=signed-up")
        return notice, await sign_in(http, f"new.comer@{OPEN}", PASSWORD)

    notice, signed = browse(gate, come_back)
    assert "Your account is ready" in notice.text
    assert (signed.status_code, signed.headers["location"]) == (303, "/sso/pw_change")


def test_the_quota_is_the_domains_cap(gate: GateHarness) -> None:
    url = f"{ADMIN}/user/signup/{CAPPED}"
    done = browse(gate, lambda h: post_form(h, url, url, signup("capper")))
    assert done.status_code == 303
    user = user_row(gate, f"capper@{CAPPED}")
    assert user is not None and user.quota_bytes == 500_000_000


@pytest.mark.parametrize(
    ("domain", "local", "why"),
    [
        (OPEN, "owner", "already a user"),
        (OPEN, "OWNER", "already a user"),
        (OPEN, "team", "already an alias"),
        (OPEN, "sales-east", f"taken by the alias 'sales%@{OPEN}'"),
        (OPEN, "SALES", f"taken by the alias 'sales%@{OPEN}'"),
        (CATCHALL, "anyone", f"taken by the alias '%@{CATCHALL}'"),
    ],
)
def test_a_taken_address_is_refused(gate: GateHarness, domain: str, local: str, why: str) -> None:
    url = f"{ADMIN}/user/signup/{domain}"
    page = browse(gate, lambda h: post_form(h, url, url, signup(local)))
    assert page.status_code == 409 and why in html.unescape(page.text), page.text
    assert user_row(gate, f"{local.lower()}@{domain}") is None or local.lower() == "owner"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (signup("shorty", "short"), "too short: at least 8 characters"),
        (signup("twins", PASSWORD, PASSWORD + "x"), "The two passwords differ"),
        (signup("spacey", " " + PASSWORD), "must not begin or end with a space"),
        (signup("bad local"), "The address"),
        (signup(""), "The address"),
    ],
)
def test_bad_forms_are_refused_before_anything_is_spent(
    gate: GateHarness, data: dict[str, str], why: str
) -> None:
    url = f"{ADMIN}/user/signup/{OPEN}"
    page = browse(gate, lambda h: post_form(h, url, url, data))
    assert page.status_code == 400 and why in html.unescape(page.text), page.text
    assert user_row(gate, f"{data['localpart']}@{OPEN}") is None
    assert not [k for k in limiter_keys(gate) if "signup" in k]


def test_a_full_domain_takes_nobody_through_the_user_entity(gate: GateHarness) -> None:
    """The room check is the user entity's: the same for a sign-up as for the CLI/API."""
    with gate.store.session() as session:
        with pytest.raises(ManageError, match="already has its maximum of 1 users"):
            signups.sign_up_user(session, gate.settings, "two", FULL, PASSWORD)
        session.rollback()
        with pytest.raises(ManageError, match="does not take sign-ups"):
            signups.sign_up_user(session, gate.settings, "who", CLOSED, PASSWORD)
        session.rollback()
    # A domain that filled up between the form and the post.
    with gate.store.session() as session:
        session.execute(update(Domain).where(Domain.name == OPEN).values(max_users=1))
    try:
        url = f"{ADMIN}/user/signup/{OPEN}"

        async def race(http: httpx.AsyncClient) -> httpx.Response:
            page = await http.get(f"{ADMIN}/user/signup/{CAPPED}")
            return await http.post(url, data={**signup("late"), "csrf_token": csrf_of(page)})

        page = browse(gate, race)
        assert page.status_code == 409 and "full" in page.text
    finally:
        with gate.store.session() as session:
            session.execute(update(Domain).where(Domain.name == OPEN).values(max_users=-1))
    assert user_row(gate, f"late@{OPEN}") is None


def test_a_form_without_its_token_is_refused(gate: GateHarness) -> None:
    url = f"{ADMIN}/user/signup/{OPEN}"

    async def forge(http: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        bare = await http.post(url, data=signup("forged"))
        wrong = await http.post(url, data={**signup("forged"), "csrf_token": "x" * 43})
        return bare, wrong

    for page in browse(gate, forge):
        assert page.status_code == 403
    assert user_row(gate, f"forged@{OPEN}") is None


def test_the_sign_up_window_stops_a_flood_and_never_closes_sign_in(gate: GateHarness) -> None:
    """AUTH_RATELIMIT_IP is 5/hour here: five attempts from a network, then 429; the
    network's people still sign in, and another network still signs up."""
    url = f"{ADMIN}/user/signup/{OPEN}"

    async def flood(http: httpx.AsyncClient) -> list[httpx.Response]:
        page = await http.get(url)
        token = csrf_of(page)
        answers = []
        for n in range(7):
            data = {**signup(f"spam{n}"), "csrf_token": token}
            answers.append(await http.post(url, data=data))
        return answers

    answers = browse(gate, flood)
    assert [a.status_code for a in answers] == [303] * 5 + [429] * 2
    assert "Too many sign-ups from your network" in answers[5].text
    assert user_row(gate, f"spam4@{OPEN}") is not None and user_row(gate, f"spam5@{OPEN}") is None
    keys = limiter_keys(gate)
    assert keys == ["LIMITER/signup/198.51.100.0/24/5/3600"], keys
    # Same /24, another address: sign-in goes on; sign-up stays closed.
    neighbour = "198.51.100.200"
    signed = browse(gate, lambda h: sign_in(h, OWNER, PASSWORD), client=neighbour)
    assert (signed.status_code, signed.headers["location"]) == (303, f"{ADMIN}/")
    again = browse(gate, lambda h: post_form(h, url, url, signup("spam9")), client=neighbour)
    assert again.status_code == 429
    elsewhere = browse(
        gate, lambda h: post_form(h, url, url, signup("honest")), client="203.0.113.9"
    )
    assert elsewhere.status_code == 303


def test_exempt_networks_are_not_counted(gate: GateHarness) -> None:
    settings = settings_with(gate.settings, AUTH_RATELIMIT_EXEMPTION=("198.51.100.0/24",))
    url = f"{ADMIN}/user/signup/{OPEN}"

    async def many(http: httpx.AsyncClient) -> list[int]:
        token = csrf_of(await http.get(url))
        return [
            (await http.post(url, data={**signup(f"ex{n}"), "csrf_token": token})).status_code
            for n in range(6)
        ]

    assert browse(gate, many, settings=settings) == [303] * 6
    assert limiter_keys(gate) == []


# -- domain registration -------------------------------------------------------------------


def registration(gate: GateHarness) -> Settings:
    return settings_with(gate.settings, DOMAIN_REGISTRATION=True)


def test_domain_registration_is_off_by_default(gate: GateHarness) -> None:
    async def look(http: httpx.AsyncClient) -> tuple[httpx.Response, ...]:
        token = csrf_of(await http.get("/sso/login"))
        data = {"domain": "good.test", "localpart": "me", "password": PASSWORD}
        return (
            await http.get(f"{ADMIN}/domain/signup"),
            await http.post(f"{ADMIN}/domain/signup", data={**data, "csrf_token": token}),
        )

    for page in browse(gate, look):
        assert page.status_code == 404
    assert domain_row(gate, "good.test") is None


def test_a_visitor_registers_a_domain_whose_mx_points_here(
    gate: GateHarness, dns_server: ResolverAddress, caplog: pytest.LogCaptureFixture
) -> None:
    settings = registration(gate)
    login = browse(gate, lambda h: h.get("/sso/login"), settings=settings)
    assert f'href="{ADMIN}/domain/signup"' in login.text
    data = {"domain": "Good.Test", "localpart": "boss", "password": PASSWORD}
    data["password2"] = PASSWORD
    url = f"{ADMIN}/domain/signup"
    with caplog.at_level(logging.INFO, logger="roost.web"):
        done = browse(
            gate, lambda h: post_form(h, url, url, data), settings=settings, resolver=dns_server
        )
    assert (done.status_code, done.headers["location"]) == (303, "/sso/login?msg=registered")
    domain = domain_row(gate, "good.test")
    assert domain is not None
    assert (domain.max_users, domain.max_aliases, domain.max_quota_bytes) == (
        10,
        10,
        gate.settings.DEFAULT_QUOTA,
    )
    assert not domain.signup_enabled
    user = user_row(gate, "boss@good.test")
    assert user is not None and not user.change_pw_next_login and not user.global_admin
    with gate.store.session() as session:
        managed = session.get(User, "boss@good.test")
        assert managed is not None and [d.name for d in managed.manager_of] == ["good.test"]
    assert [r.getMessage() for r in caplog.records if "Sign-up" in r.getMessage()] == [
        f"Sign-up: domain good.test registered for boss@good.test from: {CLIENT}/5555"
    ]
    # The new manager signs in straight away and sees the domain.
    page = browse(gate, lambda h: h.get(f"{ADMIN}/domain"), settings=settings, who="boss@good.test")
    assert page.status_code == 200 and "good.test" in page.text


def test_a_signed_in_user_registers_a_domain_and_manages_it(
    gate: GateHarness, dns_server: ResolverAddress
) -> None:
    settings = registration(gate)
    url = f"{ADMIN}/domain/signup"

    async def register(http: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        form = await http.get(url)
        assert 'name="password"' not in form.text and OWNER in form.text
        done = await http.post(url, data={"domain": "mine.test", "csrf_token": csrf_of(form)})
        return done, await http.get(done.headers["location"])

    done, details = browse(gate, register, settings=settings, resolver=dns_server, who=OWNER)
    assert (done.status_code, done.headers["location"]) == (
        303,
        f"{ADMIN}/domain/details/mine.test",
    )
    assert details.status_code == 200 and "The domain mine.test is registered." in details.text
    with gate.store.session() as session:
        owner = session.get(User, OWNER)
        assert owner is not None and "mine.test" in [d.name for d in owner.manager_of]
        assert session.scalar(select(User.email).where(User.domain_name == "mine.test")) is None


@pytest.mark.parametrize(
    ("name", "status", "why"),
    [
        ("elsewhere.test", 409, "The MX record was not properly set"),
        ("bare.test", 409, "(found: none)"),
        ("nowhere.test", 409, "The MX record was not properly set"),
        ("servfail.test", 503, "could not be looked up"),
        (OPEN, 400, "'open.test' is already a domain"),
        ("relayed.test", 400, "'relayed.test' is already a relayed domain"),
        ("alt.example.test", 400, "already an alternative domain"),
        ("not a domain", 400, ""),
    ],
)
def test_a_registration_is_refused(
    gate: GateHarness, dns_server: ResolverAddress, name: str, status: int, why: str
) -> None:
    settings = registration(gate)
    data = {"domain": name, "localpart": "me", "password": PASSWORD, "password2": PASSWORD}
    url = f"{ADMIN}/domain/signup"
    page = browse(
        gate, lambda h: post_form(h, url, url, data), settings=settings, resolver=dns_server
    )
    assert page.status_code == status and why in html.unescape(page.text), page.text
    assert user_row(gate, f"me@{name}") is None


def test_the_mx_check_accepts_any_case_and_the_window_counts_registrations(
    gate: GateHarness, dns_server: ResolverAddress
) -> None:
    settings = registration(gate)
    url = f"{ADMIN}/domain/signup"

    async def several(http: httpx.AsyncClient) -> list[int]:
        token = csrf_of(await http.get(url))
        codes = []
        for name in (
            "good2.test",
            "elsewhere.test",
            "elsewhere.test",
            "x.test",
            "y.test",
            "w.test",
        ):
            data = {"domain": name, "localpart": "me", "password": PASSWORD}
            data.update(password2=PASSWORD, csrf_token=token)
            codes.append((await http.post(url, data=data)).status_code)
        return codes

    assert browse(gate, several, settings=settings, resolver=dns_server) == [
        303,
        409,
        409,
        409,
        409,
        429,
    ]
    assert domain_row(gate, "good2.test") is not None


def test_a_short_password_or_bad_local_part_registers_nothing(
    gate: GateHarness, dns_server: ResolverAddress
) -> None:
    settings = registration(gate)
    url = f"{ADMIN}/domain/signup"
    for data, why in (
        ({"domain": "good9.test", "localpart": "me", "password": "short"}, "too short"),
        ({"domain": "new1.test", "localpart": "a b", "password": PASSWORD}, ""),
    ):
        data["password2"] = data["password"]
        page = browse(
            gate,
            lambda h, d=data: post_form(h, url, url, d),
            settings=settings,
            resolver=dns_server,
        )
        assert page.status_code == 400 and why in html.unescape(page.text)
    assert domain_row(gate, "new1.test") is None
    assert not [k for k in limiter_keys(gate) if "signup" in k]


def test_registration_forms_need_their_token(
    gate: GateHarness, dns_server: ResolverAddress
) -> None:
    settings = registration(gate)
    data = {"domain": "good3.test", "localpart": "me", "password": PASSWORD}
    page = browse(
        gate,
        lambda h: h.post(f"{ADMIN}/domain/signup", data={**data, "password2": PASSWORD}),
        settings=settings,
        resolver=dns_server,
    )
    assert page.status_code == 403
    assert domain_row(gate, "good3.test") is None
