"""CSRF protection: a synchroniser token kept in the server-side session (OWASP CSRF
Prevention Cheat Sheet, "Synchronizer Token Pattern").

Every form carries the session's token in a hidden ``csrf_token`` field (templates call
``csrf_field()``); every request that can change something (any method but GET, HEAD,
OPTIONS) on a router built by :func:`html_router` must send it back, in the form or in an
``X-CSRF-Token`` header, or it is refused with 403 before the endpoint runs. The token is
32 random bytes, compared in constant time, replaced when the session is rotated at
sign-in, and never in a cookie, so neither a sibling host that can set cookies nor a
cross-site form can produce it. docs/web.md says why this is not a library.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Depends, HTTPException, Request

from roost.web.sessions import Session, get_session

__all__ = ["FIELD", "HEADER", "csrf_protect", "html_router", "token_for"]

FIELD = "csrf_token"
HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def token_for(session: Session) -> str:
    """The session's token, made (and the session given an id) on first use."""
    session.ensure()
    token = session.get("csrf")
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


async def csrf_protect(request: Request) -> None:
    """Refuse a state-changing request whose token does not match the session's.

    Reading the form here is free for the endpoint: Starlette keeps the parsed form on
    the request, and FastAPI's ``Form()`` parameters read the same one.
    """
    if request.method in SAFE_METHODS:
        return
    session = get_session(request)
    expected = session.get("csrf")
    sent = request.headers.get(HEADER, "")
    if not sent:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            value = (await request.form()).get(FIELD)
            sent = value if isinstance(value, str) else ""
    if (
        not isinstance(expected, str)
        or not expected
        or not sent
        or not hmac.compare_digest(sent.encode("utf-8", "replace"), expected.encode("utf-8"))
    ):
        raise HTTPException(403, "The form was too old or not sent from this site; try again.")


def html_router(**kwargs: object) -> APIRouter:
    """An APIRouter for HTML pages: every state-changing route is CSRF-checked."""
    dependencies = list(kwargs.pop("dependencies", []) or [])  # type: ignore[call-overload]
    dependencies.append(Depends(csrf_protect))
    return APIRouter(dependencies=dependencies, include_in_schema=False, **kwargs)  # type: ignore[arg-type]
