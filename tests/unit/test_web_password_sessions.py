"""A password changed anywhere (CLI, API, import) ends the account's web sessions.

The web's own password forms end the sessions they know of; a password set with
``roost password``, the API or ``config-import`` goes straight to the store. Each session
records a fingerprint of the stored hash at sign-in (roost.web.sessions), and the next
request of a session whose fingerprint no longer matches is sent to sign in again.

Driven in process (httpx's ASGI transport) against a real gate, Redis and store, as
tests/unit/test_web_app.py does.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from roost.gate.control import request_reload
from roost.store import work
from roost.store.configio import import_config
from roost.store.entities import user as users
from roost.store.models import User
from roost.web.app import create_app
from roost.web.sessions import REDIS_DB, password_fingerprint
from tests.unit.test_gate_support import (
    DOMAIN,
    GateHarness,
    add_user,
    flush_limits,
    running_gate,
)
from tests.unit.test_web_2fa import enrol, post_code

HOST = "mail.mailu.io"
BASE = f"https://{HOST}"
COOKIE = "__Host-session"
PASSWORD = "web-password-1"
PEOPLE = ("cli", "api", "import", "kept", "redis", "pending")


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateHarness]:
    with running_gate(tmp_path_factory.mktemp("web-pw"), "127.0.29.50") as harness:
        for name in PEOPLE:
            add_user(harness.store, f"{name}@{DOMAIN}", PASSWORD)
        request_reload(harness.layout)
        yield harness


@pytest.fixture(autouse=True)
def fresh_limits(gate: GateHarness) -> None:
    flush_limits(gate)


Scenario = Callable[[httpx.AsyncClient], Awaitable[Any]]


def browse(gate: GateHarness, scenario: Scenario) -> Any:
    async def go() -> Any:
        app = create_app(gate.settings)
        transport = httpx.ASGITransport(app=app, client=("198.51.100.29", 5555))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            try:
                return await scenario(client)
            finally:
                await app.state.sessions.close()

    return asyncio.run(go())


async def sign_in(client: httpx.AsyncClient, email: str) -> None:
    page = await client.get("/sso/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text
    data = {"email": email, "password": PASSWORD, "csrf_token": token.group(1), "url": ""}
    answer = await client.post("/sso/login", data=data)
    assert answer.status_code == 303, answer.text
    assert (await client.get("/admin/account")).status_code == 200


def sent_to_sign_in(answer: httpx.Response) -> bool:
    return (
        answer.status_code == 303
        and answer.headers["location"].startswith("/sso/login")
        and "Max-Age=0" in answer.headers.get("set-cookie", "")
    )


def changed_in_the_store(gate: GateHarness, email: str, change: Callable[[Any], Any]) -> Scenario:
    """Sign in, change the store outside the web, then ask for the account page twice."""

    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        await sign_in(client, email)
        sid = client.cookies[COOKIE]
        with work.change(gate.settings) as db:
            change(db)
        first = await client.get("/admin/account")
        client.cookies.set(COOKIE, sid, domain=HOST)  # the old cookie, sent again
        again = await client.get("/admin/account")
        return first, again

    return scenario


def test_a_password_set_with_the_cli_function_ends_the_web_session(gate: GateHarness) -> None:
    email = f"cli@{DOMAIN}"
    first, again = browse(
        gate,
        changed_in_the_store(gate, email, lambda db: users.set_password(db, email, "cli-pw-22")),
    )
    assert sent_to_sign_in(first)
    assert first.headers["location"] == "/sso/login?url=/admin/account"
    assert again.status_code == 303 and again.headers["location"].startswith("/sso/login")


def test_a_new_hash_from_an_api_or_a_direct_write_ends_it(gate: GateHarness) -> None:
    """The API sets the hash through the same entity module; any new hash counts."""
    email = f"api@{DOMAIN}"

    def write(db: Any) -> None:
        db.get(User, email).password = "{PLAIN}another"

    first, _ = browse(gate, changed_in_the_store(gate, email, write))
    assert sent_to_sign_in(first)


def test_a_password_from_config_import_ends_it(gate: GateHarness) -> None:
    email = f"import@{DOMAIN}"
    document = {"user": [{"email": email, "password": "{PLAIN}imported-pw"}]}

    def imported(db: Any) -> None:
        import_config(db, gate.settings, document, update=True)

    first, _ = browse(gate, changed_in_the_store(gate, email, imported))
    assert sent_to_sign_in(first)


def test_other_changes_leave_the_session_alone(gate: GateHarness) -> None:
    email = f"kept@{DOMAIN}"

    def rename(db: Any) -> None:
        db.get(User, email).displayed_name = "Kept Signed In"

    first, again = browse(gate, changed_in_the_store(gate, email, rename))
    assert first.status_code == 200 and "set-cookie" in first.headers
    assert again.status_code == 200


def test_redis_keeps_a_fingerprint_never_the_hash(gate: GateHarness) -> None:
    email = f"redis@{DOMAIN}"

    async def scenario(client: httpx.AsyncClient) -> None:
        await sign_in(client, email)

    browse(gate, scenario)
    with work.read(gate.settings) as db:
        stored = db.get(User, email).password  # type: ignore[union-attr]
    client = redis.Redis(unix_socket_path=str(gate.layout.redis_socket), db=REDIS_DB)
    try:
        values = [json.loads(client.get(k) or b"{}") for k in client.scan_iter("session:*")]
    finally:
        client.close()
    mine = [v for v in values if v.get("user") == email]
    assert len(mine) == 1
    assert mine[0]["pw"] == password_fingerprint(gate.settings, stored)
    assert stored not in json.dumps(values)
    assert stored.split("$")[-1] not in json.dumps(values)


def test_a_password_changed_during_the_code_step_ends_the_session_after_it(
    gate: GateHarness,
) -> None:
    """The pending sign-in keeps the fingerprint of the password it was given: a right code
    afterwards does not make a session for a password that is no longer the account's."""
    email = f"pending@{DOMAIN}"
    app, _ = enrol(gate, email)

    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, ...]:
        page = await client.get("/sso/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        data = {"email": email, "password": PASSWORD, "csrf_token": token.group(1), "url": ""}
        answer = await client.post("/sso/login", data=data)
        assert answer.headers["location"] == "/sso/2fa"
        with work.change(gate.settings) as db:
            db.get(User, email).password = "{PLAIN}changed-meanwhile"
        code = await post_code(client, app.now())
        after = await client.get("/admin/account")
        return code, after

    code, after = browse(gate, scenario)
    assert code.status_code == 303  # the code itself was right
    assert sent_to_sign_in(after)
