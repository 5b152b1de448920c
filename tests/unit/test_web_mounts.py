"""What create_app mounts: the API only when API and API_TOKEN say so, autoconfig always,
the account pages only under a non-empty WEB_ADMIN; the CSP and headers on every part."""

from __future__ import annotations

import asyncio

import httpx

from roost.settings import Settings
from roost.web.app import create_app
from roost.web.sessions import MemorySessionStore


def get(settings: Settings, path: str) -> httpx.Response:
    async def go() -> httpx.Response:
        app = create_app(settings, sessions=MemorySessionStore(), gate=object())
        transport = httpx.ASGITransport(app=app, client=("192.0.2.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="https://mail.mailu.io") as c:
            return await c.get(path)

    return asyncio.run(go())


def test_the_api_answers_only_when_enabled_with_a_token() -> None:
    assert get(Settings(), "/api/v1/domain").status_code == 404
    assert get(Settings(API=True), "/api/v1/domain").status_code == 404
    answer = get(Settings(API=True, API_TOKEN="t" * 32), "/api/v1/domain")
    assert answer.status_code in (401, 403)
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_autoconfig_is_mounted() -> None:
    answer = get(Settings(), "/mail/config-v1.1.xml?emailaddress=joe@mailu.io")
    assert answer.status_code == 200
    assert "clientConfig" in answer.text


def test_no_web_admin_no_account_pages() -> None:
    assert get(Settings(), "/admin/account").status_code == 303
    assert get(Settings(WEB_ADMIN=""), "/admin/account").status_code == 404
    # Sign-in stays: the API alone has no pages, but /sso is harmless and small.
    assert get(Settings(WEB_ADMIN=""), "/sso/login").status_code == 200
