"""The second step of a web sign-in: /sso/2fa (a TOTP or recovery code, or enrolment).

/sso/login leaves a right password whose account needs more (the gate's ``Auth-2FA``) in a
new session *without* ``user``: ``pending`` (the address), ``second_factor`` (``required``
or ``enrol``) and ``next``. No other page treats such a session as signed in, so:

* ``required``: this page asks for a code. Before a code is tried, the gate is asked
  whether the account's and the network's login budgets allow one (the same Redis
  budgets as a password); a wrong code is reported to the gate, which counts and logs
  it as a wrong password (fail2ban's line), so the password alone buys no more guesses
  at six digits than it would at the password. The code itself is checked by the store
  (:func:`roost.store.entities.user.verify_second_factor`: each time step once, a
  recovery code burned). A right code rotates the session (new id, new CSRF token).
* ``enrol``: the domain or AUTH_REQUIRE_TOTP wants two-factor login and the user has
  none: the enrolment (:mod:`roost.web.account_2fa`'s pages) comes before anything else,
  and only a confirmed enrolment signs the session in.

The pending state lives PENDING_SECONDS (enrolment: ENROL_SECONDS) from the password, and
MAX_TRIES wrong codes end it: the password must be given again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response

from roost.settings import Settings
from roost.store import work
from roost.store.entities import user as user_entity
from roost.web.auth import load_account, settings_of
from roost.web.client import client_info
from roost.web.csrf import html_router
from roost.web.gatelogin import GateAnswer, GateUnavailable, Verdict
from roost.web.sessions import get_session
from roost.web.sso.signin import (
    LIMITED,
    PASSWORD_CHANGE_PAGE,
    UNAVAILABLE,
    signed_in,
    target,
    web_login,
)
from roost.web.templating import render

__all__ = [
    "ENROL_SECONDS",
    "MAX_TRIES",
    "PENDING_SECONDS",
    "Pending",
    "pending_of",
    "report",
    "router",
    "verify_code",
]

log = logging.getLogger("roost.web")

#: Seconds between the right password and the code (then the password is asked again).
PENDING_SECONDS = 300
#: Seconds for a forced enrolment (installing an app takes longer than typing a code).
ENROL_SECONDS = 900
#: Wrong codes one pending sign-in may try before the password must be given again.
MAX_TRIES = 5

WRONG_CODE = "That code is not right. Type the code your app shows now, or a recovery code."
EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Pending:
    """A pending sign-in: the account, what it still needs, where it goes afterwards."""

    email: str
    needs: str
    target: str


def pending_of(request: Request) -> Pending | None:
    """The session's pending sign-in, or None (none, or expired: then it is ended)."""
    session = get_session(request)
    email, needs = session.get("pending"), session.get("second_factor")
    if session.user is not None or not isinstance(email, str) or not isinstance(needs, str):
        return None
    created = session.get("created")
    lifetime = ENROL_SECONDS if needs == "enrol" else PENDING_SECONDS
    if not isinstance(created, (int, float)) or time.time() - created > lifetime:
        session.end()
        return None
    then = session.get("next")
    return Pending(email, needs, target(request, then if isinstance(then, str) else ""))


def gate_key(settings: Settings) -> str:
    # Imported here: the gate's module is large and only this step needs it.
    from roost.gate.auth import second_factor_key

    return second_factor_key(settings)


async def report(request: Request, email: str, step: str, code: str = "") -> GateAnswer:
    """Tell the gate about the second step (``check``, ``failed``, ``passed``)."""
    from roost.gate.auth import SECOND_FACTOR_HEADER, SECOND_FACTOR_KEY_HEADER

    attempt = web_login(request, email, code)
    extra = {
        SECOND_FACTOR_HEADER: step,
        SECOND_FACTOR_KEY_HEADER: gate_key(settings_of(request)),
    }
    answer: GateAnswer = await request.app.state.gate.check(attempt, extra)
    return answer


def verify_code(settings: Settings, email: str, code: str) -> str | None:
    """``"totp"`` or ``"recovery"`` when the store accepts ``code`` (and uses it up)."""
    with work.read(settings) as db:
        return user_entity.verify_second_factor(db, settings, email, code)


def _expired() -> Response:
    return RedirectResponse("/sso/login?msg=" + EXPIRED, status_code=303)


def _page(request: Request, error: str | None = None, status: int = 200) -> Response:
    return render(request, "sso/2fa.html", {"error": error}, status_code=status)


router = html_router()


@router.get("/2fa")
async def second_factor_form(request: Request) -> Response:
    pending = pending_of(request)
    if pending is None:
        return _expired()
    if pending.needs == "enrol":
        return render(request, "sso/2fa_enrol.html", {"email": pending.email})
    return _page(request)


@router.post("/2fa")
async def second_factor(request: Request, code: str = Form("")) -> Response:
    pending = pending_of(request)
    if pending is None or pending.needs != "required":
        return _expired()
    code = code.strip()
    if not code:
        return _page(request, "Type the code your app shows, or a recovery code.", 400)
    if len(code) > 64:
        code = code[:64]
    settings = settings_of(request)
    try:
        allowed = await report(request, pending.email, "check")
        if not allowed.ok:
            status = 429 if allowed.verdict is Verdict.RATE_LIMITED else 401
            return _page(request, LIMITED if status == 429 else WRONG_CODE, status)
        how = verify_code(settings, pending.email, code)
        if how is None:
            await report(request, pending.email, "failed", code)
        else:
            await report(request, pending.email, "passed")
    except GateUnavailable as exc:
        log.warning("second factor impossible: %s", exc)
        return _page(request, UNAVAILABLE, 503)
    session = get_session(request)
    if how is None:
        tries = session.get("tries", 0)
        tries = (tries if isinstance(tries, int) else 0) + 1
        if tries >= MAX_TRIES:
            session.end()
            return RedirectResponse("/sso/login?msg=" + EXPIRED, status_code=303)
        session["tries"] = tries
        return _page(request, WRONG_CODE, 401)
    account = load_account(settings, pending.email)
    if account is None:
        session.end()
        return _expired()
    info = client_info(request)
    log.info(
        "Second factor (%s) of %s from: %s/%s: success", how, account.email, info.ip, info.port
    )
    return signed_in(request, account, pending.target)


# -- enrolment (shared with the account pages, roost.web.account_2fa) ------------------------


def begin_page(
    request: Request, email: str, confirm: str, extra: dict[str, object] | None = None
) -> Response:
    """Begin an enrolment for ``email`` and show the QR code and the secret, once."""
    from roost.core.totp import qr_svg
    from roost.store.entities.names import ManageError

    settings = settings_of(request)
    try:
        with work.change(settings) as db:
            enrolment = user_entity.begin_enrolment(db, settings, email)
    except ManageError as exc:
        return render(
            request,
            "account_2fa_setup.html",
            {**(extra or {}), "error": str(exc), "confirm": None},
            status_code=409,
        )
    context = {
        **(extra or {}),
        "secret": enrolment.secret,
        "spaced": " ".join(enrolment.secret[i : i + 4] for i in range(0, len(enrolment.secret), 4)),
        "qr": qr_svg(enrolment.uri),
        "uri": enrolment.uri,
        "confirm": confirm,
    }
    return render(request, "account_2fa_setup.html", context)


def confirm_codes(request: Request, email: str, code: str) -> list[str] | str:
    """Confirm the begun enrolment: the recovery codes, or what is wrong."""
    from roost.store.entities.names import ManageError

    settings = settings_of(request)
    try:
        with work.change(settings) as db:
            return user_entity.confirm_enrolment(db, settings, email, code.strip())
    except ManageError as exc:
        return str(exc)


@router.post("/2fa/enrol")
async def enrol_begin(request: Request) -> Response:
    pending = pending_of(request)
    if pending is None or pending.needs != "enrol":
        return _expired()
    return begin_page(
        request, pending.email, "/sso/2fa/confirm", {"restart": "/sso/2fa/enrol", "forced": True}
    )


@router.post("/2fa/confirm")
async def enrol_confirm(request: Request, code: str = Form("")) -> Response:
    pending = pending_of(request)
    if pending is None or pending.needs != "enrol":
        return _expired()
    codes = confirm_codes(request, pending.email, code)
    if isinstance(codes, str):
        context = {
            "error": codes,
            "confirm": "/sso/2fa/confirm",
            "restart": "/sso/2fa/enrol",
            "forced": True,
        }
        return render(request, "account_2fa_setup.html", context, status_code=400)
    account = load_account(settings_of(request), pending.email)
    session = get_session(request)
    if account is None:
        session.end()
        return _expired()
    info = client_info(request)
    log.info("Two-factor enrolment of %s from: %s/%s: success", account.email, info.ip, info.port)
    # Enrolled: this is the sign-in (a new id); other sessions had only the password.
    await request.app.state.sessions.delete_user(account.email)
    session.rotate(account.email)
    then = pending.target
    if account.change_pw_next_login:
        session["next"] = then
        then = PASSWORD_CHANGE_PAGE
    return render(request, "account_2fa_codes.html", {"codes": codes, "next": then})
