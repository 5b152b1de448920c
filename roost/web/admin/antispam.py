"""Rspamd's own web interface at ``WEB_ADMIN/antispam/``, for signed-in global administrators.

nginx serves the interface straight from Rspamd's controller (its socket for nginx,
``layout.rspamd_web_socket``); before each request it asks :func:`antispam_auth` here
(nginx's ``auth_request``, at ``WEB_ADMIN/antispam-auth``, a location nginx marks
``internal``) and passes the request on only when the answer is 204:

* 204: a signed-in, enabled global administrator whose session is whole (second factor
  done, no forced password change pending, password unchanged since the sign-in) and whose
  request comes from this site (below);
* 401: nobody is signed in (or only the password step of a two-factor sign-in is done, or
  the session ended), or a password change is due; the ``X-Roost-Signin`` header tells
  nginx where to send the browser (``/sso/login?url=<the page>`` or ``/sso/pw_change``);
* 403: signed in without the right (a domain manager or a user), a method other than
  GET or POST, or a request this site did not make.

The interface's own scripts change things with POSTs (learn, save actions, maps) and a
few GETs (``historyreset``), and carry no CSRF token of ours, so every request to the
controller must prove it comes from a page of this site: an ``Origin`` header equal to
this site's origin (browsers send it with every POST), or, without one,
``Sec-Fetch-Site: same-origin``, or, from a browser that sends neither, a ``Referer`` on
this site (nginx's ``Referrer-Policy: same-origin`` keeps it on same-site requests).
Only plain GETs of the interface's files (its page, scripts, styles, images: a path with
a file extension, or the directory itself) need no proof, so a link or a bookmark opens
the interface. The session cookie stays ``SameSite=Lax`` for the whole site; this check is
what keeps a page of another origin (a sibling host included) from acting here.

``WEB_ADMIN/webui_antispam`` is Mailu's page behind the sidebar's "Antispam" link: it
says what the interface is and opens it.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from roost.web.admin.common import settings_of, show
from roost.web.auth import Account, LoginRequired, login_url, require_role, signed_in_user
from roost.web.sso.signin import PASSWORD_CHANGE_PAGE

__all__ = ["AUTH_PATH", "SIGNIN_HEADER", "UI_PATH", "add_routes", "same_origin"]

#: Where nginx serves Rspamd's interface, under WEB_ADMIN.
UI_PATH = "/antispam/"
#: The auth_request endpoint, under WEB_ADMIN (internal to nginx).
AUTH_PATH = "/antispam-auth"
#: Where a 401 sends the browser (nginx reads it with auth_request_set).
SIGNIN_HEADER = "X-Roost-Signin"
#: What the interface uses; anything else is refused (nginx refuses all but GET, HEAD and
#: POST itself; the controller answers HEAD with an error).
METHODS = frozenset({"GET", "POST"})
#: A file of the interface: the directory itself, or a path ending in a file extension.
_UI_FILE = re.compile(r"(?:[\w.~-]+/)*(?:[\w~-][\w.~-]*\.[A-Za-z0-9]+)?")


def _origin(request: Request) -> str:
    """This site's origin as the browser sees it (nginx sets X-Forwarded-Proto and Host)."""
    scheme = request.headers.get("x-forwarded-proto") or request.url.scheme
    return f"{scheme.lower()}://{request.headers.get('host', '').lower()}"


def _interface_file(path: str) -> bool:
    return _UI_FILE.fullmatch(path) is not None


def same_origin(request: Request, method: str, path: str) -> bool:
    """Whether a request for ``path`` (below the interface's directory) may go on.

    See the module's docstring: GETs of the interface's files always; anything else only
    with proof that a page of this origin made it.
    """
    if method == "GET" and _interface_file(path):
        return True
    mine = _origin(request)
    origin = request.headers.get("origin")
    if origin is not None:
        return origin.lower() == mine
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site.lower() == "same-origin"
    referer = request.headers.get("referer", "")
    parts = urlsplit(referer)
    return bool(parts.scheme) and f"{parts.scheme}://{parts.netloc}".lower() == mine


def _refused(status: int, signin: str | None = None) -> Response:
    headers = {SIGNIN_HEADER: signin} if signin is not None else None
    return Response(status_code=status, headers=headers)


def add_routes(router: APIRouter, prefix: str) -> None:
    ui = prefix + UI_PATH

    @router.get(AUTH_PATH)
    async def antispam_auth(request: Request) -> Response:
        """nginx's auth_request for the interface: 204, 401 or 403 (module docstring)."""
        settings = settings_of(request)
        method = request.headers.get("x-original-method", "").upper()
        uri = request.headers.get("x-original-uri", "")
        if not uri.startswith(ui):
            uri = ui
        try:
            account = await signed_in_user(request)
        except LoginRequired:
            return _refused(401, login_url(settings, uri))
        if account.change_pw_next_login:
            return _refused(401, PASSWORD_CHANGE_PAGE)
        if not account.global_admin or method not in METHODS:
            return _refused(403)
        path = uri[len(ui) :].split("?", 1)[0]
        if not same_origin(request, method, path):
            return _refused(403)
        return Response(status_code=204)

    @router.get("/webui_antispam")
    async def antispam_page(
        request: Request,
        account: Account = Depends(require_role("admin")),  # noqa: B008
    ) -> Response:
        return show(request, account, "antispam.html", {"interface": ui})
