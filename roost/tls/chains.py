"""The certificate chains served under the letsencrypt flavors: with the root on port 25.

A DANE-TA(2) record with the SPKI selector, the kind Roost suggests for Let's Encrypt
(roost.core.dane), names the root's key only; a sender can match it only when the server
sends the root certificate itself in its chain (RFC 7671 §5.2.2). CAs leave the root out
of the chain they issue, as clients have it. So port 25 serves the chain with the root
appended (Mailu's "DANE chain"), whatever LETSENCRYPT_SHORTCHAIN says, and the other ports
(HTTPS, IMAP, POP3, submission, ManageSieve) serve the same chain, or without the root
under LETSENCRYPT_SHORTCHAIN=true (Mailu's meaning: "strip the ISRG roots").

:func:`arrange` builds both from the chain certbot wrote: from the server's certificate,
each next one is the certificate that signed it, until one is signed by a root of the
system's CA bundle (Debian's ca-certificates), which ends the chain. A cross-signed copy of
that root, which CAs add for older clients, is left out, as Mailu's validated chain does.
When no root of the bundle signed the chain, both are the chain as certbot wrote it.
"""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.utils import CryptographyDeprecationWarning

__all__ = ["SYSTEM_CAS", "Chains", "arrange", "pem", "system_cas"]

#: Debian's bundle of the CAs clients trust (package ca-certificates), when OpenSSL names
#: no file.
SYSTEM_CAS = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True)
class Chains:
    """What to serve: PEM chains, the server's certificate first."""

    #: on HTTPS, IMAP, POP3, submission and ManageSieve
    served: bytes
    #: on port 25: ends with the root when one was found
    mx: bytes
    #: the root that ends ``mx``; None when none of the bundle signed the chain
    root: x509.Certificate | None


def system_cas() -> list[x509.Certificate]:
    """The CAs OpenSSL trusts here (its default bundle, ``SSL_CERT_FILE`` when set), as
    cryptography reads them; empty when unreadable."""
    named = ssl.get_default_verify_paths().cafile
    path = Path(named) if named else SYSTEM_CAS
    try:
        text = path.read_bytes()
    except OSError:
        return []
    out = []
    marker = b"-----END CERTIFICATE-----"
    with warnings.catch_warnings():
        # Old roots with a non-positive serial number load with a warning: not ours to fix.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        for block in text.split(marker)[:-1]:
            try:
                out.append(x509.load_pem_x509_certificate(block + marker))
            except ValueError:
                continue  # one odd certificate in the bundle does not spoil the rest
    return out


def _signed_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _self_signed(certificate: x509.Certificate) -> bool:
    return certificate.issuer == certificate.subject and _signed_by(certificate, certificate)


def arrange(
    chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate], short: bool
) -> Chains:
    """The chains to serve for ``chain`` (the server's certificate first), with ``roots``
    the trusted CAs; ``short``: LETSENCRYPT_SHORTCHAIN. See the module's description."""
    path = [chain[0]]
    rest = list(chain[1:])
    root = None
    while not _self_signed(path[-1]):
        current = path[-1]
        root = next((r for r in roots if _signed_by(current, r)), None)
        if root is not None:
            path.append(root)
            break
        issuer = next((c for c in rest if _signed_by(current, c)), None)
        if issuer is None:
            break
        rest.remove(issuer)
        path.append(issuer)
    if root is None:
        return Chains(served=pem(chain), mx=pem(chain), root=None)
    return Chains(served=pem(path[:-1] if short else path), mx=pem(path), root=root)


def pem(certificates: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)
