"""The one check of the certificate and key every daemon serves.

It runs once before any daemon starts (and again whenever the files change while the stack
runs), so that a wrong file is one clear message naming it instead of nginx, Postfix and
Dovecot each failing in their own way. What makes the pair unusable (a missing, unreadable
or encrypted file, a key that is not the certificate's) raises :class:`TLSError`. What
only makes clients complain (an expired certificate, a host name it does not cover) is
returned as warnings: refusing to start over those would also stop mail on port 25, whose
senders do not check the certificate (RFC 7435, opportunistic security).
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = ["CheckedCertificate", "TLSError", "check_pair", "covers", "dns_names"]


class TLSError(RuntimeError):
    """The certificate or key cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class CheckedCertificate:
    """A pair that passed the check: the files the daemons read, and what the check saw."""

    cert_file: Path
    key_file: Path
    #: SHA-256 of the server's own (first) certificate, DER-encoded, in hex
    fingerprint: str
    #: the DNS names of its subjectAltName extension
    names: tuple[str, ...]
    not_before: datetime.datetime
    not_after: datetime.datetime
    #: what clients will complain about; the daemons can still use the pair
    warnings: tuple[str, ...] = ()


def check_pair(
    cert_file: Path,
    key_file: Path,
    hostnames: Sequence[str],
    now: datetime.datetime | None = None,
) -> CheckedCertificate:
    """Load the pair, check the key is the first certificate's, report dates and names."""
    for path in (cert_file, key_file):
        if not path.is_file():
            raise TLSError(
                f"{path}: missing; TLS needs both {cert_file.name} and {key_file.name} in "
                f"{cert_file.parent} (remove both to get a self-signed pair)"
            )
    try:
        chain = x509.load_pem_x509_certificates(cert_file.read_bytes())
    except (OSError, ValueError) as exc:
        raise TLSError(f"{cert_file}: not a PEM certificate ({exc})") from None
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except TypeError:
        raise TLSError(
            f"{key_file}: the key is encrypted; the daemons need it without a passphrase"
        ) from None
    except (OSError, ValueError) as exc:
        raise TLSError(f"{key_file}: not a PEM private key ({exc})") from None
    leaf = chain[0]
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise TLSError(
            f"{key_file}: does not match the certificate in {cert_file} "
            "(the first certificate in the file must be the server's own)"
        )
    names = dns_names(leaf)
    when = now or datetime.datetime.now(datetime.UTC)
    warnings = []
    if when > leaf.not_valid_after_utc:
        warnings.append(
            f"{cert_file}: expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; "
            "clients that check certificates will refuse it"
        )
    elif when < leaf.not_valid_before_utc:
        warnings.append(
            f"{cert_file}: not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC "
            "(is the clock right?); clients that check certificates will refuse it"
        )
    uncovered = [host for host in hostnames if not covers(names, host)]
    if uncovered:
        warnings.append(
            f"{cert_file}: does not cover {', '.join(uncovered)} from HOSTNAMES (its names: "
            f"{', '.join(names) or 'none in subjectAltName'}); clients connecting by those "
            "names will refuse it"
        )
    return CheckedCertificate(
        cert_file=cert_file,
        key_file=key_file,
        fingerprint=hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest(),
        names=names,
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        warnings=tuple(warnings),
    )


def dns_names(certificate: x509.Certificate) -> tuple[str, ...]:
    """The subjectAltName DNS names; the subject's CN does not count (RFC 9525, 6.3)."""
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    return tuple(extension.value.get_values_for_type(x509.DNSName))


def covers(names: Sequence[str], host: str) -> bool:
    """Whether a certificate with DNS ``names`` is valid for ``host`` (RFC 9525, 6.3).

    Names compare without case; a wildcard is allowed only as the whole leftmost label and
    stands for exactly one label, so ``*.example.com`` covers ``mail.example.com`` but
    neither ``example.com`` nor ``a.b.example.com``.
    """
    host = host.lower().rstrip(".")
    for name in names:
        name = name.lower().rstrip(".")
        if name == host:
            return True
        if name.startswith("*.") and "." in host:
            first, rest = host.split(".", 1)
            if first and rest == name[2:]:
                return True
    return False
