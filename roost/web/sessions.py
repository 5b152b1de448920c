"""Server-side web sessions in the stack's Redis, behind an opaque random cookie.

The cookie carries nothing but a random id (256 bits, ``secrets.token_urlsafe``); what a
session knows (the signed-in address, its CSRF token, when it began) stays in Redis, so
it can be ended from the server: at logout, at a password change (every session of the
account), and when it has been idle for SESSION_TIMEOUT or lived for
PERMANENT_SESSION_LIFETIME (Mailu's settings and meanings). Redis keys hold a SHA-256 of
the id, never the id itself, so a copy of Redis's memory opens no session.

Redis database 3 holds them, as in Mailu; the gate's rate limits are in database 2
(:data:`roost.gate.limiter.REDIS_DB`). Redis keeps no snapshot in Roost (its
configuration says why), so a restart of Redis signs everybody out, which is safe.

The cookie is ``HttpOnly``, ``SameSite=Lax`` and ``Secure`` per SESSION_COOKIE_SECURE
(default: unless TLS_FLAVOR=notls). A secure cookie takes the ``__Host-`` prefix
(RFC 6265bis §4.1.3.2): the browser then refuses it unless it is Secure, for ``/`` and
without a Domain, so no sibling host can plant a session id (session fixation).

Requests of one session run side by side (a page and its background requests, two tabs),
so a request writes back only what it changed, and never brings back a session another
request ended meanwhile: a new id is stored as new, a changed session only while it still
exists (``SET ... XX``), and a signed-in session's idle timeout is renewed with ``EXPIRE``,
which renews nothing that is gone. Otherwise a slow page that began before a logout, a
password change or a sign-in elsewhere would write the session back when it finished,
and its cookie with it: the logout would be undone.

A password change ends the account's sessions wherever it is made (CLI, API, import, an
admin's page), not only on the web's own form: a session records, when it is signed in,
a fingerprint of the account's stored password hash (``pw``: an HMAC under a key derived
from SECRET_KEY, so Redis never holds the hash), and :func:`roost.web.auth.signed_in_user`
ends a session whose fingerprint no longer matches the store.
"""

from __future__ import annotations

import json
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import redis.asyncio as aioredis
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from roost.core import webmailtoken, websession
from roost.layout import Layout
from roost.settings import Settings
from roost.store import work
from roost.store.models import User

__all__ = [
    "REDIS_DB",
    "MemorySessionStore",
    "RedisSessionStore",
    "Session",
    "SessionMiddleware",
    "SessionStore",
    "cookie_name",
    "get_session",
    "password_fingerprint",
    "stored_fingerprint",
]

REDIS_DB = websession.REDIS_DB
#: Seconds a session without a signed-in user lives (it only carries the sign-in form's
#: CSRF token): short, so loading the sign-in page in a loop cannot fill Redis for long.
ANONYMOUS_TTL = 900
_KEY = websession.SESSION_KEY
_USER_KEY = "session-user:"


def password_fingerprint(settings: Settings, password_hash: str) -> str:
    """The fingerprint a session records of ``password_hash`` (:mod:`roost.core.websession`)."""
    return websession.password_fingerprint(settings.SECRET_KEY, password_hash)


def stored_fingerprint(settings: Settings, email: str) -> str | None:
    """The fingerprint of ``email``'s password as the store has it now (None: no account)."""
    with work.read(settings) as db:
        user = db.get(User, email)
        return None if user is None else password_fingerprint(settings, user.password)


def cookie_name(settings: Settings) -> str:
    """``__Host-session`` for a Secure cookie, else Mailu's ``session``."""
    return "__Host-session" if settings.session_cookie_secure else "session"


@dataclass
class Session:
    """One request's view of its session; changes are saved after the response."""

    sid: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    #: set when the data changed and must be written back
    modified: bool = False
    #: set when ``sid`` was made by this request, so nothing in the store has it yet
    new: bool = False
    #: set for a signed-in session loaded from the store: its idle timeout is renewed
    renew: bool = False
    #: the id the browser sent, to be deleted when the session is rotated or ended
    stale: list[str] = field(default_factory=list)
    ended: bool = False
    #: set at a sign-in: the middleware records the password fingerprint before saving
    fingerprint_due: bool = False

    @property
    def user(self) -> str | None:
        value = self.data.get("user")
        return value if isinstance(value, str) else None

    @property
    def password_mark(self) -> str | None:
        """The password fingerprint recorded at sign-in (see :func:`password_fingerprint`)."""
        value = self.data.get("pw")
        return value if isinstance(value, str) else None

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.modified = True

    def pop(self, key: str, default: Any = None) -> Any:
        if key in self.data:
            self.modified = True
        return self.data.pop(key, default)

    def ensure(self) -> None:
        """Give the session an id (and a CSRF token) if it has none yet."""
        if self.sid is None:
            self.sid = secrets.token_urlsafe(32)
            self.data.setdefault("created", time.time())
            self.modified = self.new = True
            self.ended = False

    def rotate(self, user: str) -> None:
        """Sign ``user`` in under a new id: the id a visitor had before is worthless now.

        A new CSRF token too, so a token seen before the sign-in cannot be replayed. The
        password fingerprint is taken from the store when the session is saved, except
        after a pending sign-in of the same account (second factor): that one keeps the
        fingerprint of the password it was given, so a password changed in between still
        ends it.
        """
        carried = self.password_mark if self.data.get("pending") == user else None
        if self.sid is not None:
            self.stale.append(self.sid)
        self.sid = secrets.token_urlsafe(32)
        self.data = {"user": user, "created": time.time(), "csrf": secrets.token_urlsafe(32)}
        if carried is not None:
            self.data["pw"] = carried
        self.fingerprint_due = carried is None
        self.modified = self.new = True
        self.ended = False

    def rotate_pending(self, user: str, second_factor: str, target: str) -> None:
        """A right password whose account still needs a second factor: a new id, and
        ``pending`` instead of ``user``, so no page treats the session as signed in."""
        self.rotate(user)
        del self.data["user"]
        self.data.pop("pw", None)  # the password just checked is the one to record
        self.fingerprint_due = True
        self.data.update(pending=user, second_factor=second_factor, next=target)

    def end(self) -> None:
        """Forget the session here and in Redis; the cookie is expired."""
        if self.sid is not None:
            self.stale.append(self.sid)
        self.sid = None
        self.data = {}
        self.modified = self.new = self.renew = False
        self.ended = True
        self.fingerprint_due = False

    def lost(self) -> None:
        """The store no longer has this session (another request ended it, or it expired
        while this one ran): answer as if it had ended, without deleting anything."""
        self.sid = None
        self.data = {}
        self.modified = self.new = self.renew = False
        self.ended = True


class SessionStore(ABC):
    """Where sessions live: Redis in a stack, memory in unit tests."""

    @abstractmethod
    async def load(self, sid: str) -> dict[str, Any] | None: ...

    @abstractmethod
    async def save(self, sid: str, data: dict[str, Any], ttl: int, *, new: bool) -> bool:
        """Store ``data`` for ``ttl`` s: as a new session when ``new``, else only if the
        session still exists. False: it did not, and nothing was stored."""

    @abstractmethod
    async def renew(self, sid: str, user: str, ttl: int) -> bool:
        """Give an existing session another ``ttl`` s; False if it is gone."""

    @abstractmethod
    async def delete(self, sid: str) -> None: ...

    @abstractmethod
    async def delete_user(self, email: str) -> int:
        """End every session of ``email``; the number ended."""

    @abstractmethod
    async def save_webmail_token(self, sid: str, token_digest: str, record: str, ttl: int) -> None:
        """Keep a webmail token's record as session ``sid``'s current token for ``ttl`` s
        (:mod:`roost.core.webmailtoken`)."""

    @abstractmethod
    async def current_webmail_token(self, sid: str) -> str | None:
        """The digest of session ``sid``'s current webmail token, or None."""

    @abstractmethod
    async def delete_webmail_token(self, sid: str) -> None:
        """Revoke session ``sid``'s current webmail token."""

    async def close(self) -> None:
        return None


class RedisSessionStore(SessionStore):
    """Sessions as JSON under ``session:<sha256(id)>`` in Redis db 3, with their TTL.

    ``session-user:<email>`` lists the hashed ids of one account, so a password change
    can end them all (Mailu prunes them the same way, by user).
    """

    def __init__(self, client: aioredis.Redis, lifetime: int) -> None:
        self._redis = client
        self._lifetime = lifetime

    @classmethod
    def for_layout(cls, layout: Layout) -> RedisSessionStore:
        client = aioredis.Redis(
            unix_socket_path=str(layout.redis_socket),
            db=REDIS_DB,
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
        )
        return cls(client, layout.settings.PERMANENT_SESSION_LIFETIME)

    async def load(self, sid: str) -> dict[str, Any] | None:
        return webmailtoken.json_object(await self._redis.get(_KEY + webmailtoken.digest(sid)))

    async def save(self, sid: str, data: dict[str, Any], ttl: int, *, new: bool) -> bool:
        key = webmailtoken.digest(sid)
        stored = await self._redis.set(_KEY + key, json.dumps(data), ex=max(1, ttl), xx=not new)
        user = data.get("user")
        if stored and isinstance(user, str):
            pipe = self._redis.pipeline()
            pipe.sadd(_USER_KEY + user, key)
            pipe.expire(_USER_KEY + user, self._lifetime)
            await pipe.execute()
        return bool(stored)

    async def renew(self, sid: str, user: str, ttl: int) -> bool:
        pipe = self._redis.pipeline()
        pipe.expire(_KEY + webmailtoken.digest(sid), max(1, ttl))
        pipe.expire(_USER_KEY + user, self._lifetime)
        renewed, _ = await pipe.execute()
        return bool(renewed)

    async def delete(self, sid: str) -> None:
        await self._redis.delete(_KEY + webmailtoken.digest(sid))

    async def delete_user(self, email: str) -> int:
        members = await self._redis.smembers(_USER_KEY + email)
        keys = [_KEY + (m.decode() if isinstance(m, bytes) else m) for m in members]
        ended = int(await self._redis.delete(*keys)) if keys else 0
        await self._redis.delete(_USER_KEY + email)
        return ended

    async def save_webmail_token(self, sid: str, token_digest: str, record: str, ttl: int) -> None:
        pipe = self._redis.pipeline()
        pipe.set(webmailtoken.token_key(token_digest), record, ex=max(1, ttl))
        pipe.set(webmailtoken.current_key(webmailtoken.digest(sid)), token_digest, ex=max(1, ttl))
        await pipe.execute()

    async def current_webmail_token(self, sid: str) -> str | None:
        raw = await self._redis.get(webmailtoken.current_key(webmailtoken.digest(sid)))
        return raw.decode() if isinstance(raw, bytes) else raw

    async def delete_webmail_token(self, sid: str) -> None:
        current = await self.current_webmail_token(sid)
        keys = [webmailtoken.current_key(webmailtoken.digest(sid))]
        if current is not None:
            keys.append(webmailtoken.token_key(current))
        await self._redis.delete(*keys)

    async def close(self) -> None:
        await self._redis.aclose()


class MemorySessionStore(SessionStore):
    """The same behaviour in this process (unit tests); expiry by a clock."""

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self.items: dict[str, tuple[float, dict[str, Any]]] = {}
        self.tokens: dict[str, tuple[float, str, str]] = {}

    async def load(self, sid: str) -> dict[str, Any] | None:
        key = webmailtoken.digest(sid)
        return json.loads(json.dumps(self.items[key][1])) if self._alive(key) else None

    def _alive(self, key: str) -> bool:
        item = self.items.get(key)
        return item is not None and item[0] > self._clock()

    async def save(self, sid: str, data: dict[str, Any], ttl: int, *, new: bool) -> bool:
        key = webmailtoken.digest(sid)
        if not new and not self._alive(key):
            return False
        self.items[key] = (self._clock() + ttl, json.loads(json.dumps(data)))
        return True

    async def renew(self, sid: str, user: str, ttl: int) -> bool:
        key = webmailtoken.digest(sid)
        if not self._alive(key):
            return False
        self.items[key] = (self._clock() + ttl, self.items[key][1])
        return True

    async def delete(self, sid: str) -> None:
        self.items.pop(webmailtoken.digest(sid), None)

    async def delete_user(self, email: str) -> int:
        keys = [k for k, (_, data) in self.items.items() if data.get("user") == email]
        for key in keys:
            del self.items[key]
        return len(keys)

    async def save_webmail_token(self, sid: str, token_digest: str, record: str, ttl: int) -> None:
        self.tokens[sid] = (self._clock() + ttl, token_digest, record)

    async def current_webmail_token(self, sid: str) -> str | None:
        item = self.tokens.get(sid)
        return None if item is None or item[0] <= self._clock() else item[1]

    async def delete_webmail_token(self, sid: str) -> None:
        self.tokens.pop(sid, None)


def get_session(request: Request) -> Session:
    """The request's session (put there by :class:`SessionMiddleware`)."""
    session = request.scope.get("roost.session")
    if not isinstance(session, Session):
        raise RuntimeError("SessionMiddleware is not installed")
    return session


class SessionMiddleware:
    """Loads the session named by the cookie and saves it (and the cookie) afterwards.

    A pure ASGI middleware: the response's headers get the cookie before they are sent,
    and streaming bodies pass untouched. A session with a user is refreshed for another
    SESSION_TIMEOUT at each request, up to PERMANENT_SESSION_LIFETIME from its start.
    """

    def __init__(
        self,
        app: ASGIApp,
        store: SessionStore,
        settings: Settings,
        fingerprint: Callable[[str], str | None] | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self.settings = settings
        #: the account's current password fingerprint, recorded at each sign-in
        self.fingerprint = fingerprint or partial(stored_fingerprint, settings)
        self.cookie = cookie_name(settings)
        self.secure = settings.session_cookie_secure

    async def _load(self, scope: Scope) -> Session:
        request = Request(scope)
        sid = request.cookies.get(self.cookie)
        if not sid or len(sid) > 128:
            return Session()
        data = await self.store.load(sid)
        if data is None:
            return Session()
        created = data.get("created")
        if (
            not isinstance(created, (int, float))
            or time.time() - created > self.settings.PERMANENT_SESSION_LIFETIME
        ):
            await self.store.delete(sid)
            return Session()
        # A signed-in session's idle timeout is renewed at each request.
        return Session(sid=sid, data=data, renew=isinstance(data.get("user"), str))

    def _ttl(self, session: Session) -> int:
        if session.user is None:
            return ANONYMOUS_TTL
        age = time.time() - float(session.data.get("created", time.time()))
        left = self.settings.PERMANENT_SESSION_LIFETIME - age
        return max(1, int(min(self.settings.SESSION_TIMEOUT, left)))

    def _cookie(self, session: Session) -> str | None:
        parts: list[str]
        if session.sid is not None and (session.modified or session.renew):
            parts = [f"{self.cookie}={session.sid}", f"Max-Age={self._ttl(session)}"]
        elif session.ended:
            parts = [f"{self.cookie}=", "Max-Age=0"]
        else:
            return None
        parts += ["Path=/", "HttpOnly", "SameSite=Lax"]
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)

    async def _write_back(self, session: Session) -> None:
        """Store what this request changed; a session gone meanwhile stays gone."""
        if session.sid is None:
            return
        if session.modified:
            kept = await self.store.save(
                session.sid, session.data, self._ttl(session), new=session.new
            )
        elif session.renew and session.user is not None:
            kept = await self.store.renew(session.sid, session.user, self._ttl(session))
        else:
            return
        if not kept:
            session.lost()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        session = await self._load(scope)
        scope["roost.session"] = session

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                for sid in session.stale:
                    await self.store.delete(sid)
                session.stale.clear()
                if session.sid is not None and session.fingerprint_due:
                    email = session.user or session.get("pending")
                    mark = self.fingerprint(email) if isinstance(email, str) else None
                    session.data["pw"] = mark or ""  # "" matches no account: ended at once
                    session.fingerprint_due = False
                await self._write_back(session)
                cookie = self._cookie(session)
                if cookie is not None:
                    headers = list(message.get("headers", []))
                    headers.append((b"set-cookie", cookie.encode("latin-1")))
                    message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_cookie)
