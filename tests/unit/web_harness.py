"""Shared harness for the in-process web page tests (administration, self-service): the real
application on a real gate, Redis and store (tests/unit/test_gate_support.py), driven with
httpx's ASGI transport like a browser (cookie jar, no redirects followed). No tests of its own.

Each test module keeps its own gate (its own loopback address and users) and its own client
address, so one module's rate limits and log lines never mix with another's.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from sqlalchemy import Select, select

from roost.settings import Settings
from roost.store.models import Fetch, Token, User
from roost.web.app import create_app
from tests.unit.test_gate_support import GateHarness

__all__ = ["BASE", "PASSWORD", "Browser", "Scenario", "csrf_of", "post_form", "rows", "user_row"]

BASE = "https://mail.mailu.io"
#: Every test user's password unless a module says otherwise.
PASSWORD = "a-good-password"

Scenario = Callable[[httpx.AsyncClient], Awaitable[Any]]
_Row = TypeVar("_Row")


@dataclass(frozen=True, slots=True)
class Browser:
    """Runs a scenario as one signed-in user from ``client_ip``: ``browse(gate, who, ...)``."""

    client_ip: str
    password: str = PASSWORD

    def __call__(
        self,
        gate: GateHarness,
        who: str | None,
        scenario: Scenario,
        settings: Settings | None = None,
    ) -> Any:
        """Sign in as ``who`` (None: nobody), then run ``scenario`` (with the gate's settings
        unless ``settings`` are given)."""

        async def go() -> Any:
            app = create_app(settings or gate.settings)
            transport = httpx.ASGITransport(app=app, client=(self.client_ip, 5555))
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
                try:
                    if who is not None:
                        page = await client.get("/sso/login")
                        data = {
                            "email": who,
                            "password": self.password,
                            "csrf_token": csrf_of(page),
                        }
                        signed = await client.post("/sso/login", data=data)
                        assert signed.status_code == 303, signed.text
                    return await scenario(client)
                finally:
                    await app.state.sessions.close()

        return asyncio.run(go())


def csrf_of(page: httpx.Response) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


async def post_form(
    client: httpx.AsyncClient, form_url: str, url: str, data: dict[str, str]
) -> httpx.Response:
    """POST ``data`` to ``url`` with the CSRF token of the page at ``form_url``."""
    page = await client.get(form_url)
    assert page.status_code == 200, page.text
    return await client.post(url, data={**data, "csrf_token": csrf_of(page)})


def user_row(gate: GateHarness, email: str) -> User | None:
    """The stored user, detached (readable after its session closed), or None."""
    with gate.store.session() as session:
        user = session.get(User, email)
        if user is not None:
            session.expunge(user)
        return user


def rows(gate: GateHarness, query: Select[_Row]) -> list[_Row]:
    """What ``query`` reads from the store, detached."""
    with gate.store.session() as session:
        found = list(session.scalars(query))
        for row in found:
            session.expunge(row)
        return found


def existing_user(gate: GateHarness, email: str) -> User:
    """The stored user, which must exist."""
    user = user_row(gate, email)
    assert user is not None, email
    return user


def tokens_of(gate: GateHarness, email: str) -> list[Token]:
    return rows(gate, select(Token).where(Token.user_email == email))


def fetches_of(gate: GateHarness, email: str) -> list[Fetch]:
    return rows(gate, select(Fetch).where(Fetch.user_email == email))
