"""``POST WEB_API/alias/random/new?hostname=<site>``: a new anonymous alias, as
SimpleLogin's API makes one (https://github.com/simple-login/app/blob/master/docs/api.md,
"POST /api/alias/random/new"), so password managers that generate SimpleLogin aliases
(Bitwarden's "Forwarded email alias" with the service SimpleLogin and this server's URL)
make them here. Mailu serves the same path at its API root, not under ``/v1``.

Who calls: the header ``Authentication: <email>:<app token>`` (each half percent-decoded),
or else a signed-in web session. Only app tokens are taken, never the account password:
the web asks the gate with ``Auth-Protocol: api`` (:mod:`roost.web.gatelogin`), so the
token's networks, the account's ``enabled``, the rate limits and the fail2ban log lines
are the gate's, as for every other login. A session must send its CSRF token in
``X-CSRF-Token`` (a browser's cookie alone proves nothing about who wrote the request).

The answers (Mailu's):

* 429 when the caller's network is over its login budget (:mod:`roost.gate.limiter`),
  checked before anything else when no ``email:token`` is given; with one, the gate
  decides, and a real app token is let through a spent network budget as on every
  protocol, so a guesser on the same network cannot shut password managers out;
* 401 ``A valid Authentication header is mandatory`` without the header or a session;
* 401 ``Invalid credentials format (expected email:token)`` without a ``:`` or a token
  (counted as a failed login of the network);
* 403 ``Invalid credentials`` for an unknown user, a wrong token, a password, a token used
  outside its networks, a disabled account;
* 403 ``You do not have access to any domains for creating aliases``;
* 409 ``Unable to find a unique alias after several retries`` (ANONMAIL_MAX_RETRIES);
* 201 with the new alias.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import Response
from sqlalchemy.exc import IntegrityError

from roost.gate.limiter import AuthLimiter, Budget
from roost.layout import Layout
from roost.settings import Settings
from roost.store import work
from roost.store.db import StoreError
from roost.store.entities import anonalias
from roost.store.entities.names import ManageError
from roost.web.api.responses import MailuJSON
from roost.web.auth import LoginRequired, signed_in_user
from roost.web.client import client_info
from roost.web.csrf import csrf_protect
from roost.web.gatelogin import GateUnavailable, Verdict, WebLogin
from roost.web.sessions import get_session

__all__ = ["PATH", "router"]

log = logging.getLogger("roost.web.api")

#: The path under WEB_API.
PATH = "/alias/random/new"
#: The header SimpleLogin's clients send (not ``Authorization``).
HEADER = "authentication"
#: Longest body read (a note of 255 characters fits many times over).
BODY_MAX = 16_384


class Refused(Exception):
    def __init__(self, status: int, message: str, *, coded: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.coded = coded

    def response(self) -> Response:
        body: dict[str, Any] = {"message": self.message}
        if self.coded:
            body = {"code": self.status, "message": self.message}
        return MailuJSON(body, status_code=self.status)


def _credentials(header: str) -> tuple[str, str] | None:
    """``email`` and ``token`` of an ``Authentication`` header; None when malformed."""
    email, colon, token = header.strip().partition(":")
    email, token = unquote(email).strip(), unquote(token).strip()
    if not colon or not email or not token:
        return None
    return email, token


class _Caller:
    """Decides who is calling; owns the limiter (made in the serving event loop)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._limiter: AuthLimiter | None = None

    @property
    def limiter(self) -> AuthLimiter:
        if self._limiter is None:
            self._limiter = AuthLimiter(self._settings, Layout(self._settings).redis_socket)
        return self._limiter

    async def _network_refused(self, ip: str) -> bool:
        try:
            self.limiter.network(ip)
        except ValueError:
            return False
        return await self.limiter.refusal(ip, None) is Budget.NETWORK

    async def _count_failure(self, ip: str, what: str) -> None:
        with contextlib.suppress(ValueError):  # no network to count under
            await self.limiter.fail_unknown(ip, what)

    async def __call__(self, request: Request) -> str:
        """The stored address of the caller, or :class:`Refused`."""
        info = client_info(request)
        header = request.headers.get(HEADER)
        credentials = _credentials(header) if header is not None else None
        if credentials is None and await self._network_refused(info.ip):
            raise Refused(429, "Too many attempts from your IP (rate-limit)")
        if header is None:
            return await self._session_user(request)
        if credentials is None:
            await self._count_failure(info.ip, header.partition(":")[0][:255])
            raise Refused(401, "Invalid credentials format (expected email:token)")
        email, token = credentials
        login = WebLogin(
            user=email,
            password=token,
            client_ip=info.ip,
            client_port=info.port,
            port=info.server_port,
            ssl=info.https,
            protocol="api",
        )
        try:
            answer = await request.app.state.gate.check(login)
        except GateUnavailable as exc:
            log.warning("anonymous alias: %s", exc)
            raise Refused(503, "The login service cannot be reached; try again later") from None
        if answer.verdict is Verdict.RATE_LIMITED:
            raise Refused(429, "Too many attempts from your IP (rate-limit)")
        if not answer.ok or not answer.user:
            raise Refused(403, "Invalid credentials")
        return str(answer.user)

    async def _session_user(self, request: Request) -> str:
        if get_session(request).user is None:
            raise Refused(401, "A valid Authentication header is mandatory")
        try:
            account = await signed_in_user(request)
        except LoginRequired:
            raise Refused(401, "A valid Authentication header is mandatory") from None
        if account.change_pw_next_login:
            raise Refused(401, "A valid Authentication header is mandatory")
        try:
            await csrf_protect(request)
        except HTTPException:
            raise Refused(403, "A signed-in session must send its X-CSRF-Token") from None
        return account.email


async def _note_of(request: Request) -> str | None:
    """The ``note`` of the optional JSON body; :class:`Refused` for a body that is not one."""
    raw = await request.body()
    if not raw.strip():
        return None
    if len(raw) > BODY_MAX:
        raise Refused(400, "The body is too large", coded=True)
    try:
        body = json.loads(raw)
    except ValueError:
        raise Refused(400, "The body is not JSON", coded=True) from None
    if not isinstance(body, dict):
        raise Refused(400, "The body is not a JSON object", coded=True)
    note = body.get("note")
    if note is not None and not isinstance(note, str):
        raise Refused(400, "note: expected text", coded=True)
    return note


def _answer(email: str, note: str, created: dt.date) -> Response:
    midnight = dt.datetime.combine(created, dt.time(), tzinfo=dt.UTC)
    body = {
        "email": email,
        # SimpleLogin's own API names the address "alias"; its clients read that field.
        "alias": email,
        "enabled": True,
        "note": note,
        "creation_date": midnight.strftime("%Y-%m-%d %H:%M:%S"),
        "creation_timestamp": int(midnight.timestamp()),
        "nb_forward": 0,
        "nb_block": 0,
        "nb_reply": 0,
    }
    return MailuJSON(body, status_code=201)


def router(settings: Settings) -> APIRouter:
    """The endpoint at ``WEB_API`` + :data:`PATH` (no CSRF router: see the module doc)."""
    caller = _Caller(settings)
    routes = APIRouter(include_in_schema=False)

    @routes.post(settings.WEB_API + PATH)
    async def random_new(request: Request, hostname: str | None = None) -> Response:
        try:
            owner = await caller(request)
            note = await _note_of(request)
            site = (hostname or "").strip()
            if not note:
                note = f"Website: {site}" if site else ""
            with work.change(settings) as db:
                alias = anonalias.create_anonymous_alias(
                    db,
                    owner,
                    None,
                    hostname=site,
                    note=note,
                    retries=settings.ANONMAIL_MAX_RETRIES,
                )
                email, created = alias.email, alias.created_at
        except Refused as refused:
            return refused.response()
        except anonalias.NoAnonmailAccess as exc:
            return Refused(403, str(exc), coded=True).response()
        except anonalias.AliasExhausted as exc:
            return Refused(409, str(exc), coded=True).response()
        except ManageError as exc:
            return Refused(400, str(exc), coded=True).response()
        except IntegrityError:
            return Refused(
                409, "Conflicts with a change made at the same time; try again", coded=True
            ).response()
        except StoreError as exc:
            log.warning("anonymous alias: %s", exc)
            return Refused(
                503, "The store cannot be reached; try again later", coded=True
            ).response()
        log.info("anonymous alias %s created for %s", email, owner)
        return _answer(email, note, created)

    return routes
