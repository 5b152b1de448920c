"""The one login decision, for every protocol (DESIGN §1 gate, reference §1.4 and §7.5).

nginx's mail module asks with the auth_http protocol (ngx_mail_auth_http_module: request
headers ``Auth-Method``, ``Auth-User``, ``Auth-Pass``, ``Auth-Protocol``, ``Auth-Port``,
``Client-IP``...; answer headers ``Auth-Status``, ``Auth-Server``, ``Auth-Port``,
``Auth-Error-Code``, ``Auth-Wait``), and Dovecot's Lua passdb asks for IMAP, POP3, SMTP
submission and ManageSieve logins with the same headers. Both land in :meth:`Gate.decide`,
so app tokens, ``enable_imap``/``enable_pop``, rate limits and the fail2ban log lines are
identical everywhere.

The sequence is Mailu's (reference §1.4), with two deliberate changes:

* a password shaped like an app token bypasses the rate limits only when it *is* one of the
  user's tokens: a limited network cannot keep guessing passwords by making them look like
  tokens (Mailu skips the check on the shape alone);
* a disabled account, or a protocol switched off for it, answers exactly like a wrong
  password (core checks the password first), so an answer never confirms a password.

Credential checks are CPU-bound (Argon2id) and run in a small thread pool; a password hash
that needs upgrading is written back to the store after the answer has gone out.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from sqlalchemy import update

from roost.core.credentials import Login, check_login
from roost.core.ipnet import parse_ip
from roost.core.passwords import CredentialCache, is_token_shaped
from roost.core.ratelimit import password_fingerprint
from roost.gate.index import Index
from roost.gate.limiter import AuthLimiter
from roost.layout import POSTFIX_FRONT_PORT, Layout
from roost.settings import Settings
from roost.store.models import Token, User

__all__ = [
    "PROTOCOLS",
    "AuthAnswer",
    "AuthRequest",
    "Gate",
    "RequestError",
]

log = logging.getLogger("roost.gate")

STATUS_OK = "OK"
STATUS_BADAUTH = "Authentication credentials invalid"
STATUS_STARTTLS = "Must issue a STARTTLS command first"
STATUS_RATELIMIT = "Temporary authentication failure (rate-limit)"
STATUS_NO_AUTH = "AUTH not supported"

# Reference §1.4: Auth-Error-Code per protocol for (bad credentials, STARTTLS required,
# rate limited). These are what the client finally reads (nginx: the SMTP/IMAP/POP3 reply;
# the Lua passdb hands them to Dovecot).
_SMTP = ("535 5.7.8", "530 5.7.0", "451 4.3.2")
_CODES: dict[str, tuple[str, str, str]] = {
    "imap": ("AUTHENTICATIONFAILED", "PRIVACYREQUIRED", "LIMIT"),
    "smtp": _SMTP,
    "submission": _SMTP,
    "lmtp": _SMTP,
    "pop3": (
        "-ERR Authentication failed",
        "-ERR Authentication canceled.",
        "-ERR [LOGIN-DELAY] Retry later",
    ),
    "sieve": ("AuthFailed", "ENCRYPT-NEEDED", "AuthFailed"),
}
#: Protocols the gate decides logins for (Dovecot service names; nginx's smtp).
PROTOCOLS = frozenset(_CODES)

#: Longest user name written to the log as is; longer ones are cut (log lines stay lines).
_LOG_USER_MAX = 256


class RequestError(ValueError):
    """An auth request that is missing a header or carries one that cannot be read."""


def _percent_decode(value: str) -> str:
    """Undo the Lua passdb's (and nginx's) percent-encoding of Auth-User and Auth-Pass.

    Header values arrive as Latin-1 text; their bytes, once unquoted, are UTF-8. Bytes that
    are not UTF-8 are kept as lone surrogates so two different wrong passwords still count
    as two, and such a password simply never verifies.
    """
    raw = unquote_to_bytes(value.encode("latin-1"))
    return raw.decode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """One auth_http request, decoded (reference §1.4 request headers)."""

    method: str
    user: str
    password: str
    protocol: str
    port: int
    client_ip: str
    client_port: str
    ssl: bool

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> AuthRequest:
        """Build from lower-case header names; raise RequestError for an unusable request."""
        protocol = headers.get("auth-protocol", "").strip().lower()
        if protocol not in PROTOCOLS:
            raise RequestError(f"Auth-Protocol {protocol!r} is not one of {sorted(PROTOCOLS)}")
        # Dovecot knows no local port for Postfix's SASL requests and leaves the header
        # out; 0 then stands for "unknown", as it does in Dovecot's own logs.
        port_text = headers.get("auth-port", "").strip() or "0"
        if not port_text.isascii() or not port_text.isdigit() or int(port_text) > 65535:
            raise RequestError(f"Auth-Port {port_text!r} is not a port number")
        addr = parse_ip(headers.get("client-ip", ""))
        if addr is None:
            raise RequestError(f"Client-Ip {headers.get('client-ip', '')!r} is not an address")
        client_port = headers.get("client-port", "").strip()
        return cls(
            method=headers.get("auth-method", "").strip().lower(),
            user=_percent_decode(headers.get("auth-user", "")),
            password=_percent_decode(headers.get("auth-pass", "")),
            protocol=protocol,
            port=int(port_text),
            client_ip=str(addr),
            client_port=client_port if client_port.isascii() and client_port.isdigit() else "0",
            ssl=headers.get("auth-ssl", "").strip().lower() == "on",
        )


@dataclass(frozen=True, slots=True)
class AuthAnswer:
    """The auth_http answer: always HTTP 200, the outcome in headers (reference §1.4)."""

    status: str
    error_code: str | None = None
    server: str | None = None
    port: int | None = None
    user: str | None = None
    user_exists: bool | None = None
    wait: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    def headers(self) -> list[tuple[str, str]]:
        """Response header fields, in the order nginx documents them."""
        fields = [("Auth-Status", self.status)]
        if self.server is not None and self.port is not None:
            fields += [("Auth-Server", self.server), ("Auth-Port", str(self.port))]
        if self.user is not None and _header_safe(self.user):
            fields.append(("Auth-User", self.user))
        if self.user_exists is not None:
            fields.append(("Auth-User-Exists", str(self.user_exists)))
        if self.error_code is not None:
            fields.append(("Auth-Error-Code", self.error_code))
        if self.wait is not None:
            fields.append(("Auth-Wait", str(self.wait)))
        return fields


def _header_safe(text: str) -> bool:
    """A value that can go into a header field as is: no controls, no CR/LF injection."""
    return text.isprintable() and "\r" not in text and "\n" not in text


def _escape(ch: str) -> str:
    if ch.isprintable() and not ch.isspace():
        return ch
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _log_safe(text: str) -> str:
    """A user name for a log line: white space and controls escaped, length capped.

    fail2ban reads these lines; a name with spaces or newlines could otherwise forge
    another client's address into a line.
    """
    if len(text) > _LOG_USER_MAX:
        text = text[:_LOG_USER_MAX] + "..."
    if text.isprintable() and not any(ch.isspace() for ch in text):
        return text
    return "".join(map(_escape, text))


def fingerprint_key(settings: Settings) -> bytes:
    """The HMAC key of the 6-hex password fingerprints, derived from SECRET_KEY.

    A sub-key (Mailu derives its TRUNCATED_PW_KEY the same way) so the fingerprints in logs
    say nothing about SECRET_KEY itself.
    """
    return hmac.new(
        settings.SECRET_KEY.encode("utf-8"), b"TRUNCATED_PW_KEY", hashlib.sha256
    ).digest()


class Gate:
    """Makes login decisions; one instance serves every connection of the gate."""

    #: Threads verifying passwords. Argon2id uses 64 MiB and a core per check; two keep a
    #: 2-core host responsive while a burst of logins is verified.
    WORKERS = 2

    def __init__(
        self,
        settings: Settings,
        index: Index,
        limiter: AuthLimiter,
        *,
        cache: CredentialCache | None = None,
    ) -> None:
        self._settings = settings
        self._layout = Layout(settings)
        self._index = index
        self._limiter = limiter
        self._cache = cache if cache is not None else CredentialCache()
        self._pool = ThreadPoolExecutor(self.WORKERS, thread_name_prefix="gate-auth")
        self._fp_key = fingerprint_key(settings)
        self._background: set[asyncio.Task[None]] = set()
        self._rehashing: set[tuple[str, int | None]] = set()

    # -- answers -----------------------------------------------------------------------------

    def _failure(
        self,
        request: AuthRequest,
        kind: int,
        status: str,
        *,
        user: str | None = None,
        exists: bool | None = None,
    ) -> AuthAnswer:
        return AuthAnswer(
            status, _CODES[request.protocol][kind], user=user, user_exists=exists, wait=0
        )

    def _rate_limited(self, request: AuthRequest) -> AuthAnswer:
        return self._failure(request, 2, STATUS_RATELIMIT)

    def _backend(self, request: AuthRequest) -> tuple[str | None, int | None]:
        """Where nginx proxies an accepted session to.

        Only mail arriving on port 25 is proxied by nginx (to Postfix's XCLIENT listener,
        ARCHITECTURE "Inbound mail"); every other login is asked by the Dovecot that serves
        the session itself, which needs no proxy target.
        """
        if request.protocol == "smtp" and request.method in ("", "none"):
            return self._layout.internal_address, POSTFIX_FRONT_PORT
        return None, None

    # -- the decision ------------------------------------------------------------------------

    async def decide(self, request: AuthRequest) -> AuthAnswer:
        """Answer one auth_http request (reference §1.4 decision sequence)."""
        limiter = self._limiter
        ip = request.client_ip

        # 1. Port 25 takes mail, not logins; the attempt counts against the network.
        if request.port == 25 and request.method != "none":
            await limiter.fail_ip(ip)
            log.info("AUTH attempt on port 25 from %s refused", ip)
            return AuthAnswer(STATUS_NO_AUTH, "502 5.5.1")

        # 2-3. The network's budget; a real app token is let through below even when spent.
        token_shaped = is_token_shaped(request.password)
        ip_limited = request.port != 25 and await limiter.ip_limited(ip)
        if ip_limited and not token_shaped:
            log.warning("Authentication attempt from %s has been rate-limited.", ip)
            return self._rate_limited(request)

        # 4. Unauthenticated mail delivery.
        if request.method in ("", "none"):
            if request.protocol not in ("smtp", "lmtp"):
                return self._failure(request, 0, STATUS_BADAUTH)
            if (
                self._settings.INBOUND_TLS_ENFORCE
                and request.protocol == "smtp"
                and not request.ssl
            ):
                return self._failure(request, 1, STATUS_STARTTLS)
            server, port = self._backend(request)
            return AuthAnswer(STATUS_OK, server=server, port=port)
        if request.method not in ("plain", "login"):
            # CRAM-MD5 and the like send no password to check.
            return self._failure(request, 0, STATUS_BADAUTH)

        # 6 (before 5, same outcome, no Argon2 spent): the account's budget.
        directory = self._index.directory
        known = directory.user(request.user)
        if known is not None and not token_shaped and await limiter.user_limited(known.email, ip):
            log.warning(
                "Authentication attempt from %s for %s has been rate-limited.", ip, known.email
            )
            return self._rate_limited(request)
        # 5. Credentials, off the event loop.
        loop = asyncio.get_running_loop()
        login: Login = await loop.run_in_executor(
            self._pool,
            check_login,
            directory,
            request.user,
            request.password,
            request.protocol,
            ip,
            self._cache,
        )
        self._store_rehash(login)

        if token_shaped and not (login.ok and login.via_token):
            # Token-shaped but not a token: the limits apply after all (see module doc).
            if ip_limited:
                log.warning("Authentication attempt from %s has been rate-limited.", ip)
                return self._rate_limited(request)
            if login.user is not None and await limiter.user_limited(login.user.email, ip):
                log.warning(
                    "Authentication attempt from %s for %s has been rate-limited.",
                    ip,
                    login.user.email,
                )
                return self._rate_limited(request)

        where = (
            f"{_log_safe(request.user)}/{request.protocol}/{request.port} "
            f"from: {ip}/{request.client_port}"
        )
        if login.ok and login.user is not None:
            # 7. A good login (never on port 25) exempts the address for a while.
            if request.port != 25:
                await limiter.exempt(ip)
            how = f"token-{login.token_id}" if login.via_token else "password"
            log.info("Login attempt for: %s: success: %s", where, how)
            server, port = self._backend(request)
            return AuthAnswer(
                STATUS_OK, server=server, port=port, user=login.user.email, user_exists=True
            )

        # 7. A failure counts against the account (existing user) or the network.
        fingerprint = password_fingerprint(self._fp_key, request.password)
        # The line ends with the fingerprint for guesses (what fail2ban matches); a failure
        # with the right password (account or protocol disabled, token from the wrong
        # network) says why, for the administrator.
        detail = "" if login.reason in ("", "badauth", "unknown user") else f" ({login.reason})"
        log.info("Login attempt for: %s: failed: badauth: %s%s", where, fingerprint, detail)
        if login.user is not None:
            await limiter.fail_user(login.user.email, ip, fingerprint)
        else:
            await limiter.fail_ip(ip, request.user)
        return self._failure(
            request, 0, STATUS_BADAUTH, user=request.user, exists=login.user is not None
        )

    # -- hash upgrades -----------------------------------------------------------------------

    def _store_rehash(self, login: Login) -> None:
        """Write upgraded hashes back in the background (reference §3.4)."""
        user = login.user
        if user is None:
            return
        if login.rehash:
            self._spawn(user.email, None, user.password_hash, login.rehash)
        if login.token_rehash and login.token_id is not None:
            stored = next(
                (
                    t.password_hash
                    for t in self._index.directory.tokens_of(user.email)
                    if t.id == login.token_id
                ),
                None,
            )
            if stored is not None:
                self._spawn(user.email, login.token_id, stored, login.token_rehash)

    def _spawn(self, email: str, token_id: int | None, old: str, new: str) -> None:
        key = (email, token_id)
        if key in self._rehashing:
            return
        self._rehashing.add(key)
        task = asyncio.get_running_loop().create_task(self._rehash(key, old, new))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _rehash(self, key: tuple[str, int | None], old: str, new: str) -> None:
        email, token_id = key
        loop = asyncio.get_running_loop()
        try:
            changed = await loop.run_in_executor(
                None, _write_hash, self._index, email, token_id, old, new
            )
            if changed:
                log.info(
                    "upgraded the stored %s hash of %s",
                    "password" if token_id is None else f"token-{token_id}",
                    email,
                )
                await self._index.load()
        except Exception as exc:
            log.warning("could not store the upgraded hash of %s: %s", email, exc)
        finally:
            self._rehashing.discard(key)

    async def close(self) -> None:
        """Let pending hash upgrades finish, then stop the worker threads."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)


def _write_hash(index: Index, email: str, token_id: int | None, old: str, new: str) -> bool:
    """Replace ``old`` by ``new`` unless the row changed meanwhile (a password reset wins)."""
    if token_id is None:
        statement = (
            update(User).where(User.email == email, User.password == old).values(password=new)
        )
    else:
        statement = (
            update(Token)
            .where(Token.id == token_id, Token.user_email == email, Token.password == old)
            .values(password=new)
        )
    with index.store.session() as session:
        result = session.execute(statement)
        return bool(getattr(result, "rowcount", 0))
