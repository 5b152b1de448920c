"""Two-factor login on the account pages: WEB_ADMIN + ``/account/2fa``.

Turn it on (a QR code and the secret in text, then a code from the app: only a right
code turns it on), see the recovery codes once, make new ones, turn it off. Making new
codes and turning it off ask for the password again (checked by the gate, with its rate
limits): a session left open on a shared computer is not enough to weaken the account.
The store keeps the rules (:mod:`roost.store.entities.user`); docs/two-factor.md tells
users and administrators what each step does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from roost.store import work
from roost.store.entities import user as user_entity
from roost.store.entities.names import ManageError
from roost.web.auth import Account, current_user, settings_of
from roost.web.client import client_info
from roost.web.csrf import html_router
from roost.web.gatelogin import Verdict
from roost.web.sessions import get_session
from roost.web.sso.routes import LIMITED, verify_password
from roost.web.sso.twofactor import begin_page, confirm_codes
from roost.web.templating import render

__all__ = ["build_router"]

log = logging.getLogger("roost.web")
T = TypeVar("T")

PAGE = "/account/2fa"
MESSAGES = {
    "off": "Two-factor login is off. Your password alone signs you in.",
}


def _status(request: Request, account: Account) -> user_entity.TwoFactorStatus:
    settings = settings_of(request)
    with work.read(settings) as db:
        return user_entity.two_factor_status(db, settings, account.email)


def _page(
    request: Request,
    account: Account,
    *,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    context = {
        "account": account,
        "status": _status(request, account),
        "error": error,
        "notice": notice,
    }
    return render(request, "account_2fa.html", context, status_code=status)


async def _password_error(request: Request, account: Account, password: str) -> tuple[str, int]:
    """What is wrong with the password given again, or ("", 200) when it is right."""
    if not password:
        return "Type your password.", 400
    verdict = await verify_password(request, account.email, password)
    if verdict is Verdict.OK:
        return "", 200
    if verdict is Verdict.RATE_LIMITED:
        return LIMITED, 429
    return "The password is wrong.", 401


async def _guarded(
    request: Request,
    account: Account,
    password: str,
    what: str,
    change: Callable[[Any], T],
    then: Callable[[T], Response],
) -> Response:
    """``change`` in one transaction once the password given again is right, then the
    answer ``then`` makes of its result; the page with the error otherwise."""
    error, status = await _password_error(request, account, password)
    if not error:
        try:
            with work.change(settings_of(request)) as db:
                result = change(db)
        except ManageError as exc:
            error, status = str(exc), 409
        else:
            _log(request, what, account)
            return then(result)
    return _page(request, account, error=error, status=status)


def _log(request: Request, what: str, account: Account) -> None:
    info = client_info(request)
    log.info("Two-factor %s by %s from: %s/%s: success", what, account.email, info.ip, info.port)


def build_router(admin: str) -> APIRouter:
    """The pages at ``/account/2fa`` (no prefix: the account router, at ``admin``, adds it)."""
    router = html_router()
    base = admin + PAGE

    @router.get(PAGE)
    async def overview(
        request: Request,
        account: Account = Depends(current_user),  # noqa: B008
        msg: str = "",
    ) -> Response:
        return _page(request, account, notice=MESSAGES.get(msg))

    @router.post(PAGE + "/begin")
    async def begin(
        request: Request,
        account: Account = Depends(current_user),  # noqa: B008
    ) -> Response:
        return begin_page(
            request,
            account.email,
            base + "/confirm",
            {"account": account, "restart": base + "/begin"},
        )

    @router.post(PAGE + "/confirm")
    async def confirm(
        request: Request,
        account: Account = Depends(current_user),  # noqa: B008
        code: str = Form(""),
    ) -> Response:
        codes = confirm_codes(request, account.email, code)
        if isinstance(codes, str):
            context = {
                "account": account,
                "error": codes,
                "confirm": base + "/confirm",
                "restart": base + "/begin",
            }
            return render(request, "account_2fa_setup.html", context, status_code=400)
        _log(request, "enrolment", account)
        # Other sessions were opened with the password alone: they end; this one goes on
        # under a new id.
        await request.app.state.sessions.delete_user(account.email)
        get_session(request).rotate(account.email)
        return render(
            request, "account_2fa_codes.html", {"account": account, "codes": codes, "next": base}
        )

    @router.post(PAGE + "/recovery")
    async def recovery(
        request: Request,
        account: Account = Depends(current_user),  # noqa: B008
        password: str = Form(""),
    ) -> Response:
        settings = settings_of(request)
        return await _guarded(
            request,
            account,
            password,
            "recovery codes renewal",
            lambda db: user_entity.regenerate_recovery_codes(db, settings, account.email),
            lambda codes: render(
                request,
                "account_2fa_codes.html",
                {"account": account, "codes": codes, "next": base},
            ),
        )

    @router.post(PAGE + "/disable")
    async def disable(
        request: Request,
        account: Account = Depends(current_user),  # noqa: B008
        password: str = Form(""),
    ) -> Response:
        return await _guarded(
            request,
            account,
            password,
            "disable",
            lambda db: user_entity.disable_two_factor(db, account.email),
            lambda _: RedirectResponse(base + "?msg=off", status_code=303),
        )

    return router
