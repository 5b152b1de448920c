"""Header authentication at /sso/login: an authenticating proxy in front names the user.

Mailu's "proxy authentication" (https://mailu.io/master/configuration.html, the
PROXY_AUTH_* settings): a single-sign-on proxy (Authelia, oauth2-proxy, ...) signs the
browser in and passes the address in PROXY_AUTH_HEADER (``X-Auth-Email``); Roost signs
that user in without a password. It is off while PROXY_AUTH_WHITELIST is empty, and
``noproxyauth`` anywhere in the URL skips it (the ordinary form then).

Whether the request came through such a proxy is judged by the address nginx saw, the
proxy's own connection (:func:`roost.web.client.client_info`'s ``peer``: nginx's
``X-Forwarded-By``, which nginx sets from ``$realip_remote_addr`` and a client cannot
supply; behind a load balancer of REAL_IP_FROM that is the load balancer), never by a
header the request carries. A browser that reaches nginx directly is its own peer, so it is not on
the list however it spells its headers. The proxy must set the header on every request
it passes (replacing one the browser sent), or its users could name anybody.

Then, as Mailu: an empty header is refused; an existing enabled user is signed in (a new
session id and CSRF token, as after a password) and sent to ``url`` when it is a page of
this site, else WEB_ADMIN; an unknown one is refused unless PROXY_AUTH_CREATE, which
creates them (the domain must exist and have room, through the user entity's rules; a
random password nobody knows). Stricter than Mailu: a user with two-factor login on (or
required to enrol) still goes through /sso/2fa, so the proxy replaces the password, not
the second factor; and a disabled user is refused.
"""

from __future__ import annotations

import logging
import secrets

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from roost.core.credentials import SECOND_FACTOR_ENROL, SECOND_FACTOR_REQUIRED
from roost.core.ipnet import ip_in_networks
from roost.settings import Settings
from roost.store import work
from roost.store.entities import user as user_entity
from roost.store.entities.names import ManageError, parse_email, require_domain
from roost.store.models import User
from roost.web.auth import load_account, settings_of
from roost.web.client import client_info
from roost.web.sessions import get_session
from roost.web.sso.signin import signed_in, target
from roost.web.templating import render
from roost.web.welcome import send_welcome

__all__ = ["SKIP", "header_login"]

log = logging.getLogger("roost.web")

#: In the URL, this word turns header authentication off for the request (Mailu's).
SKIP = "noproxyauth"
SECOND_FACTOR_PAGE = "/sso/2fa"


def _refused(request: Request, url: str, error: str, status: int) -> Response:
    context = {"url": url, "error": error}
    return render(request, "sso/login.html", context, status_code=status)


def _look(settings: Settings, email: str) -> tuple[bool, str | None]:
    """Whether ``email`` is a user, and what they still need after the proxy's word (as
    after a right password: a code, an enrolment, or nothing)."""
    with work.read(settings) as db:
        user = db.get(User, email)
        if user is None:
            return False, None
        if user.totp_enabled:
            return True, SECOND_FACTOR_REQUIRED
        if user_entity.two_factor_required(settings, user):
            return True, SECOND_FACTOR_ENROL
        return True, None


def _create(settings: Settings, email: str) -> None:
    """Create ``email`` for PROXY_AUTH_CREATE: its domain must exist already."""
    localpart, _, domain = email.partition("@")
    with work.change(settings) as db:
        require_domain(db, domain)
        user_entity.create_user(
            db,
            settings,
            localpart,
            domain,
            secrets.token_urlsafe(32),
            # Nobody knows this password, so nobody could give it to change it.
            change_pw_next_login=False,
        )


async def header_login(request: Request, url: str) -> Response | None:
    """The answer to a sign-in by header, or None when this request is not one."""
    settings = settings_of(request)
    named = request.headers.get(settings.PROXY_AUTH_HEADER)
    if named is None or not settings.PROXY_AUTH_WHITELIST or SKIP in str(request.url):
        return None
    info = client_info(request)
    # Mailu's log lines name the client and the proxy: they differ only behind a proxy of
    # REAL_IP_FROM that names the client.
    where = f"from {info.ip} through {info.peer}"
    if not ip_in_networks(info.peer, settings.PROXY_AUTH_WHITELIST):
        log.warning("Login failed by proxy - not on whitelist: %s.", where)
        return _refused(request, url, f"{info.peer} is not on PROXY_AUTH_WHITELIST.", 403)
    named = named.strip()
    if not named:
        log.warning("Login failed by proxy - no header: %s.", where)
        return _refused(
            request, url, f"The proxy sent an empty {settings.PROXY_AUTH_HEADER} header.", 400
        )
    try:
        email = parse_email(named)
    except ManageError:
        log.warning("Login failed by proxy - not an address: %r %s.", named[:100], where)
        return _refused(request, url, "The proxy named no valid address.", 400)
    exists, needs = _look(settings, email)
    if not exists:
        if not settings.PROXY_AUTH_CREATE:
            log.warning("Login failed by proxy - does not exist: %s %s.", email, where)
            return _refused(request, url, f"There is no account {email}.", 403)
        try:
            _create(settings, email)
        except ManageError as exc:
            log.warning("Login failed by proxy - cannot create %s: %s %s.", email, exc, where)
            return _refused(request, url, f"The account {email} cannot be created: {exc}", 403)
        log.info("Login succeeded by proxy created user: %s %s.", email, where)
        await send_welcome(settings, email)
        exists, needs = _look(settings, email)
    account = load_account(settings, email)
    if account is None:
        log.warning("Login failed by proxy - account disabled: %s %s.", email, where)
        return _refused(request, url, f"The account {email} is disabled.", 403)
    then = target(request, url)
    if needs is not None:
        get_session(request).rotate_pending(account.email, needs, then)
        log.info("Login by proxy: %s %s: second factor due.", email, where)
        return RedirectResponse(SECOND_FACTOR_PAGE, status_code=303)
    log.info("Login succeeded by proxy: %s %s.", email, where)
    return signed_in(request, account, then)
