"""TLS_FLAVOR=cert: the self-signed default and the checks of a supplied pair."""

from __future__ import annotations

import contextlib
import datetime
import ssl
import stat
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from test_services_postfix_support import make_settings, roost_root

from roost import certs
from roost.layout import Layout


@pytest.fixture()
def layout() -> Iterator[Layout]:
    with roost_root() as root:
        yield Layout(make_settings(root, "127.0.5.50"))


def supplied_pair(layout: Layout, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> None:
    """Write a pair the way an administrator would: certificate (plus chain) and key."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.example.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    layout.certs.mkdir(parents=True, exist_ok=True)
    layout.cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    layout.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )


def handshake(layout: Layout, name: str) -> str:
    """A TLS handshake in memory: our server certificate, a client that trusts only it."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(layout.cert_file, layout.key_file)  # also checks the pair
    client = ssl.create_default_context(cafile=layout.cert_file)
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    tls_client = client.wrap_bio(c_in, c_out, server_hostname=name)
    tls_server = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for end in (tls_client, tls_server):
            with contextlib.suppress(ssl.SSLWantReadError):
                end.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        try:
            tls_client.do_handshake()
            return str(tls_client.version())
        except ssl.SSLWantReadError:
            continue
    raise AssertionError("handshake did not finish")


def test_notls_needs_nothing(layout: Layout) -> None:
    notls = Layout(make_settings(layout.root, "127.0.5.50", TLS_FLAVOR="notls"))
    assert certs.ensure_certificate(notls) is None
    assert not notls.certs.exists()


def test_missing_pair_becomes_a_self_signed_certificate(layout: Layout) -> None:
    message = certs.ensure_certificate(layout)
    assert message is not None
    assert "self-signed" in message and str(layout.cert_file) in message
    assert stat.S_IMODE(layout.key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(layout.cert_file.stat().st_mode) == 0o644

    certificate = x509.load_pem_x509_certificate(layout.cert_file.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert names.value.get_values_for_type(x509.DNSName) == [
        "mail.example.test",
        "smtp.example.test",
        "localhost",
    ]
    assert certificate.subject.rfc4514_string() == "CN=mail.example.test"
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert lifetime == datetime.timedelta(days=825)
    assert isinstance(certificate.public_key(), ec.EllipticCurvePublicKey)
    # A TLS client that trusts this file accepts it for "localhost".
    assert handshake(layout, "localhost") in ("TLSv1.2", "TLSv1.3")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(layout, "elsewhere.example")

    # Present and valid: nothing to say, nothing rewritten.
    before = layout.cert_file.read_bytes()
    assert certs.ensure_certificate(layout) is None
    assert layout.cert_file.read_bytes() == before


def test_supplied_rsa_pair_with_chain_is_accepted(layout: Layout) -> None:
    supplied_pair(layout, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    other = x509.load_pem_x509_certificate(layout.cert_file.read_bytes())
    with layout.cert_file.open("ab") as chain:  # an intermediate after the leaf
        chain.write(other.public_bytes(serialization.Encoding.PEM))
    assert certs.ensure_certificate(layout) is None


def test_one_missing_file_is_an_error_not_a_new_pair(layout: Layout) -> None:
    supplied_pair(layout, ec.generate_private_key(ec.SECP256R1()))
    original = layout.cert_file.read_bytes()
    layout.key_file.unlink()
    with pytest.raises(certs.CertificateError, match=f"{layout.key_file}: missing"):
        certs.ensure_certificate(layout)
    assert layout.cert_file.read_bytes() == original


def test_unreadable_certificate_names_the_file(layout: Layout) -> None:
    supplied_pair(layout, ec.generate_private_key(ec.SECP256R1()))
    layout.cert_file.write_text("-----BEGIN CERTIFICATE-----\nnonsense\n")
    with pytest.raises(certs.CertificateError, match=f"{layout.cert_file}: not a PEM certificate"):
        certs.ensure_certificate(layout)


def test_mismatched_key_names_the_key(layout: Layout) -> None:
    supplied_pair(layout, ec.generate_private_key(ec.SECP256R1()))
    stranger = ec.generate_private_key(ec.SECP256R1())
    layout.key_file.write_bytes(
        stranger.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(certs.CertificateError, match=f"{layout.key_file}: does not match"):
        certs.ensure_certificate(layout)


def test_encrypted_key_is_refused(layout: Layout) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    supplied_pair(layout, key)
    layout.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    with pytest.raises(certs.CertificateError, match=f"{layout.key_file}: the key is encrypted"):
        certs.ensure_certificate(layout)


def test_check_certificate_never_creates(layout: Layout) -> None:
    with pytest.raises(certs.CertificateError, match=str(layout.cert_file)):
        certs.check_certificate(layout)
    assert not layout.certs.exists()
