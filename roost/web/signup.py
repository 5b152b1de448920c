"""Sign-up pages (Mailu's ``/user/signup`` and ``/domain/signup``, under WEB_ADMIN): open to
anyone, without signing in.

* ``/user/signup`` lists the domains that take sign-ups (``signup_enabled`` and room under
  ``max_users``); ``/user/signup/<domain>`` asks for a local part and a password twice and
  creates the account (:func:`roost.store.entities.signup.sign_up_user`). The password
  follows the sign-in pages' rules (:func:`roost.web.sso.routes.check_new_password`); as
  in Mailu the new account must choose another password at its first sign-in.
* ``/domain/signup``, only with DOMAIN_REGISTRATION (else 404): a visitor gives a domain,
  its first account's local part and a password; a signed-in user gives the domain only
  and becomes its manager. The domain's MX must already name one of HOSTNAMES (asked with
  :func:`roost.dnscheck.mx_exchanges`, bounded in time).

Anyone on the internet can post these forms, so every attempt that reaches the store (or
DNS) first spends one place in the client network's sign-up window
(:meth:`roost.gate.limiter.AuthLimiter.signup_allowed`: Redis db 2, the networks and rate
of AUTH_RATELIMIT_IP, AUTH_RATELIMIT_EXEMPTION honoured). That window is not a login
budget: a flood of sign-ups cannot close the network to people signing in. Forms carry
the CSRF token (:func:`roost.web.csrf.html_router`). One log line per sign-up, never
the password.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from fastapi import Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from roost import dnscheck
from roost.core.address import AddressError, domain_to_ascii
from roost.gate.limiter import AuthLimiter
from roost.layout import Layout
from roost.settings import Settings
from roost.store import work
from roost.store.entities import signup as signups
from roost.store.entities.names import (
    ManageError,
    check_domain_name_free,
    domain_name,
    show_domain,
    show_email,
    user_email,
)
from roost.store.models import Domain
from roost.web.auth import Account, current_user, settings_of, signed_in_user
from roost.web.client import client_info
from roost.web.csrf import html_router
from roost.web.sessions import get_session
from roost.web.sso.routes import check_new_password
from roost.web.templating import TEMPLATES, render
from roost.web.welcome import send_welcome

__all__ = ["SignupOffer", "build_router", "signup_offer"]

log = logging.getLogger("roost.web")

LIMITED = "Too many sign-ups from your network. Try again later."
NOBODY = "Nobody can sign up on this server: no domain takes new accounts."
MX_WRONG = "The MX record was not properly set"
#: Fixed notices the sign-in page shows after a sign-up (``?msg=``; never free text).
NOTICES = {
    "signed-up": "Your account is ready. Sign in with it; you will then choose a new password.",
    "registered": "Your domain is registered. Sign in with its first account to manage it.",
}


# -- the sign-in page's link -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignupOffer:
    """What the sign-in page offers: links to the sign-up pages, and a notice after one."""

    user_link: str | None
    domain_link: str | None
    notice: str | None


def signup_offer(request: Request) -> SignupOffer | None:
    """For the sign-in template: the sign-up links that lead somewhere, or None."""
    admin = request.app.state.paths.get("admin") or ""
    if not admin:
        return None
    settings = settings_of(request)
    try:
        with work.read(settings) as db:
            users_open = bool(signups.open_domains(db))
    except Exception:  # the sign-in page must never fail for its sign-up link
        log.exception("sign-up link: cannot read the domains")
        users_open = False
    notice = NOTICES.get(request.query_params.get("msg", ""))
    user_link = f"{admin}/user/signup" if users_open else None
    domain_link = f"{admin}/domain/signup" if settings.DOMAIN_REGISTRATION else None
    if user_link is None and domain_link is None and notice is None:
        return None
    return SignupOffer(user_link, domain_link, notice)


TEMPLATES.env.globals["signup_offer"] = signup_offer


# -- helpers ---------------------------------------------------------------------------


def _limiter(request: Request) -> AuthLimiter:
    """The app's limiter over the stack's Redis (made at the first sign-up attempt)."""
    limiter = getattr(request.app.state, "signup_limiter", None)
    if limiter is None:
        settings = settings_of(request)
        limiter = AuthLimiter(settings, Layout(settings).redis_socket)
        request.app.state.signup_limiter = limiter
    assert isinstance(limiter, AuthLimiter)
    return limiter


async def _spend_attempt(request: Request, what: str) -> bool:
    """Spend one place of the client network's sign-up window; False when it is full."""
    ip = client_info(request).ip
    try:
        allowed = await _limiter(request).signup_allowed(ip)
    except ValueError:  # no usable client address: nothing to count it against
        allowed = False
    if not allowed:
        log.warning("Sign-up (%s) from %s has been rate-limited.", what, ip)
    return allowed


def _hostnames(settings: Settings) -> tuple[str, ...]:
    names = []
    for host in settings.HOSTNAMES:
        try:
            names.append(domain_to_ascii(host.strip().rstrip(".")))
        except AddressError:
            continue
    return tuple(dict.fromkeys(names))


async def _mx_problem(request: Request, name: str) -> tuple[str, int] | None:
    """Why ``name``'s MX does not point here (message, status), or None when it does."""
    settings = settings_of(request)
    resolver = getattr(request.app.state, "dns_resolver", None)
    state, exchanges, reason = await asyncio.to_thread(dnscheck.mx_exchanges, name, resolver)
    wanted = _hostnames(settings)
    shown = show_domain(name)
    if state == dnscheck.UNKNOWN:
        return (
            f"The MX record of {shown} could not be looked up ({reason}). Try again later.",
            503,
        )
    if any(host.lower() in wanted for host in exchanges):
        return None
    found = ", ".join(exchanges) if exchanges else "none"
    return (
        f"{MX_WRONG}: the MX record of {shown} must name {' or '.join(wanted)} (found: {found}).",
        409,
    )


# -- the pages -------------------------------------------------------------------------


def _page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    return render(request, "signup/" + name, context, status_code=status)


def _nobody(request: Request) -> Response:
    return render(
        request,
        "error.html",
        {"title": "No sign-up here", "message": NOBODY},
        status_code=404,
    )


def build_router(settings: Settings) -> Any:
    """The sign-up routes under WEB_ADMIN."""
    admin = settings.WEB_ADMIN
    router = html_router(prefix=admin)
    login = "/sso/login"

    def user_form(
        request: Request,
        domain: signups.OpenDomain,
        form: dict[str, str],
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        return _page(
            request,
            "user.html",
            {"domain": domain, "form": form, "error": error},
            status if error else 200,
        )

    def open_domain(request: Request, name: str) -> signups.OpenDomain | Response:
        """The open domain ``name``, or the page that says why it is not one."""
        with work.read(settings_of(request)) as db:
            try:
                stored = domain_name(name)
            except ManageError:
                raise HTTPException(404) from None
            for domain in signups.open_domains(db):
                if domain.name == stored:
                    return domain
            found = db.get(Domain, stored)
            if found is None or not found.signup_enabled:
                raise HTTPException(404)
        return render(
            request,
            "error.html",
            {
                "title": "No room",
                "message": f"{show_domain(stored)} takes no more accounts: it is full.",
            },
            status_code=409,
        )

    @router.get("/user/signup")
    async def user_signup_choice(request: Request) -> Response:
        with work.read(settings_of(request)) as db:
            domains = signups.open_domains(db)
        if not domains:
            return _nobody(request)
        return _page(request, "choose.html", {"domains": domains})

    @router.get("/user/signup/{domain}")
    async def user_signup_form(request: Request, domain: str) -> Response:
        found = open_domain(request, domain)
        if isinstance(found, Response):
            return found
        return user_form(request, found, {})

    @router.post("/user/signup/{domain}")
    async def user_signup(
        request: Request,
        domain: str,
        localpart: str = Form(""),
        password: str = Form(""),
        password2: str = Form(""),
    ) -> Response:
        found = open_domain(request, domain)
        if isinstance(found, Response):
            return found
        localpart = localpart.strip()
        form = {"localpart": localpart}
        try:
            email = user_email(localpart, found.name)
        except ManageError as exc:
            return user_form(request, found, form, f"The address: {exc}.", 400)
        problem = check_new_password("", password, password2)
        if problem is not None:
            return user_form(request, found, form, problem.replace("new password", "password"), 400)
        if not await _spend_attempt(request, "user"):
            return user_form(request, found, form, LIMITED, 429)
        try:
            with work.change(settings_of(request)) as db:
                signups.sign_up_user(db, settings_of(request), localpart, found.name, password)
        except ManageError as exc:
            return user_form(request, found, form, f"{exc}.", 409)
        info = client_info(request)
        log.info("Sign-up: user %s created from: %s/%s", show_email(email), info.ip, info.port)
        await send_welcome(settings_of(request), email)
        return RedirectResponse(f"{login}?msg=signed-up", status_code=303)

    async def registrant(request: Request) -> Account | None:
        """The signed-in account registering a domain, or None for a visitor."""
        if get_session(request).user is None:
            return None
        return await current_user(await signed_in_user(request))

    def domain_form(
        request: Request,
        account: Account | None,
        form: dict[str, str],
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        return _page(
            request,
            "domain.html",
            {
                "registrant": account,
                "form": form,
                "error": error,
                "hostnames": _hostnames(settings_of(request)),
            },
            status if error else 200,
        )

    @router.get("/domain/signup")
    async def domain_signup_form(request: Request) -> Response:
        if not settings_of(request).DOMAIN_REGISTRATION:
            raise HTTPException(404)
        return domain_form(request, await registrant(request), {})

    @router.post("/domain/signup")
    async def domain_signup(
        request: Request,
        domain: str = Form(""),
        localpart: str = Form(""),
        password: str = Form(""),
        password2: str = Form(""),
    ) -> Response:
        settings = settings_of(request)
        if not settings.DOMAIN_REGISTRATION:
            raise HTTPException(404)
        account = await registrant(request)
        localpart = localpart.strip()
        form = {"domain": domain.strip(), "localpart": localpart}
        try:
            name = domain_name(domain)
            if account is None:
                user_email(localpart, name)
            with work.read(settings) as db:
                check_domain_name_free(db, name)
        except ManageError as exc:
            return domain_form(request, account, form, f"{exc}.", 400)
        if account is None:
            problem = check_new_password("", password, password2)
            if problem is not None:
                error = problem.replace("new password", "password")
                return domain_form(request, account, form, error, 400)
        if not await _spend_attempt(request, "domain"):
            return domain_form(request, account, form, LIMITED, 429)
        mx = await _mx_problem(request, name)
        if mx is not None:
            return domain_form(request, account, form, mx[0], mx[1])
        try:
            with work.change(settings) as db:
                _, owner = signups.sign_up_domain(
                    db,
                    settings,
                    name,
                    manager=account.email if account is not None else None,
                    localpart=localpart if account is None else None,
                    password=password if account is None else None,
                )
                owner_email = owner.email
        except ManageError as exc:
            return domain_form(request, account, form, f"{exc}.", 409)
        info = client_info(request)
        log.info(
            "Sign-up: domain %s registered for %s from: %s/%s",
            show_domain(name),
            show_email(owner_email),
            info.ip,
            info.port,
        )
        if account is None:
            return RedirectResponse(f"{login}?msg=registered", status_code=303)
        get_session(request)["notice"] = f"The domain {show_domain(name)} is registered."
        return RedirectResponse(f"{admin}/domain/details/{name}", status_code=303)

    return router
