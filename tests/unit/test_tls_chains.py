"""The chains served under the letsencrypt flavors (roost.tls.chains): port 25's with its
root for DANE-TA(2), the others per LETSENCRYPT_SHORTCHAIN; the files the ACME install
writes, their rewriting at start, the watch, and the nginx lines that name them."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_services_nginx import block, directives
from test_services_postfix_support import make_settings, roost_root

from roost import tls
from roost.layout import Layout
from roost.services.nginx import NginxService
from roost.tls.acme import certbot_paths, install
from roost.tls.chains import arrange, pem, system_cas
from roost.tls.sources import Acme

ADDRESS = "127.0.5.32"
NOW = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
Pair = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def certificate(
    name: str,
    issuer: Pair | None,
    *,
    ca: bool = True,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> Pair:
    """A certificate for ``name`` signed by ``issuer`` (self-signed when None)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + datetime.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key


@pytest.fixture(scope="module")
def pki() -> dict[str, Pair]:
    """A root, an older root that cross-signed it, an intermediate and a leaf."""
    root = certificate("Test Root X2", None)
    old = certificate("Test Root X1", None)
    cross = certificate("Test Root X2", old, key=root[1])  # same name and key as the root
    intermediate = certificate("Test E5", root)
    leaf = certificate("mail.example.test", intermediate, ca=False)
    return {"root": root, "old": old, "cross": cross, "e5": intermediate, "leaf": leaf}


def certs(pki: dict[str, Pair], *names: str) -> list[x509.Certificate]:
    return [pki[name][0] for name in names]


def test_port_25_gets_the_root_and_the_others_per_shortchain(pki: dict[str, Pair]) -> None:
    chain = certs(pki, "leaf", "e5")
    roots = certs(pki, "old", "root")
    full = arrange(chain, roots, short=False)
    assert full.mx == full.served == pem(certs(pki, "leaf", "e5", "root"))
    assert full.root == pki["root"][0]
    short = arrange(chain, roots, short=True)
    assert short.mx == full.mx
    assert short.served == pem(chain)


def test_a_cross_signed_root_gives_way_to_the_root_itself(pki: dict[str, Pair]) -> None:
    """As Mailu's validated chain: the cross-signed copy is left out, never sent twice."""
    chains = arrange(certs(pki, "leaf", "e5", "cross"), certs(pki, "root", "old"), short=True)
    assert chains.mx == pem(certs(pki, "leaf", "e5", "root"))
    assert chains.served == pem(certs(pki, "leaf", "e5"))
    # A chain that already ends in the root does not get it twice.
    again = arrange(certs(pki, "leaf", "e5", "root"), certs(pki, "root"), short=False)
    assert again.mx == pem(certs(pki, "leaf", "e5", "root"))


def test_without_a_known_root_the_chain_serves_as_it_came(pki: dict[str, Pair]) -> None:
    chain = certs(pki, "leaf", "e5", "cross")
    chains = arrange(chain, certs(pki, "leaf"), short=True)
    assert chains.root is None and chains.mx == chains.served == pem(chain)
    alone = arrange(certs(pki, "root"), certs(pki, "root"), short=True)
    assert alone.root is None and alone.mx == pem(certs(pki, "root")), "self-signed"


def test_the_system_cas_follow_ssl_cert_file(
    pki: dict[str, Pair], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert any("ISRG Root X1" in c.subject.rfc4514_string() for c in system_cas())
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(b"junk\n-----END CERTIFICATE-----\n" + pem(certs(pki, "root")))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    assert system_cas() == certs(pki, "root")


@pytest.fixture()
def layout(
    pki: dict[str, Pair], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Layout]:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pem(certs(pki, "root")))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    with roost_root() as root:
        hostnames = ("mail.example.test",)
        yield Layout(make_settings(root, ADDRESS, TLS_FLAVOR="letsencrypt", HOSTNAMES=hostnames))


def issue(layout: Layout, pki: dict[str, Pair], *names: str) -> None:
    """What certbot leaves in live/roost/ for the leaf."""
    paths = certbot_paths(layout)
    paths.live_cert.parent.mkdir(parents=True, exist_ok=True)
    paths.live_cert.write_bytes(pem(certs(pki, *names)))
    paths.live_key.write_bytes(
        pki["leaf"][1].private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def test_install_writes_both_chains_and_a_start_applies_a_new_setting(
    layout: Layout, pki: dict[str, Pair]
) -> None:
    tls.ensure(layout)
    issue(layout, pki, "leaf", "e5")
    assert install(layout, certbot_paths(layout)) is not None
    pair = tls.served_pair(layout)
    assert pair is not None and pair.mx_cert_file == layout.acme / "dane-chain.pem"
    with_root = pem(certs(pki, "leaf", "e5", "root"))
    assert pair.mx_cert_file.read_bytes() == pair.cert_file.read_bytes() == with_root
    assert install(layout, certbot_paths(layout)) is None, "nothing new"
    # LETSENCRYPT_SHORTCHAIN=true and a restart: the other ports lose the root, 25 keeps it.
    short = Layout(dataclasses.replace(layout.settings, LETSENCRYPT_SHORTCHAIN=True))
    assert tls.ensure(short) == []
    assert pair.cert_file.read_bytes() == pem(certs(pki, "leaf", "e5"))
    assert pair.mx_cert_file.read_bytes() == with_root
    assert install(short, certbot_paths(short)) is None, "the files already hold it"
    assert tls.served_key(short) == tls.served_key(layout) is not None


def test_a_chain_no_known_root_signed_is_served_as_it_came_with_a_warning(
    layout: Layout, pki: dict[str, Pair], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent")
    tls.ensure(layout)
    issue(layout, pki, "leaf", "e5")
    install(layout, certbot_paths(layout))
    pair = tls.served_pair(layout)
    assert pair is not None
    assert pair.mx_cert_file.read_bytes() == pem(certs(pki, "leaf", "e5"))
    (message,) = tls.ensure(layout)
    assert "no root of the system's CAs signed this chain" in message


def test_the_watch_reloads_when_only_port_25s_chain_changes(
    layout: Layout, pki: dict[str, Pair]
) -> None:
    tls.ensure(layout)
    watch = tls.watch_served(layout)
    assert watch is not None and watch.poll() is None
    source = Acme(layout)
    source.mx_cert_file.write_bytes(source.cert_file.read_bytes() * 2)
    change = watch.poll()
    assert change is not None and change.certificate is not None


def test_nginx_serves_port_25_the_chain_with_the_root(layout: Layout) -> None:
    tls.ensure(layout)
    service = NginxService(layout)
    service.render()  # nginx -t loads both files
    text = service.conf.read_text()
    mail = directives(block(text, "mail {"))
    assert f"ssl_certificate {layout.acme}/dane-chain.pem;" in mail
    assert f"ssl_certificate_key {layout.acme}/key.pem;" in mail
    https = directives(block(block(text, "http {"), "# HTTPS"))
    assert f"ssl_certificate {layout.acme}/cert.pem;" in https


def test_the_administrators_chain_serves_port_25_as_it_is() -> None:
    with roost_root() as root:
        layout = Layout(make_settings(root, ADDRESS, TLS_FLAVOR="cert"))
        tls.ensure(layout)
        service = NginxService(layout)
        service.render()
        mail = directives(block(service.conf.read_text(), "mail {"))
        assert f"ssl_certificate {layout.cert_file};" in mail
