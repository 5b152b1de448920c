"""The admin's "Generate keys" (Mailu's /domain/genkeys/<domain>): global administrators
only, behind a confirmation page whose POST needs its CSRF token; the details page and the
zone file then show the DKIM and DMARC records of the domain and its alternatives, and the
TLSA record of the served key."""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterator

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import insert

from roost.core import dkim
from roost.gate.control import request_reload
from roost.store.dkimkeys import DkimKeys
from roost.store.models import manager
from tests.unit.test_gate_support import (
    DOMAIN,
    GateHarness,
    add_domain,
    add_user,
    running_gate,
)
from tests.unit.web_harness import PASSWORD, Browser, post_form

ADMIN = "/admin"
BOSS = f"boss@{DOMAIN}"
MGR = f"mgr@{DOMAIN}"
SIGNED = "signed.test"

browse = Browser("192.0.2.75")


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateHarness]:
    with running_gate(tmp_path_factory.mktemp("admin-dkim"), "127.0.24.75") as harness:
        add_user(harness.store, BOSS, PASSWORD, global_admin=True)
        add_user(harness.store, MGR, PASSWORD)
        add_domain(harness.store, SIGNED, ("alt-signed.test",))
        with harness.store.session() as session:
            session.execute(insert(manager).values(domain_name=SIGNED, user_email=MGR))
        request_reload(harness.layout)
        yield harness


def test_a_manager_sees_no_button_and_cannot_generate(gate: GateHarness) -> None:
    async def go(client: httpx.AsyncClient) -> tuple[httpx.Response, int, int]:
        details = await client.get(f"{ADMIN}/domain/details/{SIGNED}")
        ask = await client.get(f"{ADMIN}/domain/genkeys/{SIGNED}")
        done = await client.post(f"{ADMIN}/domain/genkeys/{SIGNED}", data={})
        return details, ask.status_code, done.status_code

    details, ask, done = browse(gate, MGR, go)
    assert details.status_code == 200 and "genkeys" not in details.text
    assert (ask, done) == (403, 403)
    assert not DkimKeys(gate.settings).has(SIGNED)


def test_global_admin_generates_after_confirming(gate: GateHarness) -> None:
    page = f"{ADMIN}/domain/genkeys/{SIGNED}"

    async def go(client: httpx.AsyncClient) -> list[httpx.Response]:
        before = await client.get(f"{ADMIN}/domain/details/{SIGNED}")
        no_token = await client.post(page, data={})
        done = await post_form(client, page, page, {})
        after = await client.get(f"{ADMIN}/domain/details/{SIGNED}")
        zone = await client.get(f"{ADMIN}/domain/details/{SIGNED}/zonefile")
        return [before, no_token, done, after, zone]

    before, no_token, done, after, zone = browse(gate, BOSS, go)
    assert "Generate keys" in before.text and "_domainkey" not in before.text
    assert no_token.status_code == 403
    assert done.status_code == 303
    assert done.headers["location"].endswith(f"/domain/details/{SIGNED}")
    public = DkimKeys(gate.settings).public(SIGNED)
    assert public is not None
    text = dkim.record_text(public)
    first = text[:250]
    assert "Regenerate keys" in after.text
    assert after.text.count(first) == 2  # the domain's record and its alternative's
    for name in (SIGNED, "alt-signed.test"):
        assert f"dkim._domainkey.{name}." in after.text
        assert f"_dmarc.{name}." in after.text
        assert f'dkim._domainkey.{name}. 600 IN TXT "{first}" "{text[250:]}"' in zone.text
        assert f"_dmarc.{name}. 600 IN TXT" in zone.text
    assert "Left out: DKIM" not in after.text


def test_the_details_page_and_zone_file_show_the_tlsa_record_of_the_served_key(
    gate: GateHarness,
) -> None:
    """TLS_FLAVOR=cert with a CA-signed certificate: DANE-EE of its key, as `roost dns`."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "A CA")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(ca_key, hashes.SHA256())
    )
    layout = gate.layout
    layout.cert_file.parent.mkdir(parents=True, exist_ok=True)
    layout.cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    line = (
        f"_25._tcp.{gate.settings.hostname}. 3600 IN TLSA 3 1 1 {hashlib.sha256(spki).hexdigest()}"
    )

    async def go(client: httpx.AsyncClient) -> list[httpx.Response]:
        details = await client.get(f"{ADMIN}/domain/details/{SIGNED}")
        zone = await client.get(f"{ADMIN}/domain/details/{SIGNED}/zonefile")
        return [details, zone]

    try:
        details, zone = browse(gate, BOSS, go)
    finally:
        layout.cert_file.unlink()
    assert f"_25._tcp.{gate.settings.hostname}." in details.text
    assert f"3 1 1 {hashlib.sha256(spki).hexdigest()}" in details.text
    assert line in zone.text.splitlines()
