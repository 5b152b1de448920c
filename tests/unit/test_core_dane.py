"""TLSA records for port 25 (roost.core.dane, roost.core.dnsrecords.tlsa_records): Mailu's
exact lines under Let's Encrypt, DANE-EE of the served key under TLS_FLAVOR cert/mail."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from roost.core.dane import ISRG_ROOTS, ServedKey, tlsa_digest
from roost.core.dnsrecords import omitted, records, tlsa_records, zone_file
from roost.settings import Settings, load_settings

#: Debian's copies of Let's Encrypt's roots (package ca-certificates).
MOZILLA = Path("/usr/share/ca-certificates/mozilla")
SPKI = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
KEY = ServedKey(spki=b"\x30\x59" + b"k" * 89, self_signed=False)
KEY_HASH = hashlib.sha256(KEY.spki).hexdigest()


def settings(**values: str) -> Settings:
    environ = {"DOMAIN": "example.com", "HOSTNAMES": "mail.example.com,mx2.example.com"}
    return load_settings(env_file=None, environ=environ | values)


@pytest.mark.parametrize("name", ["ISRG Root X1", "ISRG Root X2"])
def test_the_isrg_pins_are_the_roots_public_keys(name: str) -> None:
    """The hashes Mailu publishes are SHA-256 over each root's SubjectPublicKeyInfo."""
    path = MOZILLA / f"{name.replace(' ', '_')}.crt"
    root = x509.load_pem_x509_certificate(path.read_bytes())
    assert root.subject.rfc4514_string().startswith(f"CN={name},")
    spki = root.public_key().public_bytes(*SPKI)
    assert ISRG_ROOTS[name] == hashlib.sha256(spki).hexdigest()
    assert tlsa_digest(1, 1, b"", spki) == ISRG_ROOTS[name]


def test_tlsa_digest_of_each_selector_and_matching_type() -> None:
    cert, spki = b"certificate", b"key"
    assert tlsa_digest(0, 0, cert, spki) == cert.hex()
    assert tlsa_digest(1, 0, cert, spki) == spki.hex()
    assert tlsa_digest(0, 1, cert, spki) == hashlib.sha256(cert).hexdigest()
    assert tlsa_digest(1, 2, cert, spki) == hashlib.sha512(spki).hexdigest()


@pytest.mark.parametrize("flavor", ["letsencrypt", "mail-letsencrypt"])
def test_letsencrypt_publishes_mailus_two_root_records(flavor: str) -> None:
    s = settings(TLS_FLAVOR=flavor)
    expected = [
        "_25._tcp.mail.example.com. 86400 IN TLSA 2 1 1 "
        "0b9fa5a59eed715c26c1020c711b4f6ec42d58b0015e14337a39dad301c5afc3",
        "_25._tcp.mail.example.com. 86400 IN TLSA 2 1 1 "
        "762195c225586ee6c0237456e2107dc54f1efc21f61a792ebd515913cce68332",
    ]
    # The key does not matter: certbot makes a new one at each renewal.
    assert [r.line for r in tlsa_records(s, None)] == expected
    assert [r.line for r in tlsa_records(s, KEY)] == expected
    assert not any(reason.startswith("TLSA") for reason in omitted(s, "example.com"))


def test_the_tlsa_records_come_after_dmarc_and_before_the_services_as_in_mailus_zone() -> None:
    s = settings(TLS_FLAVOR="letsencrypt", DMARC_RUA="reports")
    text = zone_file(s, "other.org", ["alt.example"], dkim="PUB")
    body = [line.split(" ")[0] for line in text.splitlines() if not line.startswith(";")]
    report = body.index("other.org._report._dmarc.example.com.")
    assert body[report + 1 : report + 3] == ["_25._tcp.mail.example.com."] * 2
    assert body[report + 3] == "_imap._tcp.other.org."
    assert body.count("_25._tcp.mail.example.com.") == 2, "not again for the alternative"
    tlsa = [r for r in records(s, "other.org", ["alt.example"]) if r.rtype == "TLSA"]
    assert {r.domain for r in tlsa} == {"other.org"}


def test_another_acme_ca_gets_no_isrg_record() -> None:
    staging = "https://acme-staging-v02.api.letsencrypt.org/directory"
    s = settings(TLS_FLAVOR="letsencrypt", ACME_SERVER=staging)
    assert tlsa_records(s, KEY) == []
    (reason,) = [r for r in omitted(s, "example.com") if r.startswith("TLSA")]
    assert "ACME_SERVER is not Let's Encrypt's" in reason and "2 1 1" in reason


@pytest.mark.parametrize("flavor", ["cert", "mail"])
def test_the_administrators_certificate_gets_dane_ee_of_its_key(flavor: str) -> None:
    s = settings(TLS_FLAVOR=flavor)
    (record,) = tlsa_records(s, KEY)
    assert record.line == f"_25._tcp.mail.example.com. 3600 IN TLSA 3 1 1 {KEY_HASH}"
    assert "before changing it (RFC 7671 §8.1)" in record.purpose
    assert record.line in [r.line for r in records(s, "example.com", served=KEY)]
    assert not any(r.startswith("TLSA") for r in omitted(s, "example.com", served=KEY))


def test_no_record_for_a_self_signed_unreadable_or_absent_certificate() -> None:
    s = settings(TLS_FLAVOR="cert")
    placeholder = ServedKey(KEY.spki, self_signed=True)
    for served, words in ((placeholder, "self-signed placeholder"), (None, "missing or")):
        assert tlsa_records(s, served) == []
        assert not any(r.rtype == "TLSA" for r in records(s, "example.com", served=served))
        (reason,) = [r for r in omitted(s, "example.com", served=served) if r.startswith("TLSA")]
        assert words in reason
    notls = settings(TLS_FLAVOR="notls")
    assert tlsa_records(notls, KEY) == []
    assert any("notls" in r for r in omitted(notls, "example.com", served=KEY))


def test_the_api_shows_them_as_mailus_dns_tlsa(tmp_path: Path) -> None:
    from tests.unit.test_web_api_support import api_stack

    stack, client = api_stack(tmp_path, extra="TLS_FLAVOR=letsencrypt\n")
    assert client.post("/domain", json={"name": "example.org"}).status_code == 200
    got = client.get("/domain/example.org").json()
    host = stack.settings.hostname
    assert got["dns_tlsa"] == [
        f"_25._tcp.{host}. 86400 IN TLSA 2 1 1 {digest}" for digest in ISRG_ROOTS.values()
    ]
