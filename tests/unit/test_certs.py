"""roost.tls: the self-signed default, the one check of a supplied pair, the change notice."""

from __future__ import annotations

import contextlib
import datetime
import os
import ssl
import stat
import subprocess
import sys
from collections.abc import Iterator, Sequence

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from test_services_postfix_support import make_settings, roost_root

from roost import tls
from roost.layout import Layout
from roost.tls.check import covers


@pytest.fixture()
def layout() -> Iterator[Layout]:
    with roost_root() as root:
        yield Layout(make_settings(root, "127.0.5.50"))


HOSTNAMES = ["mail.example.test", "smtp.example.test"]


def supplied_pair(
    layout: Layout,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    names: Sequence[str] | None = HOSTNAMES,
    days: tuple[int, int] = (0, 30),
) -> None:
    """Write a pair the way an administrator would: certificate (plus chain) and key.

    ``names`` go into subjectAltName (None: no such extension, the CN alone); ``days`` are
    the start and end of the validity, counted from today.
    """
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.example.test")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now + datetime.timedelta(days=days[0]))
        .not_valid_after(now + datetime.timedelta(days=days[1]))
    )
    if names is not None:
        san = x509.SubjectAlternativeName([x509.DNSName(n) for n in names])
        builder = builder.add_extension(san, critical=False)
    certificate = builder.sign(key, hashes.SHA256())
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
    assert tls.ensure(notls) == []
    assert tls.served_pair(notls) is None
    assert tls.watch_served(notls) is None
    assert not notls.certs.exists()


def test_cert_flavor_serves_the_files_in_root_certs(layout: Layout) -> None:
    assert tls.served_pair(layout) == tls.CertificatePair(
        layout.cert_file, layout.key_file, layout.cert_file
    )
    assert not layout.certs.exists()  # naming the files creates nothing


def test_missing_pair_becomes_a_self_signed_certificate(layout: Layout) -> None:
    messages = tls.ensure(layout)
    assert len(messages) == 1
    assert "self-signed" in messages[0] and str(layout.cert_file) in messages[0]
    assert stat.S_IMODE(layout.key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(layout.cert_file.stat().st_mode) == 0o644

    certificate = x509.load_pem_x509_certificate(layout.cert_file.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert names.value.get_values_for_type(x509.DNSName) == [*HOSTNAMES, "localhost"]
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
    assert tls.ensure(layout) == []
    assert layout.cert_file.read_bytes() == before
    checked = tls.check_served(layout)
    assert checked.names == (*HOSTNAMES, "localhost")
    assert checked.warnings == ()


def test_supplied_rsa_pair_with_chain_is_accepted(layout: Layout) -> None:
    supplied_pair(layout, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    other = x509.load_pem_x509_certificate(layout.cert_file.read_bytes())
    with layout.cert_file.open("ab") as chain:  # an intermediate after the leaf
        chain.write(other.public_bytes(serialization.Encoding.PEM))
    assert tls.ensure(layout) == []


def test_names_not_covering_hostnames_are_a_warning(layout: Layout) -> None:
    """Clients check subjectAltName only (RFC 9525): a CN alone covers nothing."""
    supplied_pair(layout, ec.generate_private_key(ec.SECP256R1()), names=None)
    [warning] = tls.ensure(layout)
    assert warning.startswith(f"{layout.cert_file}: does not cover mail.example.test, ")
    assert "none in subjectAltName" in warning

    supplied_pair(layout, ec.generate_private_key(ec.SECP256R1()), names=["*.example.test"])
    assert tls.ensure(layout) == []
    supplied_pair(layout, ec.generate_private_key(ec.SECP256R1()), names=["mail.example.test"])
    [warning] = tls.ensure(layout)
    assert "does not cover smtp.example.test from HOSTNAMES" in warning


def test_wildcards_cover_exactly_one_label() -> None:
    assert covers(["*.example.test"], "mail.example.test")
    assert covers(["MAIL.Example.test"], "mail.example.TEST.")
    assert not covers(["*.example.test"], "example.test")
    assert not covers(["*.example.test"], "a.mail.example.test")
    assert not covers(["mail.example.test"], "smtp.example.test")
    assert not covers([], "mail.example.test")


def test_expired_and_future_certificates_are_a_warning(layout: Layout) -> None:
    supplied_pair(layout, ec.generate_private_key(ec.SECP256R1()), days=(-60, -1))
    [warning] = tls.ensure(layout)
    assert warning.startswith(f"{layout.cert_file}: expired on ")
    supplied_pair(layout, ec.generate_private_key(ec.SECP256R1()), days=(2, 30))
    [warning] = tls.ensure(layout)
    assert "not valid before" in warning and "clock" in warning


def test_one_missing_file_is_an_error_not_a_new_pair(layout: Layout) -> None:
    supplied_pair(layout, ec.generate_private_key(ec.SECP256R1()))
    original = layout.cert_file.read_bytes()
    layout.key_file.unlink()
    with pytest.raises(tls.TLSError, match=f"{layout.key_file}: missing"):
        tls.ensure(layout)
    assert layout.cert_file.read_bytes() == original
    assert not layout.key_file.exists()


def test_unreadable_certificate_names_the_file(layout: Layout) -> None:
    supplied_pair(layout, ec.generate_private_key(ec.SECP256R1()))
    layout.cert_file.write_text("-----BEGIN CERTIFICATE-----\nnonsense\n")
    with pytest.raises(tls.TLSError, match=f"{layout.cert_file}: not a PEM certificate"):
        tls.ensure(layout)


def write_key(layout: Layout, key: ec.EllipticCurvePrivateKey, password: bytes | None) -> None:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    layout.key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )


def test_mismatched_key_names_the_key(layout: Layout) -> None:
    supplied_pair(layout, ec.generate_private_key(ec.SECP256R1()))
    write_key(layout, ec.generate_private_key(ec.SECP256R1()), None)
    with pytest.raises(tls.TLSError, match=f"{layout.key_file}: does not match"):
        tls.ensure(layout)


def test_encrypted_key_is_refused(layout: Layout) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    supplied_pair(layout, key)
    write_key(layout, key, b"passphrase")
    with pytest.raises(tls.TLSError, match=f"{layout.key_file}: the key is encrypted"):
        tls.ensure(layout)


def test_check_never_creates(layout: Layout) -> None:
    with pytest.raises(tls.TLSError, match=str(layout.cert_file)):
        tls.check_served(layout)
    assert not layout.certs.exists()


def test_tls_imports_no_service_module() -> None:
    """Services import tls, never the reverse; its error is its own, no service's."""
    code = (
        "import sys, roost.tls; "
        "print(sorted(m for m in sys.modules if m.startswith('roost.services')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
    assert tls.TLSError.__mro__[1:] == (RuntimeError, Exception, BaseException, object)


# -- the change notice --------------------------------------------------------------------


def test_watch_reports_a_new_pair_once_and_ignores_a_touch(layout: Layout) -> None:
    tls.ensure(layout)
    first = tls.check_served(layout)
    watch = tls.watch_served(layout)
    assert watch is not None
    assert watch.poll() is None
    os.utime(layout.cert_file, ns=(1, 1))  # same content, new mtime: nothing to reload
    assert watch.poll() is None

    supplied_pair(layout, ec.generate_private_key(ec.SECP256R1()))
    change = watch.poll()
    assert change is not None and change.error is None and change.certificate is not None
    assert change.certificate.fingerprint != first.fingerprint
    assert change.certificate.fingerprint == tls.check_served(layout).fingerprint
    assert watch.poll() is None


def test_watch_reports_a_broken_pair_and_the_fixed_one_after_it(layout: Layout) -> None:
    """A certificate copied before its key is a mismatch for a moment: reported, not loaded."""
    tls.ensure(layout)
    watch = tls.watch_served(layout)
    assert watch is not None
    key = ec.generate_private_key(ec.SECP256R1())
    supplied_pair(layout, key)
    write_key(layout, ec.generate_private_key(ec.SECP256R1()), None)
    change = watch.poll()
    assert change is not None and change.certificate is None
    assert change.error is not None and f"{layout.key_file}: does not match" in change.error
    assert watch.poll() is None  # said once

    write_key(layout, key, None)
    change = watch.poll()
    assert change is not None and change.certificate is not None
