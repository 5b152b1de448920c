"""Two-factor login: TOTP codes, single-use recovery codes, and the secret's sealing.

Pure: no I/O and no clock of its own (every check takes ``now``), so the store's
operations and the tests decide what time it is.

* Codes are RFC 6238 TOTP (HMAC-SHA1, 6 digits, 30-second steps: what every
  authenticator app uses), computed by pyotp. A code is accepted for the current step
  and one step either side (RFC 6238 section 5.2 recommends at most one step of drift),
  and only for a step later than the last one accepted, so a code seen over a shoulder
  or in a proxy log cannot be replayed (section 5.2: "the verifier MUST NOT accept the
  second attempt of the OTP after the successful validation has been issued").
* The shared secret is 160 random bits (RFC 4226 section 4 recommends 160) and is stored
  sealed with AES-256-GCM under a key derived from SECRET_KEY with HKDF (RFC 5869), the
  account's address as associated data: a copy of the database alone reveals no secret,
  and a sealed secret moved to another account's row does not open.
* Recovery codes are 80 random bits each, shown once and stored as HMAC-SHA256 under a
  second HKDF sub-key. A slow password hash is not needed: a slow hash protects secrets
  people choose, which are guessable; 2^80 candidates per code are out of reach of any
  fast hash, and without SECRET_KEY the stored values cannot even be tested.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import pyotp
import segno
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "DIGITS",
    "RECOVERY_CODES",
    "STEP_SECONDS",
    "SealError",
    "TotpKeys",
    "current_step",
    "matching_step",
    "new_recovery_codes",
    "new_secret",
    "normalise_code",
    "provisioning_uri",
    "qr_svg",
]

#: RFC 6238's time step and the six digits every authenticator app shows.
STEP_SECONDS = 30
DIGITS = 6
#: Steps either side of now that still count (RFC 6238 section 5.2: clock drift).
WINDOW = 1
#: How many recovery codes a user gets at a time.
RECOVERY_CODES = 10
#: Characters of a recovery code: base32's lower-case letters and digits (16 x 5 = 80 bits).
_RECOVERY_LENGTH = 16
_RECOVERY_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
#: The prefix of a sealed secret, so another format can follow without guessing.
_SEALED_PREFIX = "v1:"
_NONCE_BYTES = 12


class SealError(ValueError):
    """A sealed secret that does not open: damaged, another account's, or another key's."""


def new_secret() -> str:
    """A fresh shared secret: 160 random bits in base32, as authenticator apps take it."""
    return pyotp.random_base32(length=32)


def current_step(now: float) -> int:
    """The RFC 6238 time step ``now`` (Unix seconds) falls in."""
    return int(now // STEP_SECONDS)


def normalise_code(code: str) -> str:
    """What a person typed, without the spaces and dashes apps and people put in."""
    if not isinstance(code, str):
        return ""
    return "".join(ch for ch in code if ch not in " -\t").lower()


def matching_step(secret: str, code: str, now: float, last_step: int | None) -> int | None:
    """The time step whose code ``code`` is, if it may be accepted now; else None.

    Steps within :data:`WINDOW` of now are tried; one at or before ``last_step`` (the
    step of the last accepted code) is never accepted again. Every candidate is computed
    and compared in constant time, so the answer's timing says nothing about which step
    matched.
    """
    typed = normalise_code(code)
    if len(typed) != DIGITS or not typed.isascii() or not typed.isdigit():
        return None
    try:
        totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
        now_step = current_step(now)
        found = None
        for step in range(now_step - WINDOW, now_step + WINDOW + 1):
            expected = totp.generate_otp(step)
            if hmac.compare_digest(expected, typed) and (last_step is None or step > last_step):
                found = step
    except (ValueError, TypeError):  # a damaged secret (not base32)
        return None
    return found


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app scans (Google Authenticator's
    key URI format, which every app follows)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account, issuer_name=issuer
    )


def qr_svg(uri: str, scale: int = 4) -> str:
    """The URI as a QR code, an SVG document (to show in the enrolment page as is)."""
    return str(segno.make(uri, error="m").svg_inline(scale=scale))


def new_recovery_codes(count: int = RECOVERY_CODES) -> list[str]:
    """Fresh recovery codes, shown as ``xxxx-xxxx-xxxx-xxxx`` (80 random bits each)."""
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
        codes.append("-".join(raw[i : i + 4] for i in range(0, _RECOVERY_LENGTH, 4)))
    return codes


def _subkey(secret_key: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
        secret_key.encode("utf-8")
    )


@dataclass(frozen=True)
class TotpKeys:
    """The two sub-keys of SECRET_KEY that two-factor login uses.

    Derived with HKDF under their own labels, so neither says anything about SECRET_KEY or
    about the other keys derived from it (SRS, log fingerprints).
    """

    seal_key: bytes
    recovery_key: bytes

    @classmethod
    def from_secret_key(cls, secret_key: str) -> TotpKeys:
        return cls(
            seal_key=_subkey(secret_key, b"roost totp secret v1"),
            recovery_key=_subkey(secret_key, b"roost totp recovery v1"),
        )

    def seal(self, secret: str, account: str) -> str:
        """``secret`` encrypted for the store, bound to ``account`` (the canonical address)."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = AESGCM(self.seal_key).encrypt(
            nonce, secret.encode("ascii"), account.encode("utf-8")
        )
        return _SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def unseal(self, sealed: str, account: str) -> str:
        """The secret :meth:`seal` made; raises :class:`SealError` when it does not open."""
        if not isinstance(sealed, str) or not sealed.startswith(_SEALED_PREFIX):
            raise SealError("not a sealed two-factor secret")
        try:
            raw = base64.urlsafe_b64decode(sealed[len(_SEALED_PREFIX) :].encode("ascii"))
            plain = AESGCM(self.seal_key).decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], account.encode("utf-8")
            )
        except (InvalidTag, ValueError, UnicodeError):
            raise SealError(
                "the two-factor secret does not open (another SECRET_KEY, or damaged)"
            ) from None
        return plain.decode("ascii")

    def recovery_hash(self, code: str) -> str:
        """The stored form of a recovery code: HMAC-SHA256 of what was typed, normalised."""
        return hmac.new(
            self.recovery_key, normalise_code(code).encode("utf-8"), hashlib.sha256
        ).hexdigest()

    def find_recovery(self, stored: list[str] | tuple[str, ...], code: str) -> str | None:
        """The stored hash ``code`` matches, or None (compared in constant time each)."""
        typed = normalise_code(code)
        if len(typed) != _RECOVERY_LENGTH:
            return None
        wanted = self.recovery_hash(typed)
        found = None
        for item in stored:
            if hmac.compare_digest(item, wanted):
                found = item
        return found
