"""The web application: sign-in, account and administration pages, the API, autoconfig.

:func:`create_app` builds one FastAPI application from the settings. uvicorn serves it on
a Unix socket behind nginx (:mod:`roost.services.web`); tests drive it directly. Pages use
Jinja2 templates (:mod:`roost.web.templating`) and work without JavaScript. What the app
adds to every answer:

* the security headers nginx sets in front (X-Frame-Options, X-Content-Type-Options,
  X-Permitted-Cross-Domain-Policies, Referrer-Policy, as Mailu's front does), so the app
  is safe even when reached without nginx, and a Content-Security-Policy that allows only
  this site's own styles, images and forms (no script runs on any page);
* a server-side session in Redis (:mod:`roost.web.sessions`);
* CSRF checks on every state-changing route of its HTML routers (:mod:`roost.web.csrf`).

The REST API (``roost.web.api.build_api``) and client autoconfiguration
(``roost.web.autoconfig.router``) are separate parts mounted here.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from roost.layout import Layout
from roost.settings import Settings
from roost.web import account as account_pages
from roost.web import signup as signup_pages
from roost.web.auth import Forbidden, LoginRequired, PasswordChangeRequired, login_url
from roost.web.gatelogin import GateClient
from roost.web.sessions import RedisSessionStore, SessionMiddleware, SessionStore
from roost.web.sso import webmail as webmail_sso
from roost.web.sso.routes import router as sso_router
from roost.web.templating import render

__all__ = ["SECURITY_HEADERS", "create_app"]

log = logging.getLogger("roost.web")

#: Mailu's front adds these to every answer; nginx does too (roost/services/nginx) and
#: hides the application's copies, so a browser sees each once.
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("X-Frame-Options", "SAMEORIGIN"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Permitted-Cross-Domain-Policies", "none"),
    ("Referrer-Policy", "same-origin"),
)
#: No scripts, no plugins, no framing by other sites, forms only to this site (CSP 3).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'self'; img-src 'self' data:"
)
STATIC = Path(__file__).parent / "static"


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` and the CSP to every HTTP answer (pure ASGI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = [
            (name.lower().encode(), value.encode())
            for name, value in (
                *SECURITY_HEADERS,
                ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
            )
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [h for h in self.headers if h[0] not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _optional(module: str, attribute: str) -> Any:
    """``module.attribute`` when that part of the web exists, else None."""
    try:
        return getattr(importlib.import_module(module), attribute)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            return None
        raise
    except AttributeError:
        return None


def create_app(
    settings: Settings,
    *,
    sessions: SessionStore | None = None,
    gate: Any = None,
) -> FastAPI:
    """The whole web application for ``settings``.

    ``sessions`` and ``gate`` replace the stack's Redis and gate socket (tests).
    """
    layout = Layout(settings)
    store = sessions if sessions is not None else RedisSessionStore.for_layout(layout)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await store.close()
        limiter = getattr(app.state, "signup_limiter", None)
        if limiter is not None:
            await limiter.close()

    app = FastAPI(
        title=f"{settings.SITENAME} web",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.sessions = store
    app.state.gate = gate if gate is not None else GateClient(layout.gate_web_http_socket)
    app.state.paths = {
        "admin": settings.WEB_ADMIN,
        "api": getattr(settings, "WEB_API", "/api"),
        "sso": "/sso",
        "static": "/static",
    }

    _exception_pages(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(sso_router)
    if settings.webmail_path:
        # nginx's auth_request for the webmail (WEBMAIL=roundcube), internal to nginx.
        app.include_router(webmail_sso.router)
    if settings.WEB_ADMIN:
        app.include_router(account_pages.build_router(settings.WEB_ADMIN))  # type: ignore[arg-type]
        app.include_router(signup_pages.build_router(settings))
        admin_router = _optional("roost.web.admin", "build_router")
        if admin_router is not None:
            app.include_router(admin_router(settings))

    build_api = _optional("roost.web.api", "build_api")
    if (
        build_api is not None
        and getattr(settings, "API", False)
        and getattr(settings, "API_TOKEN", "")
    ):
        app.mount(app.state.paths["api"] + "/v1", build_api(settings))
    anonmail = _optional("roost.web.api.anonmail", "router")
    if anonmail is not None and getattr(settings, "API", False):
        # At WEB_API itself, not /v1 (SimpleLogin's path), with its own authentication.
        app.include_router(anonmail(settings))
    autoconfig = _optional("roost.web.autoconfig", "router")
    if autoconfig is not None:
        app.include_router(autoconfig(settings))

    # Outermost last: headers go on every answer, sessions are there for every route.
    app.add_middleware(SessionMiddleware, store=store, settings=settings)
    app.add_middleware(SecurityHeaders)
    return app


def _exception_pages(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(login_url(app.state.settings, exc.back_to), status_code=303)

    @app.exception_handler(PasswordChangeRequired)
    async def password_change(request: Request, exc: PasswordChangeRequired) -> Response:
        return RedirectResponse("/sso/pw_change", status_code=303)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        return render(
            request,
            "error.html",
            {"title": "Not allowed", "message": "This page is not for your account."},
            status_code=403,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        titles = {403: "Refused", 404: "Not found", 405: "Not allowed"}
        return render(
            request,
            "error.html",
            {
                "title": titles.get(exc.status_code, "Error"),
                "message": exc.detail if exc.status_code != 404 else "There is no such page.",
            },
            status_code=exc.status_code,
        )
