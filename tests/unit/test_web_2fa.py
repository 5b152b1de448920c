"""Two-factor web login against a real gate, Redis and store: the /sso/2fa code step, the
forced enrolment, the account pages, and wrong codes spending the login budget.

Driven in process (httpx's ASGI transport) as tests/unit/test_web_app.py is; the gate runs
with its Redis, so a wrong code is counted in the same Redis windows as a wrong password.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterator

import httpx
import pyotp
import pytest
import redis

from roost.gate.auth import SECOND_FACTOR_HEADER, SECOND_FACTOR_KEY_HEADER
from roost.gate.control import request_reload
from roost.store import work
from roost.store.entities import domain as domains
from roost.store.entities import user as users
from roost.web.gatelogin import GateClient, Verdict, WebLogin
from roost.web.sso import twofactor
from tests.unit.test_gate_support import (
    DOMAIN,
    GateHarness,
    add_domain,
    add_user,
    flush_limits,
    running_gate,
)
from tests.unit.test_web_app import COOKIE, browse, csrf_of, gate_lines, sign_in

FORCED_DOMAIN = "forced.test"
PASSWORD = "two-factor-pw-1"


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateHarness]:
    with running_gate(tmp_path_factory.mktemp("web2fa"), "127.0.26.50") as harness:
        for name in ("alice", "bob", "carol", "dave", "erin", "frank", "gina", "plain"):
            add_user(harness.store, f"{name}@{DOMAIN}", PASSWORD)
        add_domain(harness.store, FORCED_DOMAIN)
        add_user(harness.store, f"new@{FORCED_DOMAIN}", PASSWORD)
        with work.change(harness.settings) as db:
            domains.set_totp_required(db, FORCED_DOMAIN, True)
        request_reload(harness.layout)
        yield harness


@pytest.fixture(autouse=True)
def fresh_limits(gate: GateHarness, caplog: pytest.LogCaptureFixture) -> None:
    flush_limits(gate)
    caplog.set_level(logging.INFO, logger="roost.gate")


def enrol(gate: GateHarness, email: str) -> tuple[pyotp.TOTP, list[str]]:
    """Two-factor login on for ``email``, confirmed three steps ago (so now's code works)."""
    with work.change(gate.settings) as db:
        if users.two_factor_status(db, gate.settings, email).enabled:
            users.disable_two_factor(db, email)
    with work.change(gate.settings) as db:
        enrolment = users.begin_enrolment(db, gate.settings, email)
    app = pyotp.TOTP(enrolment.secret)
    earlier = time.time() - 90
    with work.change(gate.settings) as db:
        codes = users.confirm_enrolment(db, gate.settings, email, app.at(earlier), now=earlier)
    request_reload(gate.layout)
    return app, codes


def wrong_code(app: pyotp.TOTP, n: int) -> str:
    """A code that is none of the accepted steps' (now, and one step either side)."""
    taken = {app.at(time.time() + d) for d in (-30, 0, 30, 60)}
    candidates = (f"{(int(app.now()) + 1 + 7919 * i) % 1_000_000:06d}" for i in range(100))
    return [c for c in candidates if c not in taken][n]


async def post_code(client: httpx.AsyncClient, code: str) -> httpx.Response:
    page = await client.get("/sso/2fa")
    assert page.status_code == 200, page.text
    return await client.post("/sso/2fa", data={"code": code, "csrf_token": csrf_of(page)})


def limiter_keys(gate: GateHarness, pattern: str) -> list[bytes]:
    client = redis.Redis(unix_socket_path=str(gate.layout.redis_socket), db=2)
    try:
        return list(client.scan_iter(pattern))
    finally:
        client.close()


# -- the code step ---------------------------------------------------------------------------


def test_password_then_code_signs_in_under_a_new_session(
    gate: GateHarness, caplog: pytest.LogCaptureFixture
) -> None:
    email = f"alice@{DOMAIN}"
    app, _ = enrol(gate, email)

    async def scenario(client: httpx.AsyncClient) -> None:
        answer = await sign_in(client, email, PASSWORD, url="/admin/account")
        assert answer.status_code == 303 and answer.headers["location"] == "/sso/2fa"
        pending_id = client.cookies.get(COOKIE)
        # The password alone signs nobody in.
        account = await client.get("/admin/account")
        assert account.status_code == 303 and "/sso/login" in account.headers["location"]
        page = await client.get("/sso/2fa")
        assert "authenticator app" in page.text and 'name="code"' in page.text
        done = await post_code(client, app.now())
        assert done.status_code == 303 and done.headers["location"] == "/admin/account"
        assert client.cookies.get(COOKIE) not in (None, pending_id)
        account = await client.get("/admin/account")
        assert account.status_code == 200 and email in account.text
        # The code step is over: /sso/2fa no longer takes codes for this session.
        again = await client.get("/sso/2fa")
        assert again.status_code == 303 and "msg=expired" in again.headers["location"]

    browse(gate, scenario)
    lines = gate_lines(caplog)
    assert any(f"{email}/web/443" in x and "second factor: required" in x for x in lines)
    assert any(f"{email}/web/443" in x and "success: second factor" in x for x in lines)


def test_a_code_is_accepted_once(gate: GateHarness) -> None:
    email = f"bob@{DOMAIN}"
    app, _ = enrol(gate, email)
    code = app.now()

    async def first(client: httpx.AsyncClient) -> int:
        await sign_in(client, email, PASSWORD)
        return (await post_code(client, code)).status_code

    async def replay(client: httpx.AsyncClient) -> httpx.Response:
        await sign_in(client, email, PASSWORD)
        return await post_code(client, code)

    assert browse(gate, first) == 303
    refused = browse(gate, replay, ip="198.51.100.9")
    assert refused.status_code == 401 and "not right" in refused.text


def test_a_recovery_code_works_once(gate: GateHarness) -> None:
    email = f"carol@{DOMAIN}"
    _, codes = enrol(gate, email)

    async def use(client: httpx.AsyncClient) -> int:
        await sign_in(client, email, PASSWORD)
        answer = await post_code(client, codes[0].upper())  # typed as printed, any case
        return answer.status_code

    assert browse(gate, use) == 303
    assert browse(gate, use) == 401
    with work.read(gate.settings) as db:
        assert users.two_factor_status(db, gate.settings, email).recovery_codes_left == 9


def test_wrong_codes_spend_the_account_budget_then_even_a_right_code_is_refused(
    gate: GateHarness, caplog: pytest.LogCaptureFixture
) -> None:
    """AUTH_RATELIMIT_USER is 3/day here: three wrong codes, and the network is shut."""
    email = f"dave@{DOMAIN}"
    app, recovery = enrol(gate, email)

    def owner(code: str) -> int:
        async def scenario(client: httpx.AsyncClient) -> int:
            await sign_in(client, email, PASSWORD)
            return (await post_code(client, code)).status_code

        return int(browse(gate, scenario, ip="192.0.2.10"))

    # The owner signs in from home first: (home network, dave) becomes trusted.
    assert owner(app.now()) == 303

    async def guesser(client: httpx.AsyncClient) -> list[httpx.Response]:
        answer = await sign_in(client, email, PASSWORD)
        assert answer.headers["location"] == "/sso/2fa"
        answers = [await post_code(client, wrong_code(app, i)) for i in range(3)]
        answers.append(await post_code(client, app.now()))
        return answers

    answers = browse(gate, guesser, ip="203.0.113.5")
    assert [a.status_code for a in answers] == [401, 401, 401, 429]
    assert "Too many attempts" in answers[-1].text
    lines = gate_lines(caplog)
    failed = [
        x
        for x in lines
        if re.search(
            rf"Login attempt for: {re.escape(email)}/web/443 from: 203\.0\.113\.5/5555: "
            r"failed: badauth: [0-9a-f]{6} \(second factor refused\)",
            x,
        )
    ]
    assert len(failed) == 3
    assert any("203.0.113.5" in x and "has been rate-limited" in x for x in lines)
    # The guesser's network was never trusted (its password without the code earns nothing),
    assert not limiter_keys(gate, f"trusted-203.0.113.0/24-{email}")
    # and the owner still gets in from home (a recovery code: now's step is used up).
    assert owner(recovery[0]) == 303


def test_the_same_wrong_code_counts_again_in_another_time_step(gate: GateHarness) -> None:
    email = f"erin@{DOMAIN}"
    app, _ = enrol(gate, email)
    code = wrong_code(app, 0)

    async def guess(client: httpx.AsyncClient) -> int:
        await sign_in(client, email, PASSWORD)
        return (await post_code(client, code)).status_code

    before = len(limiter_keys(gate, f"dedup2-{email}-*"))
    if 30 - time.time() % 30 < 10:  # the two guesses must fall in one 30 s step
        time.sleep(30 - time.time() % 30 + 0.2)
    assert browse(gate, guess, ip="203.0.113.6") == 401
    assert browse(gate, guess, ip="203.0.113.6") == 401
    assert len(limiter_keys(gate, f"dedup2-{email}-*")) == before + 1  # same step: once
    time.sleep(30 - time.time() % 30 + 0.2)
    assert browse(gate, guess, ip="203.0.113.6") == 401
    assert len(limiter_keys(gate, f"dedup2-{email}-*")) == before + 2


def test_the_pending_step_expires_and_belongs_to_its_session(
    gate: GateHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = f"frank@{DOMAIN}"
    app, _ = enrol(gate, email)

    async def stranger(client: httpx.AsyncClient) -> httpx.Response:
        # Another browser (its own session and CSRF token) cannot finish frank's step.
        page = await client.get("/sso/login")
        return await client.post("/sso/2fa", data={"code": app.now(), "csrf_token": csrf_of(page)})

    answer = browse(gate, stranger)
    assert answer.status_code == 303 and "msg=expired" in answer.headers["location"]

    async def late(client: httpx.AsyncClient) -> httpx.Response:
        await sign_in(client, email, PASSWORD)
        page = await client.get("/sso/2fa")
        monkeypatch.setattr(twofactor, "PENDING_SECONDS", -1)
        return await client.post("/sso/2fa", data={"code": app.now(), "csrf_token": csrf_of(page)})

    answer = browse(gate, late)
    assert answer.status_code == 303 and "msg=expired" in answer.headers["location"]
    monkeypatch.setattr(twofactor, "PENDING_SECONDS", 300)
    # The expired attempt did not use the code up.
    with work.read(gate.settings) as db:
        assert users.verify_second_factor(db, gate.settings, email, app.now()) == "totp"


def test_the_code_step_needs_its_csrf_token_and_caps_wrong_codes(gate: GateHarness) -> None:
    email = f"gina@{DOMAIN}"
    app, _ = enrol(gate, email)

    async def scenario(client: httpx.AsyncClient) -> list[int]:
        await sign_in(client, email, PASSWORD)
        no_token = await client.post("/sso/2fa", data={"code": app.now()})
        statuses = [no_token.status_code]
        for i in range(twofactor.MAX_TRIES):
            statuses.append((await post_code(client, wrong_code(app, i))).status_code)
            flush_limits(gate)  # this test is about the session's own cap
        return statuses

    statuses = browse(gate, scenario, ip="203.0.113.7")
    assert statuses[0] == 403
    assert statuses[1:-1] == [401] * (twofactor.MAX_TRIES - 1)
    assert statuses[-1] == 303  # the session ended: the password must be given again


def test_second_factor_reports_need_the_web_applications_key(
    gate: GateHarness, caplog: pytest.LogCaptureFixture
) -> None:
    email = f"plain@{DOMAIN}"
    client = GateClient(gate.layout.gate_http_socket)
    login = WebLogin(user=email, password="123456", client_ip="203.0.113.8")

    async def ask(step: str, key: str) -> Verdict:
        extra = {SECOND_FACTOR_HEADER: step, SECOND_FACTOR_KEY_HEADER: key}
        return (await client.check(login, extra)).verdict

    # nginx (or anyone else on the socket) cannot make the key: nothing is counted or trusted.
    assert asyncio.run(ask("failed", "0" * 64)) is Verdict.BAD
    assert asyncio.run(ask("passed", "")) is Verdict.BAD
    assert not limiter_keys(gate, "LIMITER/auth-user/*")
    assert not limiter_keys(gate, "trusted-*")
    assert any("not the web application's" in x for x in gate_lines(caplog))
    key = twofactor.gate_key(gate.settings)
    assert asyncio.run(ask("failed", key)) is Verdict.BAD
    assert limiter_keys(gate, f"LIMITER/auth-user/{email}/*")
    assert asyncio.run(ask("check", key)) is Verdict.OK
    assert asyncio.run(ask("passed", key)) is Verdict.OK
    assert limiter_keys(gate, f"trusted-203.0.113.0/24-{email}")


# -- enrolment ------------------------------------------------------------------------------


def secret_of(page: httpx.Response) -> str:
    match = re.search(r'data-secret="([A-Z2-7]+)"', page.text)
    assert match, page.text
    return match.group(1)


def test_enrolment_on_the_account_page_renewal_and_turning_off(gate: GateHarness) -> None:
    email = f"plain@{DOMAIN}"
    with work.change(gate.settings) as db:
        users.disable_two_factor(db, email)

    async def scenario(client: httpx.AsyncClient) -> None:
        assert (await sign_in(client, email, PASSWORD)).status_code == 303
        page = await client.get("/admin/account")
        assert "/admin/account/2fa" in page.text
        page = await client.get("/admin/account/2fa")
        assert page.status_code == 200 and "Off" in page.text
        setup = await client.post("/admin/account/2fa/begin", data={"csrf_token": csrf_of(page)})
        assert setup.status_code == 200 and "<svg" in setup.text
        app = pyotp.TOTP(secret_of(setup))
        wrong = await client.post(
            "/admin/account/2fa/confirm",
            data={"code": wrong_code(app, 0), "csrf_token": csrf_of(setup)},
        )
        assert wrong.status_code == 400 and "current one" in wrong.text
        before = client.cookies.get(COOKIE)
        done = await client.post(
            "/admin/account/2fa/confirm", data={"code": app.now(), "csrf_token": csrf_of(setup)}
        )
        assert done.status_code == 200
        codes = re.findall(r"<li>([a-z2-7]{4}(?:-[a-z2-7]{4}){3})</li>", done.text)
        assert len(codes) == 10
        assert client.cookies.get(COOKIE) != before  # rotated
        page = await client.get("/admin/account/2fa")
        assert "On" in page.text and "Recovery codes left: <strong>10</strong>" in page.text
        assert not any(code in page.text for code in codes)  # shown once only
        # New codes and turning off ask for the password again.
        bad = await client.post(
            "/admin/account/2fa/recovery", data={"password": "nope", "csrf_token": csrf_of(page)}
        )
        assert bad.status_code == 401 and "password is wrong" in bad.text
        renewed = await client.post(
            "/admin/account/2fa/recovery", data={"password": PASSWORD, "csrf_token": csrf_of(page)}
        )
        fresh = re.findall(r"<li>([a-z2-7-]{19})</li>", renewed.text)
        assert len(fresh) == 10 and not set(fresh) & set(codes)
        with work.read(gate.settings) as db:
            assert users.verify_second_factor(db, gate.settings, email, codes[0]) is None
        off = await client.post(
            "/admin/account/2fa/disable", data={"password": PASSWORD, "csrf_token": csrf_of(page)}
        )
        assert off.status_code == 303 and off.headers["location"] == "/admin/account/2fa?msg=off"
        page = await client.get(off.headers["location"])
        assert "Two-factor login is off" in page.text

    browse(gate, scenario)


def test_a_required_user_enrols_before_anything_else(gate: GateHarness) -> None:
    email = f"new@{FORCED_DOMAIN}"

    async def scenario(client: httpx.AsyncClient) -> None:
        answer = await sign_in(client, email, PASSWORD, url="/admin/account")
        assert answer.headers["location"] == "/sso/2fa"
        assert (await client.get("/admin/account")).status_code == 303  # not signed in yet
        intro = await client.get("/sso/2fa")
        assert "requires two-factor login" in intro.text
        setup = await client.post("/sso/2fa/enrol", data={"csrf_token": csrf_of(intro)})
        app = pyotp.TOTP(secret_of(setup))
        done = await client.post(
            "/sso/2fa/confirm", data={"code": app.now(), "csrf_token": csrf_of(setup)}
        )
        assert done.status_code == 200
        assert len(re.findall(r"<li>[a-z2-7-]{19}</li>", done.text)) == 10
        assert 'href="/admin/account"' in done.text
        assert (await client.get("/admin/account")).status_code == 200

    browse(gate, scenario)
    with work.read(gate.settings) as db:
        assert users.two_factor_status(db, gate.settings, email).enabled


def test_pages_are_not_reachable_without_signing_in(gate: GateHarness) -> None:
    async def scenario(client: httpx.AsyncClient) -> tuple[int, int]:
        page = await client.get("/admin/account/2fa")
        form = await client.get("/sso/login")
        begin = await client.post("/admin/account/2fa/begin", data={"csrf_token": csrf_of(form)})
        return page.status_code, begin.status_code

    assert browse(gate, scenario) == (303, 303)
