"""The webmail's single sign-on token: what it looks like, where it is kept, when it is good.

Roundcube (WEBMAIL=roundcube) never sees a user's password. When a browser signed in to
Roost's SSO opens the webmail's entry path, the web application mints a token for that
SSO session (:func:`new_token`) and nginx hands it, with the address, to Roost's Roundcube
plugin, which logs in to IMAP, submission and ManageSieve with it. The gate accepts it
only on the listeners reserved for the webmail (``roost.layout.WEBMAIL_LISTENERS``) and
only while :func:`refusal` finds nothing wrong:

* the token's record (``webmail-token:<sha256(token)>`` in the web's Redis database) still
  exists: the web deletes it at sign-out and when it mints the session's next token, and
  it expires with the session's absolute lifetime at the latest;
* it is the SSO session's current token (``webmail-current:<sha256(session id)>``, a key
  of its own, so that the session's other requests, which write the session back, never
  undo a newer token);
* the SSO session it names still exists (it ends at sign-out, after SESSION_TIMEOUT idle,
  after PERMANENT_SESSION_LIFETIME, and at every password change of the account) and is
  signed in (two-factor login done, when the account has it) as the same address;
* the session's password fingerprint still matches the account's stored password.

Redis holds SHA-256 digests of tokens and session ids, never either, so a copy of its
memory opens neither. This module is pure: the web and the gate do the I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

__all__ = [
    "CURRENT_KEY",
    "TOKEN_KEY",
    "TOKEN_PREFIX",
    "current_key",
    "digest",
    "looks_like_token",
    "new_token",
    "record",
    "refusal",
    "session_of",
    "token_key",
]

#: Every token starts with this, so the gate tells one from a password without a lookup.
TOKEN_PREFIX = "roost-webmail-"
#: Redis key prefix of a token's record (the web's session database).
TOKEN_KEY = "webmail-token:"
#: Redis key prefix of a session's current token (its digest), by the session's digest.
CURRENT_KEY = "webmail-current:"
#: Random bytes in a token (256 bits: never guessed, so no rate limit is needed on them).
_TOKEN_BYTES = 32
#: The length of a token: the prefix and 43 base64url characters.
_TOKEN_LENGTH = len(TOKEN_PREFIX) + 43


def digest(value: str) -> str:
    """SHA-256 (hex) of a token or a session id: what Redis keys and records hold."""
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)


def looks_like_token(password: str) -> bool:
    """Whether a password given to a login is shaped like a webmail token."""
    return password.startswith(TOKEN_PREFIX)


def token_key(token_digest: str) -> str:
    return TOKEN_KEY + token_digest


def current_key(session_digest: str) -> str:
    return CURRENT_KEY + session_digest


def record(user: str, session_digest: str) -> str:
    """The JSON a token's key holds: the address and the digest of its SSO session."""
    return json.dumps({"user": user, "session": session_digest, "minted": time.time()})


def json_object(raw: bytes | str | None) -> dict[str, Any] | None:
    """A stored JSON object (a session, a token's record), or None when it is missing or
    is not one."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def session_of(raw_record: bytes | str) -> str | None:
    """The digest of the SSO session a token's record names, or None."""
    session = (json_object(raw_record) or {}).get("session")
    return session if isinstance(session, str) and len(session) == 64 else None


def refusal(
    token: str,
    email: str,
    raw_record: bytes | str | None,
    raw_current: bytes | str | None,
    raw_session: bytes | str | None,
    password_mark: str,
    lifetime: int,
    now: float | None = None,
) -> str | None:
    """Why ``token`` does not log ``email`` in (the tail of the gate's log line), or None.

    ``raw_record`` is what :func:`token_key` holds, ``raw_current`` and ``raw_session`` what
    :func:`current_key` and the session key of the session it names hold (None when
    missing), ``password_mark`` the fingerprint of the
    account's stored password (``roost.core.websession.password_fingerprint``) and
    ``lifetime`` PERMANENT_SESSION_LIFETIME.
    """
    if not looks_like_token(token) or len(token) != _TOKEN_LENGTH:
        return "not a webmail token"
    entry = json_object(raw_record)
    if entry is None:
        return "webmail token unknown, expired or revoked"
    if entry.get("user") != email:
        return "webmail token of another account"
    current = raw_current.decode() if isinstance(raw_current, bytes) else raw_current
    if current is None or not hmac.compare_digest(current, digest(token)):
        return "webmail token replaced by a newer one"
    session = json_object(raw_session)
    if session is None:
        return "webmail token of an SSO session that has ended"
    if session.get("user") != email:
        return "webmail token of an SSO session not signed in as this account"
    created = session.get("created")
    moment = time.time() if now is None else now
    if not isinstance(created, (int, float)) or moment - created > lifetime:
        return "webmail token of an SSO session past PERMANENT_SESSION_LIFETIME"
    mark = session.get("pw")
    if not isinstance(mark, str) or not hmac.compare_digest(mark, password_mark):
        return "webmail token of an SSO session older than the account's password"
    return None
