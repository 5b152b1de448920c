"""DANE for mail coming in (RFC 7672): which TLSA records port 25's certificate answers to.

Pure: the TLSA association data of a certificate (RFC 6698 §2.1) and the trust anchors
Let's Encrypt's certificates chain to. :mod:`roost.core.dnsrecords` turns them into the
records ``roost dns`` shows and ``roost doctor`` compares with DNS, so both say the same.

Which record fits depends on where the certificate comes from:

- Let's Encrypt (TLS_FLAVOR letsencrypt, mail-letsencrypt with its production directory):
  the key changes at every renewal (certbot makes a new one), the roots do not. So the
  records name the roots, DANE-TA(2) SPKI(1) SHA-256(1), as Mailu publishes them: ISRG
  Root X1 and X2, one for each of the two chains Let's Encrypt issues under. A DANE-TA
  record with the SPKI selector only works when the server sends the root itself (RFC 7671
  §5.2.2): port 25 serves the chain with the root (roost.tls.chains).
- The administrator's certificate (TLS_FLAVOR cert, mail): DANE-EE(3) SPKI(1) SHA-256(1)
  of the served key, RFC 7671 §5.1's usual choice. It must be published before the key
  changes ("current + next", RFC 7671 §8.1). Not for Roost's self-signed placeholder, which
  the administrator is meant to replace.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = [
    "DANE_EE",
    "DANE_TA",
    "ISRG_ROOTS",
    "SHA256",
    "SPKI",
    "ServedKey",
    "tlsa_digest",
]

#: RFC 7218 mnemonics of the fields Roost suggests.
DANE_TA = 2
DANE_EE = 3
SPKI = 1
SHA256 = 1

#: SHA-256 of the SubjectPublicKeyInfo of Let's Encrypt's roots (as in Mailu's records;
#: tests/unit/test_core_dane.py checks them against Debian's ca-certificates).
ISRG_ROOTS: dict[str, str] = {
    "ISRG Root X1": "0b9fa5a59eed715c26c1020c711b4f6ec42d58b0015e14337a39dad301c5afc3",
    "ISRG Root X2": "762195c225586ee6c0237456e2107dc54f1efc21f61a792ebd515913cce68332",
}


@dataclass(frozen=True, slots=True)
class ServedKey:
    """What the TLSA suggestion needs of the certificate port 25 serves."""

    #: DER SubjectPublicKeyInfo of the server's own certificate
    spki: bytes
    self_signed: bool


def tlsa_digest(selector: int, matching: int, certificate: bytes, spki: bytes) -> str:
    """The association data of a TLSA record (RFC 6698 §2.1) for one certificate, in hex:
    of the whole DER ``certificate`` (selector 0) or its ``spki`` (1), in full (matching
    type 0), SHA-256 (1) or SHA-512 (2)."""
    data = spki if selector == SPKI else certificate
    if matching == SHA256:
        return hashlib.sha256(data).hexdigest()
    if matching == 2:
        return hashlib.sha512(data).hexdigest()
    return data.hex()
