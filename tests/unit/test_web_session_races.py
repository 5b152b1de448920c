"""Requests of one web session running side by side never bring an ended session back.

A slow page that loaded its session before a logout (or a password change, which ends every
session of the account) finishes after it: it must not write the session back, nor send
its cookie again. The session middleware (roost.web.sessions) runs here on a small
Starlette app, with the Redis store on a real redis-server and with the in-memory store;
each slow request waits on an event, so the order is the test's, not the scheduler's.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from roost.web.sessions import (
    REDIS_DB,
    MemorySessionStore,
    RedisSessionStore,
    SessionMiddleware,
    SessionStore,
    get_session,
)
from tests.unit.test_gate_support import make_settings, redis_server

USER = "someone@example.test"
COOKIE = "__Host-session"
BASE = "https://mail.example.test"
_ports = itertools.count(40)


class Pages:
    """The app's pages; ``/slow`` stops after loading its session until ``release``."""

    def __init__(self) -> None:
        self.loaded = asyncio.Event()
        self.release = asyncio.Event()

    async def sign_in(self, request: Request) -> PlainTextResponse:
        get_session(request).rotate(USER)
        return PlainTextResponse("in")

    async def slow(self, request: Request) -> PlainTextResponse:
        session = get_session(request)
        self.loaded.set()
        await self.release.wait()
        if request.query_params.get("change"):
            session["note"] = request.query_params["change"]
        return PlainTextResponse(session.user or "nobody")

    async def who(self, request: Request) -> PlainTextResponse:
        session = get_session(request)
        return PlainTextResponse(f"{session.user or 'nobody'} {session.get('note', '')}")

    async def sign_out(self, request: Request) -> PlainTextResponse:
        get_session(request).end()
        return PlainTextResponse("out")


@pytest.fixture(params=["redis", "memory"])
def store(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@asynccontextmanager
async def app_with(
    kind: str, tmp_path: Path
) -> AsyncIterator[tuple[SessionStore, Pages, httpx.AsyncClient]]:
    settings = make_settings(tmp_path, f"127.0.29.{next(_ports)}")
    if kind == "redis":
        socket_path = tmp_path / "redis.sock"
        with redis_server(socket_path):
            client = aioredis.Redis(unix_socket_path=str(socket_path), db=REDIS_DB)
            async with _served(RedisSessionStore(client, 3600), settings) as served:
                yield served
    else:
        async with _served(MemorySessionStore(), settings) as served:
            yield served


@asynccontextmanager
async def _served(
    store: SessionStore, settings: object
) -> AsyncIterator[tuple[SessionStore, Pages, httpx.AsyncClient]]:
    pages = Pages()
    app = Starlette(
        routes=[
            Route("/in", pages.sign_in, methods=["POST"]),
            Route("/slow", pages.slow),
            Route("/who", pages.who),
            Route("/out", pages.sign_out, methods=["POST"]),
        ]
    )
    wrapped = SessionMiddleware(app, store, settings, fingerprint=lambda _email: "mark")  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=wrapped)
    try:
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            yield store, pages, client
    finally:
        await store.close()


async def _slow_then(
    client: httpx.AsyncClient, pages: Pages, query: str, meanwhile: Awaitable[object]
) -> httpx.Response:
    """Start ``/slow`` with the client's cookie, run ``meanwhile`` once it has loaded its
    session, then let it finish; its response."""
    slow = asyncio.create_task(client.get(f"/slow{query}"))
    await pages.loaded.wait()
    await meanwhile
    pages.release.set()
    return await slow


def _ended(answer: httpx.Response) -> bool:
    return "Max-Age=0" in answer.headers.get("set-cookie", "")


@pytest.mark.parametrize("query", ["", "?change=late"])
def test_a_logout_during_a_slow_request_stays_a_logout(
    store: str, tmp_path: Path, query: str
) -> None:
    async def go() -> None:
        async with app_with(store, tmp_path) as (sessions, pages, client):
            await client.post("/in")
            sid = client.cookies[COOKIE]
            out = client.post("/out")
            slow = await _slow_then(client, pages, query, out)
            assert _ended(slow), slow.headers
            assert await sessions.load(sid) is None
            client.cookies.set(COOKIE, sid)  # the old cookie, sent again
            assert (await client.get("/who")).text.startswith("nobody")

    asyncio.run(go())


def test_a_password_change_during_a_slow_request_ends_the_session(
    store: str, tmp_path: Path
) -> None:
    async def go() -> None:
        async with app_with(store, tmp_path) as (sessions, pages, client):
            await client.post("/in")
            sid = client.cookies[COOKIE]
            slow = await _slow_then(client, pages, "?change=late", sessions.delete_user(USER))
            assert _ended(slow)
            assert await sessions.load(sid) is None

    asyncio.run(go())


def test_sessions_still_live_change_and_renew(store: str, tmp_path: Path) -> None:
    async def go() -> None:
        async with app_with(store, tmp_path) as (sessions, pages, client):
            await client.post("/in")
            sid = client.cookies[COOKIE]
            slow = await _slow_then(client, pages, "?change=kept", asyncio.sleep(0))
            assert slow.text == USER and "Max-Age=0" not in slow.headers["set-cookie"]
            assert (await client.get("/who")).text == f"{USER} kept"
            data = await sessions.load(sid)
            assert data is not None and data["user"] == USER and data["pw"] == "mark"
            if isinstance(sessions, RedisSessionStore):
                probe = aioredis.Redis(unix_socket_path=str(tmp_path / "redis.sock"), db=REDIS_DB)
                try:
                    keys = await probe.keys("session:*")
                    assert len(keys) == 1
                    await probe.expire(keys[0], 5)
                    await client.get("/who")  # a signed-in request renews the idle timeout
                    assert await probe.ttl(keys[0]) > 5
                finally:
                    await probe.aclose()

    asyncio.run(go())
