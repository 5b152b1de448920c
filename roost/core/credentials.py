"""The pure part of the one login decision every protocol shares (DESIGN §1 gate).

Reference §4.5: a login names a user, then the password is tried as an app token (if it is
token-shaped) and as the account password, and the account and protocol switches decide.
The gate wraps this with rate limits, webmail session tokens and log lines; everything
here is deterministic given the directory, the cache and the inputs.

Roost orders the checks so that only a caller who knows a valid credential learns that an
account is disabled: a wrong password for a disabled account is BAD_CREDENTIALS (Mailu
answers "account disabled" before looking at the password, which tells a guesser which
accounts exist and are switched off).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from roost.core.address import AddressError, parse_address
from roost.core.directory import Directory, TokenEntry, UserEntry
from roost.core.passwords import (
    CredentialCache,
    is_token_shaped,
    token_allows_ip,
    verify_password,
    verify_token,
)

__all__ = ["Login", "LoginResult", "check_login"]


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
    its stored one was a legacy format. ``reason``: the tail of Mailu's log line
    (reference §4.5 item 5), e.g. ``token-3``, ``account disabled``, ``badip: token-3``.
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


# Protocol switches (reference §3.2 enable_imap/enable_pop, §4.5 item 1). Other protocols
# seen here -- smtp, submission, sieve, lmtp, web, sso -- have no switch of their own.
_PROTOCOL_SWITCH = {"imap": "enable_imap", "pop3": "enable_pop", "pop": "enable_pop"}
# Protocols where AUTH_REQUIRE_TOKENS does not apply (reference §4.5 item 4).
_PASSWORD_ALWAYS_OK = frozenset({"web", "sso"})


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


def check_login(
    directory: Directory,
    username: str,
    password: str,
    protocol: str,
    client_ip: str,
    cache: CredentialCache,
    *,
    require_token: bool = False,
) -> Login:
    """Decide one login. Never raises, whatever the inputs.

    ``username`` is an address; ``x@alternative`` logs in as ``x@primary``. ``protocol`` is
    one of imap, pop3, smtp, submission, sieve, lmtp (web, sso for HTTP logins).
    ``require_token`` is AUTH_REQUIRE_TOKENS: a correct account password is then refused
    except on web/sso, and only app tokens open mail protocols.
    """
    try:
        address = parse_address(username)
    except (AddressError, TypeError):
        return Login(None, LoginResult.UNKNOWN_USER, reason="unknown user")
    user = directory.user(str(address))
    if user is None:
        return Login(None, LoginResult.UNKNOWN_USER, reason="unknown user")
    if not isinstance(password, str) or not password:
        return Login(user, LoginResult.BAD_CREDENTIALS, reason="badauth")
    proto = protocol.lower() if isinstance(protocol, str) else ""

    via_token = False
    token_id: int | None = None
    token_rehash: str | None = None
    rehash: str | None = None
    reason = ""
    verified = False

    # Reference §4.5 item 3: a token-shaped password is compared with each app token; a
    # token used from outside its CIDRs does not count, and the password check still runs.
    if is_token_shaped(password):
        for token in directory.tokens_of(user.email):
            ok, new_hash = _check_token(token, password, cache)
            if not ok:
                continue
            if not token_allows_ip(token, client_ip):
                reason = f"badip: token-{token.id}"
                continue
            verified, via_token, token_id, token_rehash = True, True, token.id, new_hash
            reason = f"token-{token.id}"
            break

    if not verified:
        ok, rehash = _check_secret(user.password_hash, password, cache)
        if not ok:
            return Login(user, LoginResult.BAD_CREDENTIALS, reason=reason or "badauth")
        if require_token and proto not in _PASSWORD_ALWAYS_OK:
            return Login(
                user,
                LoginResult.BAD_CREDENTIALS,
                rehash=rehash,
                reason="password ok, but a token is required",
            )
        verified, reason = True, ""

    result = LoginResult.OK
    if not user.enabled:
        result, reason = LoginResult.DISABLED, "account disabled"
    else:
        switch = _PROTOCOL_SWITCH.get(proto)
        if switch is not None and not getattr(user, switch):
            result, reason = LoginResult.PROTOCOL_DISABLED, f"{proto} disabled"
    return Login(user, result, via_token, rehash, token_id, token_rehash, reason)
