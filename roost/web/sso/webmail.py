"""Single sign-on for the webmail (WEBMAIL=roundcube): nginx's two ``auth_request`` answers.

nginx asks before every PHP request under WEB_WEBMAIL (:data:`GUARD_PATH`) and before the
webmail's SSO entry path ``WEB_WEBMAIL/sso`` (:data:`TOKEN_PATH`); both locations are
``internal`` in nginx, so no browser reaches them:

* 204: a signed-in, enabled account whose session is whole (two-factor login done when
  the account has it, password unchanged since the sign-in, no forced change pending).
  The answer names the session's current webmail token by its digest
  (``X-Roost-Webmail-Id``) and the session's sign-out key (``X-Roost-Logout``); Roost's
  Roundcube plugin ends a Roundcube session whose token is not the current one (another
  sign-in, another account) and sends Roundcube's sign-out on to ``/sso/logout?key=``.
  The entry's answer also carries a new token and the address (``X-Roost-Webmail-Token``,
  ``X-Roost-Webmail-User``), which nginx hands to the plugin on that path only; the token
  replaces (and revokes) the session's previous one. The session's current token is a
  Redis key of its own (:func:`roost.core.webmailtoken.current_key`), not part of the
  session's data, which the session's parallel requests write back.
* 401 with ``X-Roost-Signin``: nobody (whole) is signed in; nginx sends the browser there
  (``/sso/login?url=<the webmail page>``, or ``/sso/pw_change``). The sign-in page is
  the web's own and never guarded, so this cannot loop.

Tokens are :mod:`roost.core.webmailtoken`'s; the gate checks them.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from fastapi import APIRouter, Request
from fastapi.responses import Response

from roost.core import webmailtoken
from roost.web.auth import LoginRequired, login_url, settings_of, signed_in_user
from roost.web.sessions import Session, get_session
from roost.web.sso.signin import PASSWORD_CHANGE_PAGE

__all__ = [
    "GUARD_PATH",
    "LOGOUT_HEADER",
    "TOKEN_PATH",
    "logout_key",
    "revoke",
    "router",
]

#: nginx's auth_request for every PHP request of the webmail.
GUARD_PATH = "/sso/webmail/auth"
#: nginx's auth_request for the webmail's SSO entry path: mints a token.
TOKEN_PATH = "/sso/webmail/token"
SIGNIN_HEADER = "X-Roost-Signin"
ID_HEADER = "X-Roost-Webmail-Id"
LOGOUT_HEADER = "X-Roost-Logout"
USER_HEADER = "X-Roost-Webmail-User"
TOKEN_HEADER = "X-Roost-Webmail-Token"


def logout_key(secret_key: str, sid: str) -> str:
    """The key that lets a GET of ``/sso/logout`` end session ``sid`` (Roundcube's sign-out
    goes there): an HMAC of the session id under a sub-key of SECRET_KEY, known only to
    the webmail's pages of this very session, so another site cannot sign anybody out."""
    key = hmac.new(secret_key.encode("utf-8"), b"roost webmail logout", hashlib.sha256).digest()
    return hmac.new(key, sid.encode("utf-8"), hashlib.sha256).hexdigest()


async def revoke(request: Request, session: Session) -> None:
    """Delete the session's webmail token, so the gate refuses it from now on."""
    if session.sid is not None:
        await request.app.state.sessions.delete_webmail_token(session.sid)


def _refused(signin: str) -> Response:
    return Response(status_code=401, headers={SIGNIN_HEADER: signin})


async def _answer(request: Request, mint: bool) -> Response:
    settings = settings_of(request)
    home = settings.webmail_path + "/"
    uri = request.headers.get("x-original-uri", "")
    if not uri.startswith(home):
        uri = home
    try:
        account = await signed_in_user(request)
    except LoginRequired:
        return _refused(login_url(settings, uri))
    if account.change_pw_next_login:
        return _refused(PASSWORD_CHANGE_PAGE)
    session = get_session(request)
    assert session.sid is not None  # signed in
    store = request.app.state.sessions
    headers = {LOGOUT_HEADER: logout_key(settings.SECRET_KEY, session.sid)}
    if mint:
        await revoke(request, session)
        token = webmailtoken.new_token()
        token_digest = webmailtoken.digest(token)
        created = float(session.get("created", time.time()))
        left = int(settings.PERMANENT_SESSION_LIFETIME - (time.time() - created))
        record = webmailtoken.record(account.email, webmailtoken.digest(session.sid))
        await store.save_webmail_token(session.sid, token_digest, record, left)
        headers |= {USER_HEADER: account.email, TOKEN_HEADER: token, ID_HEADER: token_digest}
    else:
        headers[ID_HEADER] = await store.current_webmail_token(session.sid) or ""
    return Response(status_code=204, headers=headers)


router = APIRouter()


@router.get(GUARD_PATH)
async def webmail_guard(request: Request) -> Response:
    return await _answer(request, mint=False)


@router.get(TOKEN_PATH)
async def webmail_token(request: Request) -> Response:
    return await _answer(request, mint=True)
