"""Where the certificate the daemons serve comes from: one small interface, one class a source.

A source knows the two files the daemons read and how to put a usable pair there. Which
source a stack uses follows TLS_FLAVOR (:data:`FLAVORS`); a new one is a
:class:`CertificateSource` subclass and one entry in that table. Sources do not check what
they provide: :func:`roost.tls.check.check_pair` does, the same way for all of them.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from roost.layout import Layout
from roost.tls.chains import Chains, arrange, system_cas

__all__ = [
    "FLAVORS",
    "VALIDITY_DAYS",
    "Acme",
    "CertificateSource",
    "Files",
    "SelfSigned",
    "missing_root",
    "source_for",
]

# The longest validity clients accepted for a TLS server certificate when the limit was
# introduced (CA/Browser Forum, 2018); Apple's TLS stack still refuses longer ones.
VALIDITY_DAYS = 825


@dataclass(frozen=True)
class CertificateSource(ABC):
    """A way to obtain the certificate and key every daemon serves."""

    layout: Layout

    @property
    def cert_file(self) -> Path:
        """The certificate (the server's own first, then its chain), as the daemons read it."""
        return self.layout.cert_file

    @property
    def key_file(self) -> Path:
        return self.layout.key_file

    @property
    def mx_cert_file(self) -> Path:
        """The chain port 25 serves (with the same key); the administrator's files serve
        as they are on every port."""
        return self.cert_file

    @abstractmethod
    def provide(self) -> list[str]:
        """Put a pair in place when this source can (create, fetch, renew).

        Returns messages for the administrator about what it did. It never overwrites a
        pair that is not its own; an unusable pair is left for the check to name.
        """


@dataclass(frozen=True)
class SelfSigned(CertificateSource):
    """A self-signed pair for HOSTNAMES, written when there is no pair at all.

    Mailu's ``cert`` flavor turns TLS off when the files are missing (Mailu's
    core/nginx/config.py: "Missing cert or key file, disabling TLS"); a self-signed pair
    instead lets a fresh install answer on 465/993/443 at once, and the administrator
    replaces it later. If exactly one of the two
    files exists, it is the administrator's and nothing is written.
    """

    def provide(self) -> list[str]:
        if self.cert_file.exists() or self.key_file.exists():
            return []
        names = self.create()
        return [
            f"TLS_FLAVOR={self.layout.settings.TLS_FLAVOR}: no certificate in "
            f"{self.cert_file.parent}; created a "
            f"self-signed one for {', '.join(names)}, valid {VALIDITY_DAYS} days "
            f"({self.cert_file}, {self.key_file}). Replace both files with a certificate "
            "clients trust."
        ]

    def create(self) -> list[str]:
        """Write a self-signed EC P-256 pair for all HOSTNAMES and ``localhost``.

        ``localhost`` is there because local clients (and test clients) check the name
        they connected to. Returns the names in the certificate.
        """
        settings = self.layout.settings
        names = list(dict.fromkeys([*settings.HOSTNAMES, "localhost"]))
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, settings.hostname)])
        # A minute of slack so that a client whose clock is slightly behind accepts it.
        now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=VALIDITY_DAYS))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        self.cert_file.parent.mkdir(parents=True, exist_ok=True)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_new(self.key_file, key_pem, 0o600)
        write_new(self.cert_file, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
        return names


@dataclass(frozen=True)
class Files(CertificateSource):
    """TLS_FLAVOR=cert: the administrator's ``cert.pem`` and ``key.pem`` in ROOT/certs.

    The names follow TLS_CERT_FILENAME and TLS_KEYPAIR_FILENAME, as in Mailu. Until the
    administrator supplies a pair, ``fallback`` (a self-signed one) provides it.
    """

    fallback: CertificateSource | None = None

    def provide(self) -> list[str]:
        if self.fallback is None:
            return []
        return self.fallback.provide()


@dataclass(frozen=True)
class Acme(SelfSigned):
    """TLS_FLAVOR letsencrypt and mail-letsencrypt: the pair certbot obtained.

    The daemons serve ``cert.pem`` and ``key.pem`` in ROOT/certs/letsencrypt, never
    certbot's own files: roost.tls.acme copies a new certificate there once it passed the
    check, so a failed or half-done run never reaches them. Until the first certificate
    arrives (certbot runs while the stack runs, not before), a self-signed pair serves,
    made as :class:`SelfSigned` makes one. An administrator's ROOT/certs/cert.pem is left
    alone.

    Port 25 serves ``dane-chain.pem``, the chain with its root, and the other ports
    ``cert.pem``, with or without the root (LETSENCRYPT_SHORTCHAIN; roost.tls.chains).
    Both are written from certbot's chain at each installation, and again at each start
    so that a change of the setting (or of the system's CAs) applies.
    """

    @property
    def cert_file(self) -> Path:
        return self.layout.acme / "cert.pem"

    @property
    def key_file(self) -> Path:
        return self.layout.acme / "key.pem"

    @property
    def mx_cert_file(self) -> Path:
        return self.layout.acme / "dane-chain.pem"

    def provide(self) -> list[str]:
        self.layout.acme.mkdir(mode=0o750, parents=True, exist_ok=True)
        messages = []
        if not self.cert_file.exists() and not self.key_file.exists():
            names = self.create()
            messages.append(
                f"TLS_FLAVOR={self.layout.settings.TLS_FLAVOR}: serving a self-signed "
                f"certificate for {', '.join(names)} until the ACME server issues one; "
                "certbot runs once the stack is up, `roost status` says how it went"
            )
        return messages + self._rearrange()

    def arranged(self, chain_pem: bytes) -> Chains:
        """The chains to serve for a PEM chain (raises ValueError if it holds none)."""
        chain = x509.load_pem_x509_certificates(chain_pem)
        return arrange(chain, system_cas(), self.layout.settings.LETSENCRYPT_SHORTCHAIN)

    def is_served(self, chains: Chains) -> bool:
        """Whether the files already hold ``chains``."""
        try:
            return (
                self.cert_file.read_bytes() == chains.served
                and self.mx_cert_file.read_bytes() == chains.mx
            )
        except OSError:
            return False

    def write_chains(self, chains: Chains) -> None:
        """Port 25's chain first: the watch reloads the daemons when ``cert.pem`` changes."""
        write_new(self.mx_cert_file, chains.mx, 0o644)
        write_new(self.cert_file, chains.served, 0o644)

    def _rearrange(self) -> list[str]:
        """Write both chains again from the fullest one there is (port 25's, unless it is
        missing or older than ``cert.pem``); an unreadable file is left to the check."""
        try:
            source = self.cert_file.read_bytes()
            served = x509.load_pem_x509_certificates(source)
            with contextlib.suppress(OSError, ValueError):
                mx = self.mx_cert_file.read_bytes()
                if x509.load_pem_x509_certificates(mx)[0] == served[0]:
                    source = mx
            chains = self.arranged(source)
        except (OSError, ValueError):
            return []
        if not self.is_served(chains):
            self.write_chains(chains)
        if chains.root is None and served[0].issuer != served[0].subject:
            return [missing_root(self.mx_cert_file)]
        return []


def missing_root(path: Path) -> str:
    """The warning for a chain no root of the system's CAs signed."""
    return (
        f"{path}: no root of the system's CAs signed this chain, so port 25 serves it "
        "without its root and DANE-TA(2) records of the root cannot match (install "
        "Debian's ca-certificates)"
    )


def _files_flavor(layout: Layout) -> CertificateSource:
    return Files(layout, fallback=SelfSigned(layout))


#: TLS_FLAVOR -> the source of the stack's pair. TLS_FLAVOR=notls has none. ``mail`` and
#: ``mail-letsencrypt`` differ from ``cert`` and ``letsencrypt`` only in nginx's port 80.
FLAVORS: dict[str, Callable[[Layout], CertificateSource]] = {
    "cert": _files_flavor,
    "mail": _files_flavor,
    "letsencrypt": Acme,
    "mail-letsencrypt": Acme,
}


def source_for(layout: Layout) -> CertificateSource | None:
    """The source for this stack's TLS_FLAVOR; None when TLS is off."""
    if not layout.settings.tls:
        return None
    return FLAVORS[layout.settings.TLS_FLAVOR](layout)


def write_new(path: Path, data: bytes, mode: int) -> None:
    """Write with ``mode`` from the first byte: a key must never be readable, even briefly.

    The new file replaces the old one in one rename, so a daemon reloading meanwhile reads
    either the old pair or the new one, never half a file.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, mode)  # the umask may have removed bits from an 0644 file
    os.replace(tmp, path)
