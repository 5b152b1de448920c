"""Password and app-token hashing, as Mailu stores them (``core/admin/mailu/models.py``).

New hashes are Argon2id (argon2-cffi). Every format a Mailu database can hold still verifies
after an import -- passlib's bcrypt_sha256 (what Mailu writes), bcrypt, SHA-crypt, MD5-crypt,
pbkdf2, DES/BSDi crypt, with or without Dovecot-style ``{SCHEME}`` prefixes -- and a
successful login with any of them returns an Argon2id replacement for the caller to store,
so legacy hashes disappear as users log in.

Verification is CPU-bound (Argon2id here costs tens of milliseconds and 64 MiB; an imported
SHA512-crypt with passlib's 656000 rounds far more): the gate should run
:func:`verify_password` off its event loop and put a :class:`CredentialCache` in front of it,
and a :class:`FailedGuesses` so a repeated wrong password costs no second hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

import argon2
import bcrypt
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from passlib import hash as passlib_hash

from roost.core.ipnet import ip_in_networks

if TYPE_CHECKING:
    from roost.core.directory import TokenEntry

__all__ = [
    "CredentialCache",
    "FailedGuesses",
    "dummy_hash",
    "generate_token",
    "hash_password",
    "hash_token",
    "is_token_shaped",
    "token_allows_ip",
    "verify_password",
    "verify_token",
]

# argon2-cffi's defaults are RFC 9106 §4's second recommended option (Argon2id, t=3,
# 64 MiB, p=4): strong, yet affordable per login once the credential cache is in front.
_HASHER = argon2.PasswordHasher()

# Dovecot scheme prefixes Mailu strips before verifying (its ``User.check_password``), plus
# Dovecot's own Argon2 names: an imported "{ARGON2ID}$argon2id$..." is a plain PHC string inside.
_SCHEME_PREFIX = re.compile(r"\{([A-Za-z0-9._-]+)\}")
_STRIPPABLE = frozenset(
    {
        "PBKDF2",
        "BLF-CRYPT",
        "SHA512-CRYPT",
        "SHA256-CRYPT",
        "MD5-CRYPT",
        "CRYPT",
        "ARGON2ID",
        "ARGON2I",
    }
)

# passlib handlers for the legacy crypt formats: Mailu's ``passlib`` context accepts every
# crypt handler except scrypt and the plaintext variants. Order matters only for
# overlapping identify() rules; none of these overlap.
_PASSLIB_HANDLERS = (
    passlib_hash.bcrypt_sha256,  # $bcrypt-sha256$ v1 ("2b,12$") and v2 ("v=2,t=2b,r=12$")
    passlib_hash.sha512_crypt,  # $6$
    passlib_hash.sha256_crypt,  # $5$
    passlib_hash.md5_crypt,  # $1$
    passlib_hash.apr_md5_crypt,  # $apr1$
    passlib_hash.sha1_crypt,  # $sha1$
    passlib_hash.sun_md5_crypt,  # $md5$
    passlib_hash.pbkdf2_sha512,  # $pbkdf2-sha512$
    passlib_hash.pbkdf2_sha256,  # $pbkdf2-sha256$
    passlib_hash.pbkdf2_sha1,  # $pbkdf2$
    passlib_hash.bsdi_crypt,  # _xxxx
    passlib_hash.des_crypt,  # 13 characters
    passlib_hash.phpass,  # $P$ / $H$
)
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
_BCRYPT_MAX = 72  # bcrypt reads at most 72 bytes; older libraries truncated silently


def hash_password(plain: str) -> str:
    """Hash a new password as Argon2id (``$argon2id$...``, RFC 9106).

    Raises ValueError for an empty password: it could never verify, so
    storing its hash would only lock the account while looking like a valid password.
    """
    if not isinstance(plain, str) or not plain:
        raise ValueError("password is empty")
    return _HASHER.hash(plain)


def _argon2_is_current(stored: str) -> bool:
    """True when an Argon2 hash is Argon2id and at least as strong as new hashes."""
    try:
        params = argon2.extract_parameters(stored)
    except InvalidHashError:
        return False
    current = _HASHER
    return (
        params.type is argon2.Type.ID
        and params.version >= argon2.low_level.ARGON2_VERSION
        and params.time_cost >= current.time_cost
        and params.memory_cost >= current.memory_cost
    )


def _strip_scheme(stored: str) -> str | None:
    """Drop a Dovecot ``{SCHEME}`` prefix that Mailu also strips; None for other schemes.

    ``{PLAIN}``, ``{SHA}`` and the like are refused: plaintext-equivalent or unsalted hashes
    never verify (Mailu's passlib context excludes the plaintext variants too).
    """
    match = _SCHEME_PREFIX.match(stored)
    if match is None:
        return stored
    if match.group(1).upper() not in _STRIPPABLE:
        return None
    return stored[match.end() :]


def _check(stored: str, plain: str) -> tuple[bool, str]:
    """Verify without rehashing; returns (ok, inner hash with any prefix removed)."""
    if not isinstance(stored, str) or not isinstance(plain, str) or not stored or not plain:
        return False, ""
    inner = _strip_scheme(stored.strip())
    if not inner:
        return False, ""
    if inner.startswith("$argon2"):
        try:
            return _HASHER.verify(inner, plain), inner
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False, inner
    if inner.startswith(_BCRYPT_PREFIXES):
        secret = plain.encode("utf-8")[:_BCRYPT_MAX]
        return bcrypt.checkpw(secret, inner.encode("ascii")), inner
    for handler in _PASSLIB_HANDLERS:
        if handler.identify(inner):
            return bool(handler.verify(plain, inner)), inner
    return False, inner


def verify_password(stored: str, plain: str) -> tuple[bool, str | None]:
    """Check ``plain`` against ``stored``; return ``(ok, replacement hash or None)``.

    The replacement is a fresh Argon2id hash whenever ``ok`` and ``stored`` is anything
    but a current Argon2id hash (Mailu re-hashes deprecated schemes on login); the caller
    stores it. An empty password, an empty or unknown hash, or a corrupt
    one never verifies, and this function never raises: an imported row with garbage in
    its password column must cost one failed login, not the gate.
    """
    try:
        ok, inner = _check(stored, plain)
        if not ok:
            return False, None
        if inner.startswith("$argon2") and inner == stored and _argon2_is_current(inner):
            return True, None
        return True, hash_password(plain)
    except Exception:  # a verifier must answer "no" to anything it cannot read
        return False, None


class CredentialCache:
    """Remembers the last plaintext verified against each stored hash, as a keyed digest.

    Repeated logins (IMAP clients reconnect constantly) then cost one HMAC instead of
    Argon2/bcrypt. Mailu keeps a similar per-worker cache of verified credentials. Entries
    are keyed by the stored hash itself, so a password change (new hash, new salt)
    invalidates the entry without any bookkeeping. The digest is HMAC-SHA256 under a random
    key that never leaves this process, so the cache holds no reusable secret.

    ``check`` answers only "yes" (True) or "don't know" (None), never a cheap "no": if a
    mismatch against a cached account were answered without hashing, a wrong password for
    an account that logged in lately would come back in microseconds and one for a name
    that is no account in a full hash's time, telling a guesser which accounts exist.
    Repeated wrong passwords are made cheap by :class:`FailedGuesses` instead, the same
    way for every name.

    Bounded LRU; safe to share between threads.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self._key = secrets.token_bytes(32)
        self._max = max(1, max_entries)
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def _digest(self, plain: str) -> bytes:
        return hmac.new(self._key, plain.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    def check(self, stored: str, plain: str) -> bool | None:
        """True when ``plain`` is the plaintext cached for ``stored``; None otherwise."""
        if not isinstance(plain, str) or not plain:
            return None
        with self._lock:
            cached = self._entries.get(stored)
            if cached is None:
                return None
            self._entries.move_to_end(stored)
        return True if hmac.compare_digest(cached, self._digest(plain)) else None

    def remember(self, stored: str, plain: str) -> None:
        """Record that ``plain`` verified against ``stored``."""
        if not isinstance(plain, str) or not plain or not stored:
            return
        digest = self._digest(plain)
        with self._lock:
            self._entries[stored] = digest
            self._entries.move_to_end(stored)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def forget(self, stored: str) -> None:
        """Drop one entry (e.g. after an administrator resets a password in place)."""
        with self._lock:
            self._entries.pop(stored, None)

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class FailedGuesses:
    """Remembers recent wrong (account, password) pairs so a repeat is refused unhashed.

    A guesser who sends the same wrong password again (or many clients retrying one stale
    password) would otherwise cost a full Argon2 check per attempt. Each entry is
    HMAC-SHA256, under a random key that never leaves this process, of what the answer
    depended on -- the account's stored hashes (so a password change makes every entry
    stale) or the name of a non-account -- and the password; neither the password nor a
    reusable digest of it is kept. Only plain wrong passwords belong here, never a refusal
    that depends on something else (a token used from outside its networks).

    Bounded LRU; safe to share between threads.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self._key = secrets.token_bytes(32)
        self._max = max(1, max_entries)
        self._entries: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def _digest(self, context: str, plain: str) -> bytes:
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        mac.update(context.encode("utf-8", "surrogatepass"))
        mac.update(b"\0")
        mac.update(plain.encode("utf-8", "surrogatepass"))
        return mac.digest()

    def seen(self, context: str, plain: str) -> bool:
        """True when ``plain`` failed for ``context`` recently."""
        digest = self._digest(context, plain)
        with self._lock:
            if digest not in self._entries:
                return False
            self._entries.move_to_end(digest)
            return True

    def add(self, context: str, plain: str) -> None:
        """Record that ``plain`` failed for ``context``."""
        digest = self._digest(context, plain)
        with self._lock:
            self._entries[digest] = None
            self._entries.move_to_end(digest)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def dummy_hash() -> str:
    """An Argon2id hash of a random password, made with the cost of new hashes.

    Verifying a guess for a name that is no account against it takes as long as verifying
    one for a real account, so the answer's timing does not tell which names exist.
    """
    return hash_password(secrets.token_urlsafe(24))


# ---------------------------------------------------------------------- app tokens

_TOKEN_SHAPE = re.compile(r"[0-9a-f]{32}")
_TOKEN_HASHER = passlib_hash.pbkdf2_sha256.using(rounds=1, salt_size=16)


def generate_token() -> str:
    """A new raw app token: 32 lowercase hex characters, 128 random bits (as Mailu makes)."""
    return secrets.token_hex(16)


def is_token_shaped(text: str) -> bool:
    """True for exactly 32 lowercase hex characters, the only shape a raw token has."""
    return isinstance(text, str) and _TOKEN_SHAPE.fullmatch(text) is not None


def hash_token(raw: str) -> str:
    """Hash a raw token as Mailu does: passlib pbkdf2_sha256 with 1 round.

    One round is enough because the secret is 128 random bits, not a human password; the
    same format keeps ``config-export`` output loadable by Mailu.
    """
    return _TOKEN_HASHER.hash(raw)


def _token_hash_is_current(stored: str) -> bool:
    return stored.startswith("$pbkdf2-sha256$1$")


def verify_token(stored: str, raw: str) -> tuple[bool, str | None]:
    """Check a raw token against its stored hash; return ``(ok, replacement or None)``.

    Any format :func:`verify_password` reads is accepted (Mailu's old tokens were
    sha256_crypt ``$5$``); the replacement, when one is due, is a
    :func:`hash_token` hash rather than Argon2id, so token checks stay cheap.
    """
    try:
        ok, _inner = _check(stored, raw)
        if not ok:
            return False, None
        return True, None if _token_hash_is_current(stored) else hash_token(raw)
    except Exception:  # same contract as verify_password
        return False, None


def token_allows_ip(token: TokenEntry, ip: str) -> bool:
    """True when ``token`` may be used from ``ip``: no restriction, or ``ip`` in one CIDR."""
    if not token.ip:
        return True
    return ip_in_networks(ip, token.ip)
