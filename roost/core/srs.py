"""Sender Rewriting Scheme: forwarded mail keeps passing SPF, and its bounces find home.

When Roost forwards a message from ``alice@sender.example`` to an outside mailbox, the next
server checks SPF for ``sender.example`` against Roost's address and fails. SRS rewrites the
envelope sender into an address of our own domain that encodes the original one, so SPF is
checked against us, and a bounce sent to that address can be turned back into the original
sender -- but only if Roost made it (a keyed hash) and recently (a day stamp).

Format, from the SRS specification by Shevek ("Sender Rewriting Scheme", the "Guarded"
scheme) as libsrs2 implements it, which Mailu (through srslib) and postsrsd also follow:

* first hop: ``SRS0=HHHH=TT=<orig-domain>=<orig-local>@<our-domain>``;
* an address that already is someone's ``SRS0`` (we are a later hop) becomes
  ``SRS1=HHHH=<their-domain>==<their-hash>=...@<our-domain>``, which bounces to them;
* ``HHHH`` is the first 4 characters of the base64 HMAC-SHA1, over the lower-cased text of
  the other fields, keyed with a secret; ``TT`` is the day number (days since the epoch,
  modulo 1024) in the spec's base32 alphabet (A-Z, 2-7), two characters.

Reversal accepts hashes and stamps in any letter case (libsrs2 does: Postfix may lower-case
lookup keys) and stamps from the last :data:`MAX_AGE_DAYS` days. Pure functions and one
small class; the gate calls them for Postfix's ``sendermap`` and ``recipientmap``.

Written here rather than taken from srslib (what Mailu uses): the scheme is a few lines of
HMAC and string handling, and the tests pin it to addresses that postsrsd (libsrs2's
algorithm) produced, which is the compatibility that matters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass

__all__ = ["HASH_LENGTH", "MAX_AGE_DAYS", "SRS", "srs_key"]

#: Base64 characters of the HMAC kept in an address (libsrs2's default, 24 bits).
HASH_LENGTH = 4
#: Days a rewritten address stays reversible (libsrs2's and srslib's default).
MAX_AGE_DAYS = 21
#: The spec's base32 alphabet for the day stamp (not RFC 4648's bit packing: 2 symbols).
_STAMP_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_STAMP_VALUE = {symbol: value for value, symbol in enumerate(_STAMP_ALPHABET)}
_DAY = 86400
#: The day number wraps at 1024 (two base32 symbols).
_STAMP_PERIOD = 1024

# The spec allows '=', '+' or '-' right after the tag; what follows is split on '='.
_SRS0 = re.compile(r"SRS0[=+-]([^=]+)=([^=]+)=([^=]+)=(.+)", re.IGNORECASE | re.DOTALL)
_SRS1 = re.compile(r"SRS1[=+-]([^=]+)=([^=]+)=([=+-].+)", re.IGNORECASE | re.DOTALL)
_SRS0_TAG = re.compile(r"SRS0([=+-].+)", re.IGNORECASE | re.DOTALL)


def srs_key(secret_key: str) -> bytes:
    """The SRS key derived from SECRET_KEY exactly as Mailu derives its ``SRS_KEY``.

    Mailu's start scripts give the admin application HMAC-SHA256(SECRET_KEY, "SECRET") as
    its secret, in hex (``set_env`` in Mailu's core/base/libs/socrate/socrate/system.py), and
    the admin derives HMAC-SHA256(that, "SRS_KEY") (core/admin/mailu/__init__.py).
    Deriving the same key means a server moved from Mailu with its SECRET_KEY keeps
    reversing the SRS addresses Mailu handed out before the move.
    """
    admin_secret = hmac.new(secret_key.encode("utf-8"), b"SECRET", hashlib.sha256).hexdigest()
    return hmac.new(admin_secret.encode("utf-8"), b"SRS_KEY", hashlib.sha256).digest()


def _stamp(day: int) -> str:
    day %= _STAMP_PERIOD
    return _STAMP_ALPHABET[day >> 5] + _STAMP_ALPHABET[day & 31]


def _stamp_age(stamp: str, today: int) -> int | None:
    """Days since ``stamp`` was made, modulo the 1024-day period; None if not a stamp."""
    if len(stamp) != 2:
        return None
    high, low = _STAMP_VALUE.get(stamp[0].upper()), _STAMP_VALUE.get(stamp[1].upper())
    if high is None or low is None:
        return None
    return (today - (high << 5 | low)) % _STAMP_PERIOD


@dataclass(frozen=True)
class SRS:
    """Rewrites senders to ``@domain`` and reverses what it rewrote, keyed with ``key``."""

    key: bytes
    domain: str

    def _hash(self, *fields: str) -> str:
        digest = hmac.new(self.key, "".join(fields).lower().encode("utf-8"), hashlib.sha1)
        return base64.b64encode(digest.digest()).decode("ascii")[:HASH_LENGTH]

    def _hash_ok(self, given: str, *fields: str) -> bool:
        expected = self._hash(*fields)
        return hmac.compare_digest(given.lower().encode(), expected.lower().encode())

    def forward(self, sender: str, now: float | None = None) -> str | None:
        """The rewritten envelope sender for ``sender`` (``local@domain``), or None.

        None for what cannot be rewritten into a usable address: no ``@``, an empty part,
        or an address literal domain (``[192.0.2.1]`` would put brackets in a local part).
        """
        local, at, domain = sender.rpartition("@")
        if not at or not local or not domain or domain.startswith("["):
            return None
        previous = _SRS1.fullmatch(local)
        if previous is not None:
            # A later hop's SRS1: keep bouncing to the first hop, with our own hash.
            first_hop, opaque = previous.group(2), previous.group(3)
            return f"SRS1={self._hash(first_hop, opaque)}={first_hop}={opaque}@{self.domain}"
        first = _SRS0_TAG.fullmatch(local)
        if first is not None:
            # Someone else's SRS0: bounces go back to them, who can reverse it.
            opaque = first.group(1)
            return f"SRS1={self._hash(domain, opaque)}={domain}={opaque}@{self.domain}"
        day = int((time.time() if now is None else now) // _DAY)
        stamp = _stamp(day)
        return f"SRS0={self._hash(stamp, domain, local)}={stamp}={domain}={local}@{self.domain}"

    def reverse(self, address: str, now: float | None = None) -> str | None:
        """The address a bounce to SRS ``address`` must go to, or None.

        None when ``address`` is no SRS address, or its hash is not ours (forged), or an
        SRS0 stamp is older than :data:`MAX_AGE_DAYS` days (expired). The domain part is
        not checked here: the caller knows which domains are ours.
        """
        local, at, _domain = address.rpartition("@")
        if not at:
            return None
        srs1 = _SRS1.fullmatch(local)
        if srs1 is not None:
            given, first_hop, opaque = srs1.groups()
            if not self._hash_ok(given, first_hop, opaque):
                return None
            return f"SRS0{opaque}@{first_hop}"
        srs0 = _SRS0.fullmatch(local)
        if srs0 is None:
            return None
        given, stamp, domain, original_local = srs0.groups()
        if not self._hash_ok(given, stamp, domain, original_local):
            return None
        today = int((time.time() if now is None else now) // _DAY)
        age = _stamp_age(stamp, today)
        if age is None or age >= MAX_AGE_DAYS:
            return None
        return f"{original_local}@{domain}"
