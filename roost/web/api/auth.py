"""API_TOKEN: the start-up check and the check of every request.

Mailu's rule (core/admin/mailu/api/common.py, https://mailu.io/master/api.html): the header
``Authorization`` carries the token, with or without ``Bearer ``; no header is a 401, a
wrong token a 403 and a hit on the caller's network budget; a network over its budget gets
429 before its token is looked at. Tokens are compared in constant time
(:func:`hmac.compare_digest`).

Roost's changes: a wrong token counts against the limiter's budgets the way a wrong
password does (``roost/gate/limiter.py``: once per distinct token against the API's own
account budget and once per network), and a good token trusts the caller's network, so a
guesser elsewhere cannot shut the administrator's scripts out; and the web server refuses
to start the API with a token anyone could guess (:func:`roost.settings.check_api_token`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets

from starlette.requests import Request

from roost.gate.limiter import AuthLimiter
from roost.layout import Layout
from roost.settings import Settings
from roost.web.api.backend import ApiError

__all__ = [
    "API_ACCOUNT",
    "Authorizer",
    "client_address",
    "presented_token",
]

log = logging.getLogger("roost.web.api")

#: The name the API's failures count under in the limiter: no address can spell it.
API_ACCOUNT = "<api-token>"


def presented_token(header: str) -> str:
    """The token in an Authorization header: ``Bearer <token>`` or the bare token."""
    value = header.strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer" and rest:
        return rest.strip()
    return value


def client_address(request: Request) -> str:
    """Mailu's rule: X-Real-IP, else the peer. The header is believed only from a local
    peer (nginx on loopback or a Unix socket), so nobody else can pick their address."""
    peer = request.client.host if request.client else ""
    try:
        local = not peer or ipaddress.ip_address(peer).is_loopback
    except ValueError:
        local = True  # a Unix socket peer, or a test client
    real = request.headers.get("x-real-ip", "").strip()
    if local and real:
        return real
    return peer


class Authorizer:
    """Checks every request's token; owns the limiter (made in the serving event loop)."""

    def __init__(self, settings: Settings, limiter: AuthLimiter | None = None) -> None:
        self._expected = hashlib.sha256(settings.API_TOKEN.encode()).digest()
        self._settings = settings
        self._limiter = limiter
        # Keyed fingerprints of wrong tokens, so the limiter counts distinct ones and never
        # holds a token (the same idea as the gate's password fingerprints).
        self._key = secrets.token_bytes(32)

    @property
    def limiter(self) -> AuthLimiter:
        if self._limiter is None:
            self._limiter = AuthLimiter(self._settings, Layout(self._settings).redis_socket)
        return self._limiter

    def _matches(self, token: str) -> bool:
        given = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        return hmac.compare_digest(given, self._expected)

    async def __call__(self, request: Request) -> None:
        ip = client_address(request)
        limiter = self.limiter
        try:
            limiter.network(ip)
            counted = True
        except ValueError:
            counted = False  # no address to count under (a Unix socket without X-Real-IP)
        if counted and await limiter.refusal(ip, API_ACCOUNT) is not None:
            raise ApiError(429, "Too many attempts from your IP (rate-limit)")
        header = request.headers.get("authorization")
        if header is None:
            raise ApiError(401, "A valid Authorization header is mandatory")
        token = presented_token(header)
        if len(token) < 4 or not self._matches(token):
            if counted:
                mark = hmac.new(self._key, token.encode(), "sha256").hexdigest()[:16]
                await limiter.fail_user(API_ACCOUNT, ip, mark)
            log.warning("Invalid API token provided by %s.", ip)
            raise ApiError(403, "Invalid API token")
        if counted:
            await limiter.succeeded(ip, API_ACCOUNT)
        log.info("Valid API token provided by %s.", ip)
