"""TLS: the certificate every daemon serves, where it comes from, its check, its changes.

- :mod:`roost.tls.sources`: where the pair comes from (:class:`CertificateSource`; a
  self-signed pair, the administrator's files, certbot's certificate). A new source is a
  subclass and one entry in :data:`roost.tls.sources.FLAVORS`.
- :mod:`roost.tls.check`: the one check of a pair (:func:`check_pair`, :class:`TLSError`).
- :mod:`roost.tls.watch`: the change notice the runner polls to reload the daemons.
- :mod:`roost.tls.policy`: the protocols and cipher suites every strict listener accepts.
- :mod:`roost.tls.chains`: the chains served under the letsencrypt flavors (port 25's with
  its root, for DANE; LETSENCRYPT_SHORTCHAIN for the others) and the system's CAs.
- :mod:`roost.tls.served`: the pair the daemons serve (:func:`served_pair`), provided and
  checked once (:func:`ensure`), watched (:func:`watch_served`) and described for
  ``roost status`` (:func:`describe_served`).
- :mod:`roost.tls.acme`: the ACME client process (certbot) of TLS_FLAVOR letsencrypt and
  mail-letsencrypt, with its decisions in :mod:`roost.core.acme`.

This package imports nothing from ``roost.services``; services import it.
"""

from roost.tls import policy
from roost.tls.check import CheckedCertificate, TLSError, check_pair
from roost.tls.served import (
    CertificatePair,
    check_served,
    describe_served,
    ensure,
    served_key,
    served_pair,
    watch_served,
)
from roost.tls.sources import CertificateSource
from roost.tls.watch import CERTIFICATE_CHANGED, CertificateChange, CertificateWatch

__all__ = [
    "CERTIFICATE_CHANGED",
    "CertificateChange",
    "CertificatePair",
    "CertificateSource",
    "CertificateWatch",
    "CheckedCertificate",
    "TLSError",
    "check_pair",
    "check_served",
    "describe_served",
    "ensure",
    "policy",
    "served_key",
    "served_pair",
    "watch_served",
]
