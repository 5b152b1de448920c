"""The gate's answers to the daemons: HTTP endpoints and Dovecot's dicts.

HTTP (ARCHITECTURE "The gate's protocols"):

* ``GET /auth/email`` — nginx's auth_http protocol (ngx_mail_auth_http_module) and Dovecot's
  Lua passdb: always HTTP 200 with the decision in ``Auth-*`` headers, as Mailu's
  core/admin/mailu/internal/nginx.py answers;
  a request missing a header the decision needs is a 400, which both callers treat as a
  temporary failure rather than a verdict on the password.
* ``GET /auth/basic`` — nginx's ``auth_request`` for HTTP Basic (WEBDAV), as Mailu's
  ``/internal/auth/basic``: the ``Authorization`` header's credentials go through the same
  decision with the protocol nginx names (``Auth-Protocol: webdav``); 200 with
  ``Auth-User: <address>`` lets the request through, 401 with a Basic challenge
  (RFC 7617) refuses it. A request with no or unreadable credentials is a challenge, not
  a failed login: every DAV client's first request carries none.
* ``GET /dovecot/userdb/<email>`` — Dovecot's userdb answer: ``{"user", "quota_rule"}``
  (Mailu core/admin/mailu/internal/views/dovecot.py; ``*:bytes=0`` is Dovecot's "no limit"),
  404 for an unknown address.
* ``GET /health`` — the index generation and sizes, where rate limits are counted, and
  how many requests of each kind the gate has answered (:mod:`roost.gate.counters`).

Dovecot's dicts (:mod:`roost.gate.dictproxy`; Mailu's core/base/libs/podop/podop/dovecot.py
speaks the same protocol), one backend for both:

* ``sieve`` — Pigeonhole's ``sieve_before`` location: ``priv/sieve/name/<name>`` gives the
  data ID of the user's before script (a hash of its text) and ``priv/sieve/data/<id>`` its
  text, rendered from the index (:mod:`roost.core.sieve`), so a change of the user's settings
  or of the date is seen by the next message. Each delivery asks for the ID only; Dovecot
  asks for the text, and compiles it, only when the ID differs from its stored binary's.
* ``quota`` — Dovecot's quota_clone sets ``priv/quota/storage`` (bytes) and
  ``priv/quota/messages`` after each change of a mailbox; the bytes are written back to
  ``user.quota_bytes_used`` in batches (:class:`QuotaUsageWriter`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from roost.core.directory import UserEntry
from roost.core.sieve import before_script, script_id
from roost.gate.auth import STATUS_RATELIMIT, AuthRequest, Gate, RequestError
from roost.gate.counters import RequestCounters
from roost.gate.dictproxy import DictError
from roost.gate.homes import MailHomes
from roost.gate.http import Request, Response
from roost.gate.index import Index
from roost.gate.limiter import AuthLimiter
from roost.layout import UnsafeHome
from roost.store.db import Store, StoreError
from roost.store.entities.user import record_quota_usage

__all__ = ["BASIC_PROTOCOLS", "MailboxDict", "QuotaUsageWriter", "Routes", "basic_credentials"]

log = logging.getLogger("roost.gate")

_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"
_USERDB = "/dovecot/userdb/"
#: The protocols nginx may ask about with HTTP Basic credentials.
BASIC_PROTOCOLS = frozenset({"webdav"})
#: The only headers of nginx's Basic request the decision reads; any other (an
#: ``Auth-User`` or second-factor report a client slipped in) is ignored.
_BASIC_HEADERS = ("auth-protocol", "auth-port", "client-ip", "client-port", "auth-ssl")


def _json(status: int, value: Any) -> Response:
    return Response(status, body=json.dumps(value).encode("utf-8"), content_type=_JSON)


def _not_found() -> Response:
    return Response(404, body=b"not found\n", content_type=_TEXT)


def _challenge(realm: str) -> Response:
    """401 with a Basic challenge (RFC 7617 §2, charset per §2.1); nginx's auth_request
    hands the status and ``WWW-Authenticate`` to the client."""
    challenge = f'Basic realm="{realm}", charset="UTF-8"'
    return Response(401, headers=[("WWW-Authenticate", challenge)], content_type=_TEXT)


def basic_credentials(authorization: str) -> tuple[str, str] | None:
    """(user, password) from an ``Authorization: Basic`` value (RFC 7617 §2), or None.

    The user-id ends at the first colon; both halves are UTF-8 (the charset the challenge
    asks for), and bytes that are not UTF-8 are kept as lone surrogates, so such a
    password simply never matches. Anything that is not Basic with strict base64 is None.
    """
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = raw.partition(b":")
    if not colon or not user:
        return None
    return user.decode("utf-8", "surrogateescape"), password.decode("utf-8", "surrogateescape")


class Routes:
    """The request handler given to :class:`~roost.gate.http.HttpServer`."""

    def __init__(
        self,
        gate: Gate,
        index: Index,
        limiter: AuthLimiter,
        homes: MailHomes | None = None,
        counters: RequestCounters | None = None,
        after_userdb: Callable[[str], None] | None = None,
    ) -> None:
        self._gate = gate
        self._index = index
        self._limiter = limiter
        self._homes = homes
        self._counters = counters or RequestCounters()
        #: Called after each user the userdb found: Dovecot asks here only about users its
        #: userdb file (:mod:`roost.gate.userdbfile`) does not hold yet.
        self._after_userdb = after_userdb

    async def __call__(self, request: Request) -> Response:
        path = request.path
        count = self._counters.count
        if path == "/auth/email":
            count("http auth")
            return await self.auth(request)
        if path == "/auth/basic":
            count("http basic")
            return await self.basic(request)
        if path.startswith(_USERDB):
            count("http userdb")
            return self.userdb(path[len(_USERDB) :])
        if path == "/health":
            count("http health")
            return self.health()
        count("http other")
        return _not_found()

    async def auth(self, request: Request) -> Response:
        try:
            auth_request = AuthRequest.from_headers(request.headers)
        except RequestError as exc:
            log.info("auth request refused: %s", exc)
            return Response(400, body=f"{exc}\n".encode(), content_type=_TEXT)
        answer = await self._gate.decide(auth_request)
        return Response(200, headers=answer.headers())

    async def basic(self, request: Request) -> Response:
        headers = {name: request.header(name) for name in _BASIC_HEADERS}
        try:
            template = AuthRequest.from_headers(headers)
        except RequestError as exc:
            log.info("basic auth request refused: %s", exc)
            return Response(400, body=f"{exc}\n".encode(), content_type=_TEXT)
        if template.protocol not in BASIC_PROTOCOLS:
            message = f"Auth-Protocol {template.protocol!r} is not one of {sorted(BASIC_PROTOCOLS)}"
            return Response(400, body=f"{message}\n".encode(), content_type=_TEXT)
        credentials = basic_credentials(request.header("authorization"))
        if credentials is None:
            return _challenge("Login Required")
        user, password = credentials
        auth_request = dataclasses.replace(template, method="plain", user=user, password=password)
        answer = await self._gate.decide(auth_request)
        if answer.ok and answer.user is not None:
            return Response(200, headers=[("Auth-User", answer.user)])
        if answer.status.startswith(STATUS_RATELIMIT):
            return _challenge(answer.status)
        return _challenge("Login Required")

    def userdb(self, email: str) -> Response:
        user = self._index.directory.user(email)
        if user is None:
            return _not_found()
        if self._homes is not None:
            try:
                self._homes.ensure(user.email)
            except UnsafeHome as exc:
                # Dovecot would join mail_root and the name the same way: no home, no login.
                log.warning("userdb: refusing %s: %s", user.email, exc)
                return _not_found()
        if self._after_userdb is not None:
            self._after_userdb(user.email)
        return _json(200, {"user": user.email, "quota_rule": f"*:bytes={user.quota_bytes}"})

    def health(self) -> Response:
        index = self._index
        return _json(
            200,
            {
                "status": "ok",
                "generation": index.generation,
                "loaded_at": index.loaded_at,
                "counts": index.directory.counts(),
                "rate_limits": "memory" if self._limiter.in_memory else "redis",
                "requests": self._counters.snapshot(),
            },
        )


class QuotaUsageWriter:
    """Collects quota_clone's figures and writes them to the store in batches.

    Every delivery and every expunge reports a new total; the latest per user is all that
    matters, so figures wait up to ``interval`` seconds and go out in one transaction. A
    store that cannot be written keeps them for the next round (newer figures win).
    """

    def __init__(self, store: Store, interval: float = 1.0) -> None:
        self._store = store
        self._interval = interval
        self._pending: dict[str, int] = {}
        self._wake = asyncio.Event()

    def note(self, email: str, used: int) -> None:
        self._pending[email] = used
        self._wake.set()

    async def flush(self) -> None:
        """Write what is pending now."""
        batch, self._pending = self._pending, {}
        if not batch:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, record_quota_usage, self._store, batch)
        except StoreError as exc:
            log.warning("cannot record quota usage, keeping it for later: %s", exc)
            self._pending = batch | self._pending

    async def run(self) -> None:
        """Flush whenever figures arrive, at most once per interval (cancel to stop)."""
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._interval)
            self._wake.clear()
            await self.flush()


class MailboxDict:
    """The dict backend Dovecot's mail processes ask: before scripts and quota usage."""

    SIEVE_NAME = "priv/sieve/name/"
    SIEVE_DATA = "priv/sieve/data/"
    QUOTA_STORAGE = "priv/quota/storage"

    def __init__(self, index: Index, usage: QuotaUsageWriter) -> None:
        self._index = index
        self._usage = usage

    def _user(self, user: str) -> UserEntry | None:
        return self._index.directory.user(user)

    def lookup(self, user: str, key: str) -> str | None:
        if not key.startswith((self.SIEVE_NAME, self.SIEVE_DATA)):
            return None
        entry = self._user(user)
        if entry is None:
            return None
        # Today in the gate's local time: the reply's first and last days are whole days.
        script = before_script(entry, date.today())
        # The name maps to the ID of the script as it is now; the data lookup that follows
        # renders again, so a change in between is never served half-applied.
        return script_id(script) if key.startswith(self.SIEVE_NAME) else script

    def commit(self, user: str, changes: Mapping[str, str | None]) -> None:
        raw = changes.get(self.QUOTA_STORAGE)
        if raw is None:
            return
        try:
            used = int(raw)
        except ValueError:
            raise DictError(f"{self.QUOTA_STORAGE}: {raw!r} is not a number of bytes") from None
        entry = self._user(user)
        if entry is not None and used >= 0:
            self._usage.note(entry.email, used)
