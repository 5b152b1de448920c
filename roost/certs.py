"""The TLS certificate every daemon serves (TLS_FLAVOR=cert).

Mailu's ``cert`` flavor expects the administrator to drop ``cert.pem``/``key.pem`` into
the certs folder and turns TLS off when they are missing. Roost instead makes a
self-signed certificate on first start, so that a fresh install answers on 465/993/443
at once and the administrator replaces the pair later; and it checks a supplied pair
before any daemon starts, so that a wrong file is one clear message instead of three
daemons failing in three different ways.
"""

from __future__ import annotations

import datetime
import os
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from roost.layout import Layout
from roost.services.base import ServiceConfigError

__all__ = ["CertificateError", "check_certificate", "ensure_certificate"]

# The longest validity clients accepted for a TLS server certificate when the limit was
# introduced (CA/Browser Forum, 2018); Apple's TLS stack still refuses longer ones.
VALIDITY_DAYS = 825


class CertificateError(ServiceConfigError):
    """The certificate or key cannot be used; the message names the file."""


def ensure_certificate(layout: Layout) -> str | None:
    """Make sure the TLS pair exists and works; return a message if one was created.

    Called once before the daemons' configurations are rendered. Under notls there is
    nothing to do. If exactly one of the two files is missing, the other is the
    administrator's and is not overwritten.
    """
    if not layout.settings.tls:
        return None
    cert_file, key_file = layout.cert_file, layout.key_file
    if not cert_file.exists() and not key_file.exists():
        names = create_self_signed(layout)
        return (
            f"TLS_FLAVOR=cert: no certificate in {layout.certs}; created a self-signed one "
            f"for {', '.join(names)}, valid {VALIDITY_DAYS} days ({cert_file}, {key_file}). "
            "Replace both files with a certificate clients trust."
        )
    check_certificate(layout)
    return None


def create_self_signed(layout: Layout) -> list[str]:
    """Write a self-signed EC P-256 pair for all HOSTNAMES and ``localhost``.

    ``localhost`` is there because local clients (and test clients) check the name they
    connected to. Returns the names in the certificate.
    """
    settings = layout.settings
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
    layout.certs.mkdir(parents=True, exist_ok=True)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_new(layout.key_file, key_pem, 0o600)
    _write_new(layout.cert_file, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    return names


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write with ``mode`` from the first byte: a key must never be readable, even briefly."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, mode)  # the umask may have removed bits from an 0644 file
    os.replace(tmp, path)


def check_certificate(layout: Layout) -> None:
    """Load the pair and check the key belongs to the (first) certificate."""
    cert_file, key_file = layout.cert_file, layout.key_file
    for path in (cert_file, key_file):
        if not path.is_file():
            raise CertificateError(
                f"{path}: missing; TLS_FLAVOR=cert needs both {cert_file.name} and "
                f"{key_file.name} in {layout.certs} (remove both to get a self-signed pair)"
            )
    try:
        chain = x509.load_pem_x509_certificates(cert_file.read_bytes())
    except (OSError, ValueError) as exc:
        raise CertificateError(f"{cert_file}: not a PEM certificate ({exc})") from None
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except TypeError:
        raise CertificateError(
            f"{key_file}: the key is encrypted; the daemons need it without a passphrase"
        ) from None
    except (OSError, ValueError) as exc:
        raise CertificateError(f"{key_file}: not a PEM private key ({exc})") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != chain[0].public_key().public_bytes(*spki):
        raise CertificateError(
            f"{key_file}: does not match the certificate in {cert_file} "
            "(the first certificate in the file must be the server's own)"
        )
