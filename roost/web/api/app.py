"""``build_api(settings)``: the REST API v1 as a FastAPI sub-application.

The web app mounts it at ``WEB_API + "/v1"`` (Mailu's ``/api/v1``) when API is true and
API_TOKEN is set. Its OpenAPI 3 document is served at ``/openapi.json`` and, where Mailu
serves its Swagger document, ``/swagger.json``; both are public, like Mailu's. Every other
path needs the token first (:class:`roost.web.api.auth.Authorizer`), before a body is read.

Answers are Mailu's: ``{"code": <status>, "message": <text>}`` from the handlers,
``{"message": <text>}`` for a refused token, and a body that does not match its model is a
400 ``{"errors": {<field>: <reason>}, "message": "Input payload validation failed"}``
(FastAPI's own 422 is not used). Nothing a client sends leads to a 500: a refusal of the
rule book is a 400 with its message, a race on a name a 409, a store that cannot be reached
a 503.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from roost.gate.limiter import AuthLimiter
from roost.settings import Settings, check_api_token
from roost.store.db import StoreError
from roost.store.entities.names import ManageError
from roost.web.api import aliases, domains, relays, tokens, users
from roost.web.api.auth import Authorizer
from roost.web.api.backend import ApiError, Backend
from roost.web.api.responses import MailuJSON

__all__ = ["build_api"]

log = logging.getLogger("roost.web.api")

_PUBLIC = ("/openapi.json", "/swagger.json")
_DESCRIPTION = (
    "Mailu's REST API v1 (https://mailu.io/master/api.html): the same paths, fields and "
    "answers. Send the API_TOKEN as `Authorization: Bearer <token>` (or the bare token). "
    "What differs from Mailu is listed in Roost's docs/api.md."
)


def _message(status: int, message: str) -> MailuJSON:
    if status in (401, 403, 429):
        return MailuJSON({"message": message}, status_code=status)
    return MailuJSON({"code": status, "message": message}, status_code=status)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "path", "query")]
    return ".".join(parts) or "body"


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Response:
        return _message(exc.status, exc.message)

    @app.exception_handler(ManageError)
    async def rule(_: Request, exc: ManageError) -> Response:
        return _message(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def malformed(_: Request, exc: RequestValidationError) -> Response:
        errors: dict[str, str] = {}
        for error in exc.errors():
            errors.setdefault(_field(tuple(error.get("loc", ()))), str(error.get("msg", "")))
        body = {"errors": errors, "message": "Input payload validation failed"}
        return MailuJSON(body, status_code=400)

    @app.exception_handler(IntegrityError)
    async def race(_: Request, exc: IntegrityError) -> Response:
        # Two writers created the same name at once; the checks before the write saw none.
        return _message(409, "Conflicts with a change made at the same time; try again")

    @app.exception_handler(StoreError)
    async def store_down(_: Request, exc: StoreError) -> Response:
        log.warning("API: %s", exc)
        return _message(503, "The store cannot be reached; try again later")

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Response:
        text = exc.detail if isinstance(exc.detail, str) else "Error"
        if exc.status_code == 404:
            text = "The requested URL was not found on the server."
        return MailuJSON({"message": text}, status_code=exc.status_code, headers=exc.headers)


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI's document, with Mailu's answers: 400 instead of 422, the token scheme."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        schemas = document.get("components", {}).get("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        document.setdefault("components", {})["securitySchemes"] = {
            "Bearer": {"type": "apiKey", "in": "header", "name": "Authorization"}
        }
        document["security"] = [{"Bearer": []}]
        app.openapi_schema = document
        return document

    return build


def _disabled() -> FastAPI:
    """What answers when API is false or API_TOKEN empty: nothing but 404."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.api_route("/{path:path}", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
    async def off(path: str) -> Response:
        return MailuJSON(
            {"code": 404, "message": "The API is off: set API=true and API_TOKEN"},
            status_code=404,
        )

    return app


def build_api(settings: Settings, *, limiter: AuthLimiter | None = None) -> FastAPI:
    """The API application for ``settings``.

    Raises :class:`roost.settings.SettingsError` when API is true and API_TOKEN is weak.
    ``limiter`` replaces the Redis-backed limiter (tests pass an in-memory one).
    """
    if not (settings.API and settings.API_TOKEN):
        return _disabled()
    check_api_token(settings)
    backend = Backend(settings)
    authorize = Authorizer(settings, limiter)
    app = FastAPI(
        title="Roost API",
        version="1.0",
        description=_DESCRIPTION,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        default_response_class=MailuJSON,
        redirect_slashes=False,
    )
    for part in (domains, users, aliases, relays, tokens):
        app.include_router(part.router(backend))
    _install_handlers(app)
    app.openapi = _openapi(app)  # type: ignore[method-assign]

    async def document(request: Request) -> Response:
        # Mounted at WEB_API/v1, the document names that prefix, so clients built from it
        # call the right URLs (as FastAPI does for its own document).
        root = request.scope.get("root_path", "")
        return MailuJSON({**app.openapi(), **({"servers": [{"url": root}]} if root else {})})

    for path in _PUBLIC:
        app.add_route(path, document, include_in_schema=False)

    @app.middleware("http")
    async def token_first(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        root = request.scope.get("root_path", "")
        path = request.scope["path"]
        if root and path.startswith(root):
            path = path[len(root) :]
        if path not in _PUBLIC:
            try:
                await authorize(request)
            except ApiError as exc:
                return _message(exc.status, exc.message)
        return await call_next(request)

    return app
