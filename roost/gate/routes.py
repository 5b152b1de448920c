"""The gate's HTTP endpoints (ARCHITECTURE "The gate's protocols").

* ``GET /auth/email`` — nginx's auth_http protocol (ngx_mail_auth_http_module) and Dovecot's
  Lua passdb: always HTTP 200 with the decision in ``Auth-*`` headers (reference §1.4);
  a request missing a header the decision needs is a 400, which both callers treat as a
  temporary failure rather than a verdict on the password.
* ``GET /dovecot/userdb/<email>`` — Dovecot's userdb answer: ``{"user", "quota_rule"}``
  (reference §1.3; ``*:bytes=0`` is Dovecot's "no limit"), 404 for an unknown address.
* ``GET /health`` — the index generation and sizes, and where rate limits are counted.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from roost.gate.auth import AuthRequest, Gate, RequestError
from roost.gate.http import Request, Response
from roost.gate.index import Index
from roost.gate.limiter import AuthLimiter

__all__ = ["Routes"]

log = logging.getLogger("roost.gate")

_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"
_USERDB = "/dovecot/userdb/"


def _json(status: int, value: Any) -> Response:
    return Response(status, body=json.dumps(value).encode("utf-8"), content_type=_JSON)


def _not_found() -> Response:
    return Response(404, body=b"not found\n", content_type=_TEXT)


class Routes:
    """The request handler given to :class:`~roost.gate.http.HttpServer`."""

    def __init__(self, gate: Gate, index: Index, limiter: AuthLimiter) -> None:
        self._gate = gate
        self._index = index
        self._limiter = limiter

    async def __call__(self, request: Request) -> Response:
        path = request.path
        if path == "/auth/email":
            return await self.auth(request)
        if path.startswith(_USERDB):
            return self.userdb(path[len(_USERDB):])
        if path == "/health":
            return self.health()
        return _not_found()

    async def auth(self, request: Request) -> Response:
        try:
            auth_request = AuthRequest.from_headers(request.headers)
        except RequestError as exc:
            log.info("auth request refused: %s", exc)
            return Response(400, body=f"{exc}\n".encode(), content_type=_TEXT)
        answer = await self._gate.decide(auth_request)
        return Response(200, headers=answer.headers())

    def userdb(self, email: str) -> Response:
        user = self._index.directory.user(email)
        if user is None:
            return _not_found()
        return _json(200, {"user": user.email, "quota_rule": f"*:bytes={user.quota_bytes}"})

    def health(self) -> Response:
        index = self._index
        return _json(200, {
            "status": "ok",
            "generation": index.generation,
            "loaded_at": index.loaded_at,
            "counts": index.directory.counts(),
            "rate_limits": "memory" if self._limiter.in_memory else "redis",
        })
