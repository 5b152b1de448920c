"""The gate's check of the webmail's single sign-on tokens (:mod:`roost.core.webmailtoken`).

A login on one of the webmail's listeners (``roost.layout.WEBMAIL_LISTENERS``: Dovecot's
IMAP and ManageSieve, Postfix's submission, all on the internal loopback address) must
carry such a token, and a token opens nothing else. The token's record and the SSO
session it names are read from the web's Redis database at each login, so a sign-out, a
password change or an expired session refuses the next one at once.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from roost.core import webmailtoken, websession
from roost.core.directory import UserEntry
from roost.layout import WEBMAIL_LISTENERS
from roost.settings import Settings

__all__ = ["WebmailTokens", "webmail_listener"]

#: Seconds a lookup may wait for Redis before the login fails (temporarily).
_TIMEOUT = 2.0


def webmail_listener(protocol: str, port: int) -> bool:
    """Whether a login asked about as ``protocol`` on ``port`` came to a webmail listener.

    Only Dovecot (with the gate's secret) names these ports: nginx's auth_http asks about
    port 25 and WebDAV only, and Postfix's webmail listener is told apart by the SASL
    service name it gives Dovecot, which Dovecot's Lua maps to its port.
    """
    return (protocol, port) in WEBMAIL_LISTENERS


class WebmailTokens:
    """Reads token records and sessions from the web's Redis database (db 3)."""

    def __init__(self, settings: Settings, client: aioredis.Redis) -> None:
        self._settings = settings
        self._redis = client

    @classmethod
    def for_socket(cls, settings: Settings, socket_path: str) -> WebmailTokens:
        client = aioredis.Redis(
            unix_socket_path=socket_path,
            db=websession.REDIS_DB,
            socket_timeout=_TIMEOUT,
            socket_connect_timeout=_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(settings, client)

    async def refusal(self, token: str, user: UserEntry) -> str | None:
        """Why ``token`` does not log ``user`` in, or None (it does)."""
        if not webmailtoken.looks_like_token(token):
            return "password refused: the webmail's listeners take its tokens only"
        token_digest = webmailtoken.digest(token)
        try:
            raw_record = await self._redis.get(webmailtoken.token_key(token_digest))
            raw_current = raw_session = None
            session = None if raw_record is None else webmailtoken.session_of(raw_record)
            if session is not None:
                raw_current, raw_session = await self._redis.mget(
                    webmailtoken.current_key(session), websession.SESSION_KEY + session
                )
        except RedisError as exc:
            return f"webmail token not checked: Redis: {exc}"
        return webmailtoken.refusal(
            token,
            user.email,
            raw_record,
            raw_current,
            raw_session,
            websession.password_fingerprint(self._settings.SECRET_KEY, user.password_hash),
            self._settings.PERMANENT_SESSION_LIFETIME,
        )

    async def close(self) -> None:
        await self._redis.aclose()
