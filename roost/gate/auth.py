"""The one login decision, for every protocol.

nginx's mail module asks with the auth_http protocol (ngx_mail_auth_http_module: request
headers ``Auth-Method``, ``Auth-User``, ``Auth-Pass``, ``Auth-Protocol``, ``Auth-Port``,
``Client-IP``...; answer headers ``Auth-Status``, ``Auth-Server``, ``Auth-Port``,
``Auth-Error-Code``, ``Auth-Wait``), and Dovecot's Lua passdb asks for IMAP, POP3, SMTP
submission and ManageSieve logins with the same headers. Both land in :meth:`Gate.decide`,
so app tokens, ``enable_imap``/``enable_pop``, AUTH_REQUIRE_TOKENS, rate limits and the
fail2ban log lines are identical everywhere.

The sequence is Mailu's (``core/admin/mailu/internal/views/auth.py`` and ``nginx.py``),
with deliberate changes so that an attacker can neither lock a user out nor starve the
server:

* an AUTH attempt on port 25 (nginx offers no AUTH there, but still asks auth_http about
  an ``AUTH PLAIN``/``LOGIN`` a client sends anyway) is refused and spends no budget: no
  account can be guessed there, and counting it let five such attempts close a whole /24
  to IMAP and submission;
* the budgets and trusted (network, account) pairs of :mod:`roost.gate.limiter`: an
  account over its budget stays open from the networks it logged in from lately;
* a password shaped like an app token bypasses the rate limits only when it *is* one of the
  user's tokens (Mailu skips the check on the shape alone); a refused network's token-shaped
  guess is checked against the tokens only (one PBKDF2 round each), never the password;
* a repeated wrong password is refused from :class:`~roost.core.passwords.FailedGuesses`
  without hashing, and every password hash runs through a bounded, per-network fair queue
  (:mod:`roost.gate.workqueue`), so parallel guessers cannot push real logins past
  Dovecot's 5-second wait;
* a guess for a name that is no account is verified against a dummy hash of the same cost,
  so the time of the answer does not tell which accounts exist;
* a disabled account, or a protocol switched off for it, answers exactly like a wrong
  password (core checks the password first), so an answer never confirms a password;
* Roost's two-factor login: for a user who has it on, a password no longer opens IMAP,
  POP3, SMTP or ManageSieve (unless AUTH_TOTP_MAIL_PASSWORDS), only app tokens do, and
  the log line says so; a good web password is only the first step, which the answer's
  ``Auth-2FA`` header tells the web application (``required``: ask for a code; ``enrol``:
  the domain or AUTH_REQUIRE_TOTP wants two-factor login and the user has none yet).
  The web then reports the second step here (``Auth-Second-Factor``, proven with a key
  only holders of SECRET_KEY can make): ``check`` before a code is tried, answered like
  a password login from that network (rate-limited once the budget is spent), ``failed``
  for a wrong code, counted and logged exactly like a wrong password, and ``passed``,
  which only then trusts the (network, account) pair. So a password alone cannot buy
  unlimited guesses at six digits.

A password hash that needs upgrading is written back to the store after the answer has gone
out.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from sqlalchemy import update

from roost.core.credentials import (
    PASSWORD_ONLY,
    SECOND_FACTOR_REQUIRED,
    Login,
    LoginResult,
    check_login,
    failure_context,
    find_user,
    quick_login,
    second_factor,
    token_login,
)
from roost.core.directory import UserEntry
from roost.core.ipnet import parse_ip
from roost.core.passwords import CredentialCache, FailedGuesses, dummy_hash
from roost.core.ratelimit import password_fingerprint
from roost.core.webmailtoken import looks_like_token
from roost.gate.index import Index
from roost.gate.limiter import AuthLimiter, Budget
from roost.gate.webmail import WebmailTokens, webmail_listener
from roost.gate.workqueue import FairQueue, QueueFull
from roost.layout import POSTFIX_FRONT_PORT, Layout
from roost.settings import Settings
from roost.store.models import Token, User

__all__ = [
    "PROTOCOLS",
    "SECOND_FACTOR_HEADER",
    "SECOND_FACTOR_KEY_HEADER",
    "SECOND_FACTOR_STEPS",
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
STATUS_PROXIED_LOOPBACK = "Mail from a loopback address through the proxy refused"
#: Said (in the log, and in the answer for the client) when the account's budget, not the
#: network's, refuses a login: the owner's way in from a new network.
TOKEN_HINT = "An app token works from anywhere."

# Mailu's Auth-Error-Code per protocol for (bad credentials, STARTTLS required, rate
# limited). These are what the client finally reads (nginx: the SMTP/IMAP/POP3 reply; the
# Lua passdb hands them to Dovecot).
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
    # The web application's sign-in (roost.web.gatelogin); it reads Auth-Status only.
    "web": ("badauth", "encrypt", "ratelimit"),
    # The web's SimpleLogin-compatible alias endpoint: app tokens only (core.credentials).
    "api": ("badauth", "encrypt", "ratelimit"),
    # CalDAV/CardDAV (WEBDAV): HTTP Basic credentials nginx hands over (routes.basic).
    "webdav": ("badauth", "encrypt", "ratelimit"),
}
#: Protocols the gate decides logins for (Dovecot service names; nginx's smtp).
PROTOCOLS = frozenset(_CODES)

#: The web's report on a login's second step, and its proof (see the module doc).
SECOND_FACTOR_HEADER = "Auth-Second-Factor"
SECOND_FACTOR_KEY_HEADER = "Auth-Second-Factor-Key"
SECOND_FACTOR_STEPS = frozenset({"check", "failed", "passed"})
#: Seconds in which the same wrong code counts once (RFC 6238's step): another step, another
#: guess, so repeating one code all day is not a free guess each time.
_CODE_STEP = 30

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


@functools.lru_cache(maxsize=4096)
def _client_ip(text: str) -> str | None:
    """Client-Ip in its canonical form, or None (memoised: the same clients log in again
    and again, and formatting an address is dearer than the rest of the header)."""
    addr = parse_ip(text)
    return None if addr is None else str(addr)


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """One auth_http request, decoded (ngx_mail_auth_http_module's request headers)."""

    method: str
    user: str
    password: str
    protocol: str
    port: int
    client_ip: str
    client_port: str
    ssl: bool
    #: the web's second-step report (``check``, ``failed``, ``passed``) and its key
    second_factor: str = ""
    second_factor_key: str = ""

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
        ip_text = headers.get("client-ip", "")
        # Longer than any address (IPv6 with a zone) is none, and is not memoised.
        client_ip = _client_ip(ip_text) if len(ip_text) <= 64 else None
        if client_ip is None:
            raise RequestError(f"Client-Ip {ip_text!r} is not an address")
        client_port = headers.get("client-port", "").strip()
        return cls(
            method=headers.get("auth-method", "").strip().lower(),
            user=_percent_decode(headers.get("auth-user", "")),
            password=_percent_decode(headers.get("auth-pass", "")),
            protocol=protocol,
            port=int(port_text),
            client_ip=client_ip,
            client_port=client_port if client_port.isascii() and client_port.isdigit() else "0",
            ssl=headers.get("auth-ssl", "").strip().lower() == "on",
            second_factor=headers.get(SECOND_FACTOR_HEADER.lower(), "").strip().lower(),
            second_factor_key=headers.get(SECOND_FACTOR_KEY_HEADER.lower(), "").strip(),
        )


@dataclass(frozen=True, slots=True)
class AuthAnswer:
    """The auth_http answer: always HTTP 200, the outcome in headers (as nginx expects)."""

    status: str
    error_code: str | None = None
    server: str | None = None
    port: int | None = None
    user: str | None = None
    user_exists: bool | None = None
    wait: int | None = None
    #: Web logins only: what the web must still ask for (``required``, ``enrol``).
    second_factor: str | None = None

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
        if self.second_factor is not None:
            fields.append(("Auth-2FA", self.second_factor))
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


def second_factor_key(settings: Settings) -> str:
    """The key the web application proves its second-factor reports with.

    Derived from SECRET_KEY, which only root's daemons read: nginx (which may open the
    same socket) and Dovecot (which has the TCP secret) cannot make it, so nobody else
    can spend an account's budget or mark a network as trusted through these reports.
    """
    return hmac.new(
        settings.SECRET_KEY.encode("utf-8"), b"ROOST_WEB_SECOND_FACTOR", hashlib.sha256
    ).hexdigest()


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
    #: Password checks that may wait for a thread, in all and per client network. With
    #: ~0.2 s per check and two threads, 16 waiting is under 2 s: well inside Dovecot's 5 s.
    QUEUE_CAPACITY = 16
    QUEUE_PER_NETWORK = 4

    def __init__(
        self,
        settings: Settings,
        index: Index,
        limiter: AuthLimiter,
        *,
        cache: CredentialCache | None = None,
        queue: FairQueue | None = None,
        webmail: WebmailTokens | None = None,
    ) -> None:
        self._settings = settings
        self._layout = Layout(settings)
        self._index = index
        self._limiter = limiter
        self._cache = cache if cache is not None else CredentialCache()
        self.queue = queue or FairQueue(
            self.WORKERS,
            capacity=self.QUEUE_CAPACITY,
            per_network=self.QUEUE_PER_NETWORK,
            name="gate-auth",
        )
        self._failed = FailedGuesses()
        self._dummy = dummy_hash()
        self._require_tokens = bool(getattr(settings, "AUTH_REQUIRE_TOKENS", False))
        self._totp_passwords = bool(getattr(settings, "AUTH_TOTP_MAIL_PASSWORDS", False))
        self._require_totp = bool(getattr(settings, "AUTH_REQUIRE_TOTP", False))
        self._fp_key = fingerprint_key(settings)
        self._web_key = second_factor_key(settings)
        #: WEBMAIL=roundcube: the single sign-on tokens of its listeners (None: webmail off)
        self._webmail = webmail
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

    def _rate_limited(self, request: AuthRequest, hint: bool = False) -> AuthAnswer:
        status = f"{STATUS_RATELIMIT}. {TOKEN_HINT}" if hint else STATUS_RATELIMIT
        return self._failure(request, 2, status)

    def _backend(self, request: AuthRequest) -> tuple[str | None, int | None]:
        """Where nginx proxies an accepted session to.

        Only mail arriving on port 25 is proxied by nginx (to Postfix's XCLIENT listener,
        ARCHITECTURE "Inbound mail"); every other login is asked by the Dovecot that serves
        the session itself, which needs no proxy target.
        """
        if request.protocol == "smtp" and request.method in ("", "none"):
            return self._layout.internal_address, POSTFIX_FRONT_PORT
        return None, None

    def _proxied_loopback(self, ip: str) -> bool:
        """Under PROXY_PROTOCOL on 25 every client there is one a proxy of REAL_IP_FROM
        names (or a stranger's own address). Named as 127.0.0.1 or ::1, Postfix would take
        it for local ("mynetworks") and let it relay without a login; no client of Roost's
        own comes that way (they use the internal port), so such a session is refused."""
        addr = parse_ip(ip)
        return self._settings.proxy_protocol(25) and addr is not None and addr.is_loopback

    # -- the decision ------------------------------------------------------------------------

    async def decide(self, request: AuthRequest) -> AuthAnswer:
        """Answer one auth_http request."""
        ip = request.client_ip
        if request.second_factor or request.second_factor_key:
            return await self._second_step(request)

        # Port 25 takes mail, not logins. nginx still asks about an AUTH PLAIN/LOGIN sent
        # there; it is refused and counts against nothing (see the module doc).
        if request.port == 25 and request.method not in ("", "none"):
            log.info("AUTH attempt on port 25 from %s refused", ip)
            return AuthAnswer(STATUS_NO_AUTH, "502 5.5.1")

        # Unauthenticated mail delivery.
        if request.method in ("", "none"):
            if request.protocol not in ("smtp", "lmtp"):
                return self._failure(request, 0, STATUS_BADAUTH)
            if (
                self._settings.INBOUND_TLS_ENFORCE
                and request.protocol == "smtp"
                and not request.ssl
            ):
                return self._failure(request, 1, STATUS_STARTTLS)
            if request.port == 25 and self._proxied_loopback(ip):
                log.warning("Mail on port 25 from %s through the proxy refused", ip)
                return AuthAnswer(STATUS_PROXIED_LOOPBACK, "550 5.7.1")
            server, port = self._backend(request)
            return AuthAnswer(STATUS_OK, server=server, port=port)
        if request.method not in ("plain", "login"):
            # CRAM-MD5 and the like send no password to check.
            return self._failure(request, 0, STATUS_BADAUTH)

        directory = self._index.directory
        user = find_user(directory, request.user)
        email = user.email if user is not None else None
        if webmail_listener(request.protocol, request.port):
            return await self._webmail_login(request, user)
        if looks_like_token(request.password):
            # A webmail token anywhere else (a public port, the web sign-in) is worthless:
            # refused without a hash, and counted like a wrong password.
            outside = "webmail token outside the webmail's listeners"
            refused = Login(user, LoginResult.BAD_CREDENTIALS, reason=outside)
            return await self._refused(request, refused)

        # The budgets first: a refused login costs no password hash. Only a real app token
        # gets through a spent budget, and checking tokens is cheap.
        budgets = await self._limiter.login_check(ip, email)
        if budgets.budget is not None:
            login = None
            if user is not None and request.protocol not in PASSWORD_ONLY:
                login = token_login(directory, user, request.password, ip, self._cache)
            if login is not None and login.ok:
                return await self._accepted(request, login)
            return self._refuse(request, budgets.budget, email)

        login = quick_login(
            directory,
            request.user,
            request.password,
            request.protocol,
            ip,
            self._cache,
            require_token=self._require_tokens,
            equal_time=True,
            totp_passwords=self._totp_passwords,
        )
        if login is None:
            context = failure_context(directory, user, request.user)
            if self._failed.seen(context, request.password):
                # The same wrong password again: the answer is known without hashing.
                result = LoginResult.UNKNOWN_USER if user is None else LoginResult.BAD_CREDENTIALS
                login = Login(user, result, reason="unknown user" if user is None else "badauth")
            else:
                trusted = email is not None and await self._limiter.trusted(ip, email)
                check = functools.partial(
                    check_login,
                    directory,
                    request.user,
                    request.password,
                    request.protocol,
                    ip,
                    self._cache,
                    require_token=self._require_tokens,
                    dummy_hash=self._dummy,
                    totp_passwords=self._totp_passwords,
                )
                try:
                    login = await self.queue.run(self._limiter.network(ip), check, priority=trusted)
                except QueueFull:
                    log.warning(
                        "Login attempt for: %s: deferred: too many password checks waiting",
                        self._where(request),
                    )
                    return self._rate_limited(request)
                if login.plain_guess:
                    self._failed.add(context, request.password)
                    self.queue.failed(self._limiter.network(ip))
        self._store_rehash(login)
        if login.ok and login.user is not None:
            return await self._accepted(request, login, renew_trust=not budgets.trust_fresh)
        return await self._refused(request, login)

    async def _webmail_login(self, request: AuthRequest, user: UserEntry | None) -> AuthAnswer:
        """A login on a webmail listener: its single sign-on token or nothing.

        No rate limit applies and no failure is counted: every user's webmail logins come
        from the same loopback address, so a budget there would let one user close the
        webmail to all, and a token (256 random bits) is never guessed. The log line says
        ``failed: webmail:``, not ``badauth``, so fail2ban never bans the loopback address.
        enable_imap does not close the webmail, as in Mailu (its webmail ports).
        """
        if self._webmail is None:
            reason: str | None = "the webmail is off"
        elif user is None:
            reason = "unknown user"
        elif not user.enabled:
            reason = "account disabled"
        else:
            reason = await self._webmail.refusal(request.password, user)
        if reason is None and user is not None:
            log.info("Login attempt for: %s: success: webmail token", self._where(request))
            return AuthAnswer(STATUS_OK, user=user.email, user_exists=True)
        log.info("Login attempt for: %s: failed: webmail: %s", self._where(request), reason)
        return self._failure(request, 0, STATUS_BADAUTH, user=request.user, exists=user is not None)

    def _where(self, request: AuthRequest) -> str:
        return (
            f"{_log_safe(request.user)}/{request.protocol}/{request.port} "
            f"from: {request.client_ip}/{request.client_port}"
        )

    def _refuse(self, request: AuthRequest, budget: Budget, email: str | None) -> AuthAnswer:
        ip = request.client_ip
        if budget is Budget.NETWORK:
            log.warning("Authentication attempt from %s has been rate-limited.", ip)
            return self._rate_limited(request)
        log.warning(
            "Authentication attempt from %s for %s has been rate-limited. %s",
            ip,
            email,
            TOKEN_HINT,
        )
        return self._rate_limited(request, hint=True)

    async def _accepted(
        self, request: AuthRequest, login: Login, *, renew_trust: bool = True
    ) -> AuthAnswer:
        assert login.user is not None
        needs = None
        if request.protocol in PASSWORD_ONLY:
            needs = second_factor(self._index.directory, login.user, self._require_totp)
        # A good login trusts (network, account) for a while; never one on port 25, and a
        # password still waiting for its code only once the code is right (_second_step).
        if request.port != 25 and needs != SECOND_FACTOR_REQUIRED:
            await self._limiter.succeeded(request.client_ip, login.user.email, renew=renew_trust)
        if log.isEnabledFor(logging.INFO):  # the line is not even formatted otherwise
            how = f"token-{login.token_id}" if login.via_token else "password"
            log.info("Login attempt for: %s: success: %s", self._where(request), how)
            if needs is not None:
                log.info("Login attempt for: %s: second factor: %s", self._where(request), needs)
        server, port = self._backend(request)
        return AuthAnswer(
            STATUS_OK,
            server=server,
            port=port,
            user=login.user.email,
            user_exists=True,
            second_factor=needs,
        )

    async def _second_step(self, request: AuthRequest) -> AuthAnswer:
        """The web's report on the second step of a web login (see the module doc).

        The web checks the code itself (roost.store.entities.user.verify_second_factor);
        the budgets, the trust and the log lines stay here, with every other login's.
        """
        ip = request.client_ip
        genuine = hmac.compare_digest(
            request.second_factor_key.encode("latin-1"), self._web_key.encode("ascii")
        )
        if (
            not genuine
            or request.protocol not in PASSWORD_ONLY
            or request.second_factor not in SECOND_FACTOR_STEPS
        ):
            log.warning("second-factor report from %s refused: not the web application's", ip)
            return self._failure(request, 0, STATUS_BADAUTH)
        user = find_user(self._index.directory, request.user)
        if user is None:
            return self._failure(request, 0, STATUS_BADAUTH)
        email = user.email
        if request.second_factor == "check":
            refusal = await self._limiter.refusal(ip, email)
            if refusal is not None:
                return self._refuse(request, refusal, email)
            return AuthAnswer(STATUS_OK, user=email, user_exists=True)
        if request.second_factor == "passed":
            await self._limiter.succeeded(ip, email)
            log.info("Login attempt for: %s: success: second factor", self._where(request))
            return AuthAnswer(STATUS_OK, user=email, user_exists=True)
        shown = password_fingerprint(self._fp_key, request.password)
        log.info(
            "Login attempt for: %s: failed: badauth: %s (second factor refused)",
            self._where(request),
            shown,
        )
        step = int(time.time() // _CODE_STEP)
        counted = password_fingerprint(self._fp_key, f"second factor {step} {request.password}")
        await self._limiter.fail_user(email, ip, counted)
        return self._failure(request, 0, STATUS_BADAUTH, user=request.user, exists=True)

    async def _refused(self, request: AuthRequest, login: Login) -> AuthAnswer:
        fingerprint = password_fingerprint(self._fp_key, request.password)
        # The line ends with the fingerprint for guesses (what fail2ban matches); a failure
        # with the right password (account or protocol disabled, token from the wrong
        # network, AUTH_REQUIRE_TOKENS) says why, for the administrator.
        detail = "" if login.plain_guess or not login.reason else f" ({login.reason})"
        log.info(
            "Login attempt for: %s: failed: badauth: %s%s",
            self._where(request),
            fingerprint,
            detail,
        )
        if login.user is not None:
            await self._limiter.fail_user(login.user.email, request.client_ip, fingerprint)
        else:
            await self._limiter.fail_unknown(request.client_ip, request.user)
        return self._failure(
            request, 0, STATUS_BADAUTH, user=request.user, exists=login.user is not None
        )

    # -- hash upgrades -----------------------------------------------------------------------

    def _store_rehash(self, login: Login) -> None:
        """Write upgraded hashes back in the background (Mailu re-hashes on login too)."""
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
        self.queue.shutdown()


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
