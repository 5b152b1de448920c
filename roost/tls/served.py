"""The pair the daemons serve: which files, provided and checked once, and watched.

The service renderers take the files to name from :func:`served_pair` and check nothing
themselves: bootstrap calls :func:`ensure` once before any of them runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from roost.core.acme import describe
from roost.core.dane import ServedKey
from roost.layout import Layout
from roost.tls.acmestate import read_state
from roost.tls.check import CheckedCertificate, TLSError, check_pair, dns_names
from roost.tls.sources import source_for
from roost.tls.watch import CertificateWatch

__all__ = [
    "CertificatePair",
    "check_served",
    "describe_served",
    "ensure",
    "served_key",
    "served_pair",
    "watch_served",
]


@dataclass(frozen=True)
class CertificatePair:
    """The files a daemon's configuration names: the chain and key of every TLS port, and
    the chain port 25 serves with the same key (under the letsencrypt flavors with its
    root, for DANE: roost.tls.chains; else ``cert_file``)."""

    cert_file: Path
    key_file: Path
    mx_cert_file: Path


def served_pair(layout: Layout) -> CertificatePair | None:
    """The files the daemons serve; None under TLS_FLAVOR=notls. Checks nothing."""
    source = source_for(layout)
    if source is None:
        return None
    return CertificatePair(source.cert_file, source.key_file, source.mx_cert_file)


def served_key(layout: Layout) -> ServedKey | None:
    """What the TLSA suggestion needs of port 25's certificate (roost.core.dnsrecords);
    None under notls or when it cannot be read. Reads the certificate only, not the key."""
    pair = served_pair(layout)
    if pair is None:
        return None
    try:
        leaf = x509.load_pem_x509_certificates(pair.mx_cert_file.read_bytes())[0]
    except (OSError, ValueError):
        return None
    spki = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return ServedKey(spki=spki, self_signed=leaf.issuer == leaf.subject)


def ensure(layout: Layout) -> list[str]:
    """Have the source provide the pair, then check it: once, before any daemon starts.

    Returns messages for the administrator (a pair was created; the certificate expired
    or does not cover a host name); raises TLSError when the pair cannot be used.
    """
    source = source_for(layout)
    if source is None:
        return []
    messages = source.provide()
    return messages + list(check_served(layout).warnings)


def check_served(layout: Layout) -> CheckedCertificate:
    """Check the pair as it is now, without providing anything; TLSError if unusable."""
    source = source_for(layout)
    if source is None:
        raise TLSError("TLS_FLAVOR=notls: there is no certificate to check")
    return check_pair(source.cert_file, source.key_file, layout.settings.HOSTNAMES)


def watch_served(layout: Layout) -> CertificateWatch | None:
    """A watch on the served pair as it is now; None under TLS_FLAVOR=notls."""
    source = source_for(layout)
    if source is None:
        return None
    return CertificateWatch(
        source.cert_file,
        source.key_file,
        layout.settings.HOSTNAMES,
        also=(source.mx_cert_file,),
    )


def describe_served(layout: Layout) -> list[str]:
    """What ``roost status`` says of the served certificate: whose it is, for which names,
    until when; under the letsencrypt flavors also the last ACME run's failures. Reads
    the certificate only (not the key), so it says the same to any user."""
    settings = layout.settings
    source = source_for(layout)
    if source is None:
        return []
    try:
        first = x509.load_pem_x509_certificates(source.cert_file.read_bytes())[0]
    except (OSError, ValueError) as exc:
        return [f"certificate: {source.cert_file} cannot be read ({exc})"]
    return describe(
        settings.TLS_FLAVOR,
        first.issuer == first.subject,
        dns_names(first),
        f"{first.not_valid_after_utc:%Y-%m-%d}",
        read_state(layout) if settings.acme else None,
    )
