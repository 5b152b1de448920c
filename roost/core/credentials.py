"""The pure part of the one login decision every protocol shares.

A login names a user, then the password is tried as an app token (if it is token-shaped)
and as the account password, and the account and protocol switches decide -- Mailu's
``check_credentials`` (``core/admin/mailu/internal/nginx.py``). The gate wraps this with
rate limits, a bounded work queue and log lines; everything here is deterministic given
the directory, the cache and the inputs.

Roost orders the checks so that only a caller who knows a valid credential learns that an
account is disabled: a wrong password for a disabled account is BAD_CREDENTIALS (Mailu
answers "account disabled" before looking at the password, which tells a guesser which
accounts exist and are switched off).

The decision comes in two halves so the gate can keep slow hashing off its event loop and
out of reach of whoever floods it: :func:`quick_login` answers everything that needs no
password hash (unknown names unless timing must be equalised, tokens, cached passwords,
AUTH_REQUIRE_TOKENS), and :func:`check_login` does the rest, verifying a guess for a name
that is no account against a dummy hash of the same cost when one is given.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, replace

from roost.core.address import AddressError, parse_address
from roost.core.directory import Directory, TokenEntry, UserEntry
from roost.core.passwords import (
    CredentialCache,
    is_token_shaped,
    token_allows_ip,
    verify_password,
    verify_token,
)

__all__ = [
    "PASSWORD_ONLY",
    "REQUIRE_TOKEN_REASON",
    "SECOND_FACTOR_ENROL",
    "SECOND_FACTOR_REQUIRED",
    "TOKEN_ONLY",
    "TWO_FACTOR_REASON",
    "Login",
    "LoginResult",
    "check_login",
    "failure_context",
    "find_user",
    "quick_login",
    "second_factor",
    "token_login",
]

#: The log tail of a password refused because AUTH_REQUIRE_TOKENS is on.
REQUIRE_TOKEN_REASON = "password refused: AUTH_REQUIRE_TOKENS"
#: The log tail of a password refused on a mail protocol for a user with two-factor login.
TWO_FACTOR_REASON = "password refused: two-factor login is on, an app token is needed"
#: What a web login still needs after the password (the gate's ``Auth-2FA`` header).
SECOND_FACTOR_REQUIRED = "required"
SECOND_FACTOR_ENROL = "enrol"


class LoginResult(enum.Enum):
    """Outcome of :func:`check_login`."""

    OK = "ok"
    BAD_CREDENTIALS = "bad_credentials"
    UNKNOWN_USER = "unknown_user"
    DISABLED = "disabled"
    PROTOCOL_DISABLED = "protocol_disabled"


@dataclass(frozen=True, slots=True)
class Login:
    """A login decision.

    ``rehash``: a new Argon2id hash to store as the user's password (legacy scheme verified).
    ``token_id``/``token_rehash``: the app token that matched, and a new hash for it when
    its stored one was a legacy format. ``reason``: the tail of the gate's log line, e.g.
    ``token-3``, ``account disabled``, ``badip: token-3``; ``badauth`` and ``unknown user``
    for plain wrong guesses.
    """

    user: UserEntry | None
    result: LoginResult
    via_token: bool = False
    rehash: str | None = None
    token_id: int | None = None
    token_rehash: str | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.result is LoginResult.OK

    @property
    def plain_guess(self) -> bool:
        """A wrong password (or no such account) and nothing else: safe to remember."""
        return self.reason in ("badauth", "unknown user")


# Protocol switches (Mailu's enable_imap/enable_pop columns). Other protocols seen here --
# smtp, submission, sieve, lmtp, web, sso -- have no switch of their own.
_PROTOCOL_SWITCH = {"imap": "enable_imap", "pop3": "enable_pop", "pop": "enable_pop"}
# Protocols where AUTH_REQUIRE_TOKENS does not apply: Mailu refuses passwords only for
# imap, pop3, smtp and sieve, i.e. every mail protocol; web logins and HTTP Basic (webdav,
# which Mailu checks as a web login) keep them.
_TOKENS_NOT_REQUIRED = frozenset({"web", "sso", "webdav"})
# Protocols where a password still logs in a user with two-factor login on: the web
# sign-in, which asks for the code next. Everywhere else (webdav included) only app
# tokens do, as there is no second step to ask for.
_PASSWORD_ALWAYS_OK = frozenset({"web", "sso"})
#: Protocols app tokens do not open: the web sign-in takes the account password only, as
#: Mailu's does, so a token leaked from a mail client cannot change the password.
PASSWORD_ONLY = frozenset({"web", "sso"})
#: Protocols only app tokens open: ``api`` is the web's SimpleLogin-compatible alias
#: endpoint (roost.web.api.anonmail), which takes ``email:token`` and never a password.
TOKEN_ONLY = frozenset({"api"})
#: The log tail of a password refused where only app tokens are taken.
TOKEN_ONLY_REASON = "password refused: app tokens only"


def _check_secret(stored: str, plain: str, cache: CredentialCache) -> tuple[bool, str | None]:
    cached = cache.check(stored, plain)
    if cached is not None:
        return cached, None
    ok, rehash = verify_password(stored, plain)
    if ok:
        cache.remember(stored, plain)
        if rehash:
            cache.remember(rehash, plain)
    return ok, rehash


def _check_token(token: TokenEntry, raw: str, cache: CredentialCache) -> tuple[bool, str | None]:
    cached = cache.check(token.password_hash, raw)
    if cached is not None:
        return cached, None
    ok, rehash = verify_token(token.password_hash, raw)
    if ok:
        cache.remember(token.password_hash, raw)
        if rehash:
            cache.remember(rehash, raw)
    return ok, rehash


#: Longest login name whose parsed form is memoised (an address has at most 64 + 1 + 255).
_MEMO_MAX = 320


@functools.lru_cache(maxsize=4096)
def _address_text(username: str) -> str | None:
    """``username`` as a parsed address (memoised: every login asks about the same few
    names again and again), or None when it is none."""
    try:
        return str(parse_address(username))
    except (AddressError, TypeError):
        return None


def find_user(directory: Directory, username: str) -> UserEntry | None:
    """The account ``username`` names (``x@alternative`` is ``x@primary``), or None."""
    if not isinstance(username, str):
        return None
    # Only names that can be addresses are memoised: 4,096 long junk names would pin
    # megabytes.
    parse = _address_text if len(username) <= _MEMO_MAX else _address_text.__wrapped__
    address = parse(username)
    return None if address is None else directory.user(address)


def token_login(
    directory: Directory, user: UserEntry, password: str, client_ip: str, cache: CredentialCache
) -> Login | None:
    """The login when ``password`` is one of ``user``'s app tokens, else None.

    Cheap whatever the answer (tokens are 128 random bits, hashed with one PBKDF2 round),
    so the gate may ask it even for a network that is over its budget. A token used from
    outside its CIDRs gives a refusal that says so.
    """
    if not is_token_shaped(password):
        return None
    reason = ""
    for token in directory.tokens_of(user.email):
        ok, new_hash = _check_token(token, password, cache)
        if not ok:
            continue
        if not token_allows_ip(token, client_ip):
            reason = f"badip: token-{token.id}"
            continue
        return _switches(
            Login(
                user,
                LoginResult.OK,
                via_token=True,
                token_id=token.id,
                token_rehash=new_hash,
                reason=f"token-{token.id}",
            )
        )
    if reason:
        return Login(user, LoginResult.BAD_CREDENTIALS, reason=reason)
    return None


def _switches(login: Login, protocol: str = "") -> Login:
    """Apply the account's ``enabled`` and protocol switches to a verified credential."""
    user = login.user
    assert user is not None
    if not user.enabled:
        return replace(login, result=LoginResult.DISABLED, reason="account disabled")
    switch = _PROTOCOL_SWITCH.get(protocol)
    if switch is not None and not getattr(user, switch):
        return replace(login, result=LoginResult.PROTOCOL_DISABLED, reason=f"{protocol} disabled")
    return login


def quick_login(
    directory: Directory,
    username: str,
    password: str,
    protocol: str,
    client_ip: str,
    cache: CredentialCache,
    *,
    require_token: bool = False,
    equal_time: bool = False,
    totp_passwords: bool = False,
) -> Login | None:
    """The decision when it needs no slow password hash; None when it does.

    ``equal_time``: a name that is no account needs the slow path too (a dummy hash), so
    that it answers after the same time as a real account. ``totp_passwords`` is
    AUTH_TOTP_MAIL_PASSWORDS: without it, a user with two-factor login on opens mail
    protocols with app tokens only, and the password is not even checked there (a
    password that cannot log in is not worth an Argon2 check, nor an answer about it).
    """
    proto = protocol.lower() if isinstance(protocol, str) else ""
    user = find_user(directory, username)
    if user is None:
        tokens_only = require_token or proto in TOKEN_ONLY
        if equal_time and isinstance(password, str) and password and not tokens_only:
            return None
        return Login(None, LoginResult.UNKNOWN_USER, reason="unknown user")
    if not isinstance(password, str) or not password:
        return Login(user, LoginResult.BAD_CREDENTIALS, reason="badauth")
    by_token = (
        None if proto in PASSWORD_ONLY else token_login(directory, user, password, client_ip, cache)
    )
    if by_token is not None and by_token.result is not LoginResult.BAD_CREDENTIALS:
        return _switches(by_token, proto)
    if proto in TOKEN_ONLY:
        reason = by_token.reason if by_token is not None else TOKEN_ONLY_REASON
        return Login(user, LoginResult.BAD_CREDENTIALS, reason=reason)
    if require_token and proto not in _TOKENS_NOT_REQUIRED:
        # Mailu does not even look at the password then; neither is Argon2 spent on it.
        reason = by_token.reason if by_token is not None else REQUIRE_TOKEN_REASON
        return Login(user, LoginResult.BAD_CREDENTIALS, reason=reason)
    if user.totp_enabled and not totp_passwords and proto not in _PASSWORD_ALWAYS_OK:
        reason = by_token.reason if by_token is not None else TWO_FACTOR_REASON
        return Login(user, LoginResult.BAD_CREDENTIALS, reason=reason)
    if cache.check(user.password_hash, password):
        return _switches(Login(user, LoginResult.OK), proto)
    return None


def failure_context(directory: Directory, user: UserEntry | None, username: str) -> str:
    """What a wrong-password answer for ``username`` depends on, for :class:`FailedGuesses`.

    The stored hashes of the account (password and tokens: a new token or password makes
    old entries stale), or the name itself when it is no account.
    """
    if user is None:
        return "unknown\0" + (username if isinstance(username, str) else "")
    tokens = "\0".join(t.password_hash for t in directory.tokens_of(user.email))
    return f"user\0{user.email}\0{user.password_hash}\0{tokens}"


def check_login(
    directory: Directory,
    username: str,
    password: str,
    protocol: str,
    client_ip: str,
    cache: CredentialCache,
    *,
    require_token: bool = False,
    dummy_hash: str | None = None,
    totp_passwords: bool = False,
) -> Login:
    """Decide one login. Never raises, whatever the inputs.

    ``username`` is an address; ``x@alternative`` logs in as ``x@primary``. ``protocol`` is
    one of imap, pop3, smtp, submission, sieve, lmtp (web, sso for HTTP logins).
    ``require_token`` is AUTH_REQUIRE_TOKENS: only app tokens open mail protocols; the
    account password is not even checked there (as in Mailu). ``dummy_hash``: verify a
    password for a name that is no account against it, spending the time a real check takes.
    """
    quick = quick_login(
        directory,
        username,
        password,
        protocol,
        client_ip,
        cache,
        require_token=require_token,
        equal_time=dummy_hash is not None,
        totp_passwords=totp_passwords,
    )
    if quick is not None:
        return quick
    user = find_user(directory, username)
    if user is None:
        if dummy_hash is not None:
            verify_password(dummy_hash, password)
        return Login(None, LoginResult.UNKNOWN_USER, reason="unknown user")
    proto = protocol.lower() if isinstance(protocol, str) else ""
    # A token-shaped password that is no usable token is tried as the password too, as
    # Mailu does; "badip" stays the reason when the password is wrong as well.
    by_token = (
        None if proto in PASSWORD_ONLY else token_login(directory, user, password, client_ip, cache)
    )
    ok, rehash = _check_secret(user.password_hash, password, cache)
    if not ok:
        reason = by_token.reason if by_token is not None else "badauth"
        return Login(user, LoginResult.BAD_CREDENTIALS, reason=reason)
    return _switches(Login(user, LoginResult.OK, rehash=rehash), proto)


def second_factor(directory: Directory, user: UserEntry, require_all: bool = False) -> str | None:
    """What a web login of ``user`` still needs once the password is right.

    :data:`SECOND_FACTOR_REQUIRED` when two-factor login is on (the web asks for a code);
    :data:`SECOND_FACTOR_ENROL` when it is off but required, by ``require_all``
    (AUTH_REQUIRE_TOTP) or by the user's domain (the web makes the user enrol first);
    None when the password is enough.
    """
    if user.totp_enabled:
        return SECOND_FACTOR_REQUIRED
    if require_all or directory.totp_required(user.domain):
        return SECOND_FACTOR_ENROL
    return None
