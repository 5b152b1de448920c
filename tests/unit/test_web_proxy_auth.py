"""Header authentication at /sso/login (PROXY_AUTH_*) against a real gate, Redis and store.

The application is driven as nginx drives it: over "the Unix socket" (no TCP peer in the
ASGI scope) with the X-Real-IP that nginx sets from the connection it accepted. Each
branch: off without a whitelist, a peer not on it (whatever headers it sends), an empty
header, an existing user (a new session and CSRF token, the same-site target), an unknown
one (refused, or created with PROXY_AUTH_CREATE within the domain's rules), two-factor
login still asked, ``noproxyauth``, a disabled account, the sign-out URL; and the settings.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from roost.gate.control import request_reload
from roost.settings import SettingsError, load_settings
from roost.store.models import Domain
from roost.web.app import create_app
from tests.unit.test_gate_support import (
    DOMAIN,
    GateHarness,
    add_domain,
    add_user,
    flush_limits,
    running_gate,
    settings_with,
)
from tests.unit.web_harness import BASE, PASSWORD, Scenario, csrf_of, user_row

PROXY = "203.0.113.7"  # the authenticating proxy, as nginx sees it
STRANGER = "198.51.100.9"  # a browser that reaches nginx itself
ANN = f"ann@{DOMAIN}"
OFF = f"off@{DOMAIN}"  # disabled (the gate harness's directory)
TOTP = f"totp@{DOMAIN}"
STRICT = "strict.test"  # a domain that requires two-factor login
FULL = "full.test"  # a domain with no room for another user
HEADER = "X-Auth-Email"
ON = {"PROXY_AUTH_WHITELIST": ("203.0.113.0/24",)}


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateHarness]:
    with running_gate(tmp_path_factory.mktemp("proxy"), "127.0.43.61") as harness:
        store = harness.store
        add_user(store, ANN, PASSWORD)
        add_user(store, TOTP, PASSWORD, totp_enabled=True, totp_secret="sealed")
        add_domain(store, STRICT)
        add_domain(store, FULL)
        add_user(store, f"one@{FULL}", PASSWORD)
        with store.session() as session:
            session.execute(update(Domain).where(Domain.name == STRICT).values(totp_required=True))
            session.execute(update(Domain).where(Domain.name == FULL).values(max_users=1))
        add_user(store, f"lee@{STRICT}", PASSWORD)
        request_reload(harness.layout)
        yield harness


@pytest.fixture(autouse=True)
def fresh_limits(gate: GateHarness) -> None:
    flush_limits(gate)


def behind_nginx(app: Any, peer: str, client: str | None = None) -> Any:
    """The app as uvicorn serves it on its Unix socket: no TCP peer, and nginx's X-Real-IP
    and X-Forwarded-By (nginx replaces whatever the browser sent with the address of its
    connection, or X-Real-IP with the ``client`` a proxy of REAL_IP_FROM names)."""
    ours = (b"x-real-ip", b"x-forwarded-by")

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = [(k, v) for k, v in scope["headers"] if k.lower() not in ours]
            headers.append((b"x-real-ip", (client or peer).encode()))
            headers.append((b"x-forwarded-by", peer.encode()))
            scope = {**scope, "client": None, "headers": headers}
        await app(scope, receive, send)

    return wrapped


def browse(
    gate: GateHarness,
    scenario: Scenario,
    peer: str | None = PROXY,
    named: str | None = None,
    **settings: Any,
) -> Any:
    """Run ``scenario`` against an app with ``settings``, reached through nginx from
    ``peer`` (None: over TCP from the stranger, as a test client or a local experiment),
    for the client ``named`` by the peer when it is a proxy of REAL_IP_FROM."""

    async def go() -> Any:
        app = create_app(settings_with(gate.settings, **settings))
        if peer is None:
            transport = httpx.ASGITransport(app=app, client=(STRANGER, 5555))
        else:
            transport = httpx.ASGITransport(app=behind_nginx(app, peer, named))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            try:
                return await scenario(client)
            finally:
                await app.state.sessions.close()

    return asyncio.run(go())


async def signed_in_as(client: httpx.AsyncClient) -> str | None:
    """Whom the session is signed in as (the account page shows it), or None."""
    page = await client.get("/admin/account")
    if page.status_code != 200:
        return None
    match = re.search(r'<p class="big">([^<]+)</p>', page.text)
    return match.group(1) if match else None


def sign_in_by_header(email: str, url: str = "", **headers: str) -> Scenario:
    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, str | None]:
        query = f"?url={url}" if url else ""
        answer = await client.get("/sso/login" + query, headers={HEADER: email, **headers})
        return answer, await signed_in_as(client)

    return scenario


# -- off, and who counts as the proxy --------------------------------------------------------


def test_without_a_whitelist_the_header_is_ignored(gate: GateHarness) -> None:
    answer, who = browse(gate, sign_in_by_header(ANN))
    assert answer.status_code == 200
    assert 'name="password"' in answer.text  # the ordinary form
    assert who is None


def test_a_peer_not_on_the_whitelist_is_refused_and_logged(
    gate: GateHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="roost.web")
    answer, who = browse(gate, sign_in_by_header(ANN), peer=STRANGER, **ON)
    assert answer.status_code == 403
    assert f"{STRANGER} is not on PROXY_AUTH_WHITELIST" in answer.text
    assert who is None
    assert (
        f"Login failed by proxy - not on whitelist: from {STRANGER} through {STRANGER}."
        in caplog.text
    )


def test_headers_cannot_make_a_stranger_the_proxy(gate: GateHarness) -> None:
    forged = {"X-Forwarded-By": PROXY, "X-Forwarded-For": PROXY, "X-Real-IP": PROXY}
    # Through nginx, the stranger's own X-Real-IP is replaced with its address ...
    answer, who = browse(gate, sign_in_by_header(ANN, **forged), peer=STRANGER, **ON)
    assert answer.status_code == 403
    assert who is None
    # ... and over TCP the peer is the client, whatever its headers say.
    answer, who = browse(gate, sign_in_by_header(ANN, **forged), peer=None, **ON)
    assert answer.status_code == 403
    assert f"{STRANGER} is not on PROXY_AUTH_WHITELIST" in answer.text
    assert who is None


def test_the_proxy_is_the_peer_when_a_load_balancer_names_the_client(
    gate: GateHarness, caplog: pytest.LogCaptureFixture
) -> None:
    """Behind a load balancer of REAL_IP_FROM, X-Real-IP is the browser it names: the
    whitelist still asks about the peer nginx accepted, and the log names both."""
    caplog.set_level(logging.INFO, logger="roost.web")
    browser = "198.51.100.7"
    answer, who = browse(gate, sign_in_by_header(ANN), named=browser, **ON)
    assert answer.status_code == 303 and who == ANN
    assert f"Login succeeded by proxy: {ANN} from {browser} through {PROXY}." in caplog.text
    # A browser on the whitelist's network, named by a peer that is not on it, is no proxy.
    answer, who = browse(gate, sign_in_by_header(ANN), peer=STRANGER, named=PROXY, **ON)
    assert answer.status_code == 403 and who is None
    assert f"{STRANGER} is not on PROXY_AUTH_WHITELIST" in answer.text


def test_an_empty_header_is_refused(gate: GateHarness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="roost.web")
    answer, who = browse(gate, sign_in_by_header(" "), **ON)
    assert answer.status_code == 400
    assert f"empty {HEADER} header" in answer.text
    assert who is None
    assert "Login failed by proxy - no header" in caplog.text


def test_noproxyauth_in_the_url_gives_the_form(gate: GateHarness) -> None:
    answer, who = browse(gate, sign_in_by_header(ANN, url="/admin/?noproxyauth"), **ON)
    assert answer.status_code == 200
    assert 'name="password"' in answer.text
    assert who is None


# -- existing users ----------------------------------------------------------------------------


def test_an_existing_user_is_signed_in_with_a_new_session_and_csrf_token(
    gate: GateHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="roost.web")

    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        before = await client.get("/sso/login?noproxyauth")
        cookie, token = client.cookies.get("__Host-session"), csrf_of(before)
        answer = await client.get("/sso/login?url=/admin/account/tokens", headers={HEADER: ANN})
        after = client.cookies.get("__Host-session")
        page = await client.get("/admin/account/settings")
        return [answer, cookie, after, token, csrf_of(page), await signed_in_as(client)]

    answer, cookie, after, token, new_token, who = browse(gate, scenario, **ON)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/account/tokens"
    assert who == ANN
    assert cookie and after and after != cookie  # a new session id
    assert new_token != token  # and a new CSRF token
    assert f"Login succeeded by proxy: {ANN} from {PROXY} through {PROXY}." in caplog.text


@pytest.mark.parametrize("url", ["https://evil.example/", "//evil.example/x", ""])
def test_the_target_is_a_page_of_this_site_or_web_admin(gate: GateHarness, url: str) -> None:
    answer, who = browse(gate, sign_in_by_header(ANN, url=url), **ON)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/"
    assert who == ANN


def test_the_header_name_is_a_setting(gate: GateHarness) -> None:
    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        ignored = await client.get("/sso/login", headers={HEADER: ANN})
        taken = await client.get("/sso/login", headers={"X-Remote-User": ANN})
        return [ignored.status_code, taken.status_code, await signed_in_as(client)]

    assert browse(gate, scenario, PROXY_AUTH_HEADER="X-Remote-User", **ON) == [200, 303, ANN]


def test_a_disabled_account_is_refused(gate: GateHarness) -> None:
    answer, who = browse(gate, sign_in_by_header(OFF), PROXY_AUTH_CREATE=True, **ON)
    assert answer.status_code == 403
    assert "disabled" in answer.text
    assert who is None


@pytest.mark.parametrize(("email", "needs"), [(TOTP, "required"), (f"lee@{STRICT}", "enrol")])
def test_two_factor_login_is_still_asked(gate: GateHarness, email: str, needs: str) -> None:
    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        answer = await client.get("/sso/login", headers={HEADER: email})
        step = await client.get("/sso/2fa")
        return [answer, step, await signed_in_as(client)]

    answer, step, who = browse(gate, scenario, **ON)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/sso/2fa"
    assert who is None  # not signed in before the second factor
    assert step.status_code == 200
    if needs == "required":
        assert 'name="code"' in step.text
    else:
        assert "Set up two-factor login" in step.text
        assert email in step.text


# -- unknown users -----------------------------------------------------------------------------


def test_an_unknown_user_is_refused_without_proxy_auth_create(
    gate: GateHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="roost.web")
    email = f"new@{DOMAIN}"
    answer, who = browse(gate, sign_in_by_header(email), **ON)
    assert answer.status_code == 403
    assert f"There is no account {email}" in answer.text
    assert who is None
    assert user_row(gate, email) is None
    assert f"Login failed by proxy - does not exist: {email}" in caplog.text


def test_proxy_auth_create_makes_the_user_and_signs_them_in(
    gate: GateHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="roost.web")
    email = f"made@{DOMAIN}"
    answer, who = browse(gate, sign_in_by_header(email), PROXY_AUTH_CREATE=True, **ON)
    assert answer.status_code == 303
    assert who == email
    user = user_row(gate, email)
    assert user is not None
    assert user.password and user.password.startswith("$argon2")
    assert user.change_pw_next_login is False  # nobody knows the random password
    assert f"Login succeeded by proxy created user: {email}" in caplog.text


@pytest.mark.parametrize(
    ("email", "why"),
    [
        ("new@nowhere.test", "does not exist"),  # the domain must exist
        (f"two@{FULL}", "user"),  # max_users, through the user entity
    ],
)
def test_proxy_auth_create_keeps_the_domains_rules(gate: GateHarness, email: str, why: str) -> None:
    answer, who = browse(gate, sign_in_by_header(email), PROXY_AUTH_CREATE=True, **ON)
    assert answer.status_code == 403
    assert why in answer.text
    assert who is None
    assert user_row(gate, email) is None
    with gate.store.session() as session:
        assert session.scalars(select(Domain.name).where(Domain.name == "nowhere.test")).all() == []


# -- sign-out and settings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("logout_url", "location"),
    [
        ("https://sso.example.com/logout?rd=x", "https://sso.example.com/logout?rd=x"),
        ("", "/sso/login?msg=out"),
    ],
)
def test_sign_out_goes_to_proxy_auth_logout_url(
    gate: GateHarness, logout_url: str, location: str
) -> None:
    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        await client.get("/sso/login", headers={HEADER: ANN})
        page = await client.get("/sso/logout")
        return await client.post("/sso/logout", data={"csrf_token": csrf_of(page)})

    answer = browse(gate, scenario, PROXY_AUTH_LOGOUT_URL=logout_url, **ON)
    assert answer.status_code == 303
    assert answer.headers["location"] == location


def test_the_settings_have_mailus_names_and_defaults() -> None:
    settings = load_settings(environ={})
    assert settings.PROXY_AUTH_HEADER == "X-Auth-Email"
    assert settings.PROXY_AUTH_WHITELIST == ()
    assert settings.PROXY_AUTH_CREATE is False
    assert settings.PROXY_AUTH_LOGOUT_URL == ""
    loaded = load_settings(
        environ={
            "PROXY_AUTH_WHITELIST": "203.0.113.0/24, 2001:db8::1",
            "PROXY_AUTH_HEADER": "X-Remote-User",
            "PROXY_AUTH_CREATE": "true",
            "PROXY_AUTH_LOGOUT_URL": "https://sso.example.com/logout",
        }
    )
    assert loaded.PROXY_AUTH_WHITELIST == ("203.0.113.0/24", "2001:db8::1/128")
    assert loaded.PROXY_AUTH_CREATE is True
    for name, bad in (
        ("PROXY_AUTH_WHITELIST", "proxy.example"),
        ("PROXY_AUTH_HEADER", "X Auth"),
        ("PROXY_AUTH_LOGOUT_URL", "javascript:alert(1)"),
        ("PROXY_AUTH_LOGOUT_URL", "//evil.example"),
    ):
        with pytest.raises(SettingsError, match=name):
            load_settings(environ={name: bad})
