"""Sign-in, forced password change and sign-out at Mailu's paths: /sso/login,
/sso/pw_change, /sso/logout.

The password is decided by the gate (:mod:`roost.web.gatelogin`), never here. A good
sign-in rotates the session (new id, new CSRF token); an account flagged
``change_pw_next_login`` must choose a new password before any other page; the page it
came for is remembered and must be on this site (:mod:`roost.web.redirects`).
"""

from __future__ import annotations

import hmac
import logging

from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from roost.store import work
from roost.store.entities import user as user_entity
from roost.store.entities.names import ManageError
from roost.web.auth import Account, load_account, settings_of, signed_in_user
from roost.web.client import client_info
from roost.web.csrf import html_router
from roost.web.gatelogin import GateAnswer, GateUnavailable, Verdict
from roost.web.sessions import get_session
from roost.web.sso import webmail
from roost.web.sso.proxyauth import header_login
from roost.web.sso.signin import (
    LIMITED,
    UNAVAILABLE,
    default_target,
    signed_in,
    target,
    web_login,
)
from roost.web.templating import render

__all__ = [
    "LIMITED",
    "PasswordForm",
    "change_own_password",
    "check_new_password",
    "password_form",
    "router",
    "verify_password",
]

log = logging.getLogger("roost.web")

WRONG = "Wrong e-mail or password."
#: Messages the sign-in page shows when sent there with ``?msg=`` (never free text).
MESSAGES = {
    "changed": "Your password was changed. Sign in with the new one.",
    "out": "You have signed out.",
    "expired": "The sign-in took too long or had too many wrong codes. Sign in again.",
}
MIN_PASSWORD = 8
#: Where a right password goes when the gate says a second factor is due (Auth-2FA).
SECOND_FACTOR_PAGE = "/sso/2fa"


def check_new_password(current: str, new: str, again: str) -> str | None:
    """What is wrong with a new password, or None (Mailu's rules)."""
    if new != again:
        return "The two new passwords differ."
    if len(new) < MIN_PASSWORD:
        return f"The new password is too short: at least {MIN_PASSWORD} characters."
    if new != new.strip():
        return "The new password must not begin or end with a space."
    if new == current:
        return "The new password must differ from the current one."
    return None


async def verify_password(request: Request, email: str, password: str) -> Verdict:
    """Ask the gate about ``email``'s password, as a sign-in from this browser."""
    answer = await request.app.state.gate.check(web_login(request, email, password))
    return answer.verdict


PasswordForm = tuple[str, str, str]


async def password_form(
    current: str = Form(""), password: str = Form(""), password2: str = Form("")
) -> PasswordForm:
    """The password change form: (current, new, new again)."""
    return current, password, password2


async def change_own_password(
    request: Request, account: Account, form: PasswordForm, what: str
) -> tuple[str, int] | None:
    """Set the password the account's owner chose, given the current one (checked by the
    gate, with its rate limits): None when done (and logged as ``what``), else the error
    and its HTTP status."""
    current, password, password2 = form
    error = check_new_password(current, password, password2)
    if error is not None:
        return error, 400
    verdict = await verify_password(request, account.email, current)
    if verdict is Verdict.RATE_LIMITED:
        return LIMITED, 429
    if verdict is not Verdict.OK:
        return "The current password is wrong.", 401
    try:
        with work.change(settings_of(request)) as db:
            user = user_entity.set_password(db, account.email, password)
            # The owner chose it: no change is due at the next sign-in.
            user.change_pw_next_login = False
    except ManageError as exc:
        return str(exc), 400
    info = client_info(request)
    log.info("%s by %s from: %s/%s: success", what, account.email, info.ip, info.port)
    return None


router = html_router(prefix="/sso")


@router.get("/login")
async def login_form(request: Request, url: str = "", msg: str = "") -> Response:
    by_header = await header_login(request, url)
    if by_header is not None:
        return by_header
    session = get_session(request)
    if session.user is not None and load_account(settings_of(request), session.user):
        return RedirectResponse(target(request, url), status_code=303)
    return render(request, "sso/login.html", {"url": url, "notice": MESSAGES.get(msg)})


@router.post("/login")
async def login(
    request: Request,
    email: str = Form(""),
    password: str = Form(""),
    url: str = Form(""),
) -> Response:
    by_header = await header_login(request, url)
    if by_header is not None:
        return by_header
    email = email.strip()
    error = WRONG
    status = 401
    if email and password:
        try:
            answer = await request.app.state.gate.check(web_login(request, email, password))
        except GateUnavailable as exc:
            log.warning("web sign-in impossible: %s", exc)
            answer = GateAnswer(Verdict.BAD)
            error, status = UNAVAILABLE, 503
        account = load_account(settings_of(request), answer.user) if answer.user else None
        if answer.ok and account is not None:
            if answer.second_factor is not None:
                # The password was right, but the account is not signed in until the
                # second factor is given (or enrolled): a new session without a user.
                get_session(request).rotate_pending(
                    account.email, answer.second_factor, target(request, url)
                )
                return RedirectResponse(SECOND_FACTOR_PAGE, status_code=303)
            return signed_in(request, account, target(request, url))
        if answer.verdict is Verdict.RATE_LIMITED:
            error, status = LIMITED, 429
    return render(
        request,
        "sso/login.html",
        {"url": url, "error": error, "email": email},
        status_code=status,
    )


@router.get("/pw_change")
async def pw_change_form(
    request: Request,
    account: Account = Depends(signed_in_user),  # noqa: B008
) -> Response:
    return render(request, "sso/pw_change.html", {"account": account})


@router.post("/pw_change")
async def pw_change(
    request: Request,
    account: Account = Depends(signed_in_user),  # noqa: B008
    form: PasswordForm = Depends(password_form),  # noqa: B008
) -> Response:
    failed = await change_own_password(request, account, form, "Forced password change")
    if failed is not None:
        error, status = failed
        return render(
            request, "sso/pw_change.html", {"account": account, "error": error}, status_code=status
        )
    # Every other session of the account ends; this one goes on under a new id.
    session = get_session(request)
    then = session.get("next")
    await request.app.state.sessions.delete_user(account.email)
    session.rotate(account.email)
    if not isinstance(then, str):
        then = default_target(request)
    return RedirectResponse(target(request, then), status_code=303)


@router.get("/logout")
async def logout_form(request: Request, key: str = "") -> Response:
    """A page with a sign-out button: a link alone cannot sign anybody out (CSRF). The
    webmail's sign-out comes here with the session's own key, which no other site knows
    (:func:`roost.web.sso.webmail.logout_key`), and signs out at once."""
    session = get_session(request)
    if session.user is None:
        return RedirectResponse("/sso/login", status_code=303)
    if key and session.sid is not None:
        expected = webmail.logout_key(settings_of(request).SECRET_KEY, session.sid)
        if hmac.compare_digest(key.encode("utf-8", "replace"), expected.encode("ascii")):
            return await logout(request)
    return render(request, "sso/logout.html")


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = get_session(request)
    # The webmail's token dies with the session (the gate also checks the session).
    await webmail.revoke(request, session)
    session.end()
    # Behind a signing-in proxy, its own sign-out (else the proxy signs the browser in again).
    then = settings_of(request).PROXY_AUTH_LOGOUT_URL or "/sso/login?msg=out"
    return RedirectResponse(then, status_code=303)


# The second step (/sso/2fa): its own module, on this router so the app mounts it with it.
from roost.web.sso.twofactor import router as _second_step  # noqa: E402

router.include_router(_second_step)
