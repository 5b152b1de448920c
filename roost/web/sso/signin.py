"""What the sign-in steps share: the question to the gate, where the browser goes next,
and the end of a successful sign-in.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from roost.web.auth import Account, settings_of
from roost.web.client import client_info
from roost.web.gatelogin import WebLogin
from roost.web.redirects import safe_target
from roost.web.sessions import get_session

__all__ = [
    "LIMITED",
    "PASSWORD_CHANGE_PAGE",
    "UNAVAILABLE",
    "default_target",
    "signed_in",
    "target",
    "web_login",
]

LIMITED = "Too many attempts. Try again later."
UNAVAILABLE = "Signing in is not possible right now. Try again in a minute."
PASSWORD_CHANGE_PAGE = "/sso/pw_change"


def web_login(request: Request, email: str, password: str) -> WebLogin:
    """The gate's question about ``email`` and ``password``, from this browser."""
    info = client_info(request)
    return WebLogin(
        user=email,
        password=password,
        client_ip=info.ip,
        client_port=info.port,
        port=info.server_port,
        ssl=info.https,
    )


def default_target(request: Request) -> str:
    paths = request.app.state.paths
    if paths["admin"]:
        return paths["admin"] + "/"
    # Without admin pages the sign-in serves the webmail alone (never itself: a loop).
    webmail = settings_of(request).webmail_path
    return webmail + "/" if webmail else "/sso/login"


def target(request: Request, url: str | None) -> str:
    """``url`` when it is a page of this site, else the default page."""
    settings = settings_of(request)
    hosts = (*settings.HOSTNAMES, request.headers.get("host", ""))
    return safe_target(url, hosts) or default_target(request)


def signed_in(request: Request, account: Account, url: str) -> Response:
    """Sign the session in as ``account`` (a new id and CSRF token) and send the browser
    on: to the forced password change first when the account is flagged for one."""
    session = get_session(request)
    session.rotate(account.email)
    if account.change_pw_next_login:
        session["next"] = url
        return RedirectResponse(PASSWORD_CHANGE_PAGE, status_code=303)
    return RedirectResponse(url, status_code=303)
