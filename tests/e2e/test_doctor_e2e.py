"""``roost doctor`` for real, against the tests' DNS, and the MTA-STS policy nginx serves.

Two worlds without daemons, each its own ROOT and store: ``good.test``, published exactly
as ``roost dns`` says, with a CA-signed certificate (the CA given to the doctor as the
system's through SSL_CERT_FILE), a matching TLSA record, forward-confirmed reverse DNS
and listeners on its ports; and ``broken.test``, with a wrong MX, two SPF records, a stale
DKIM key, no DMARC, a stale TLSA record, a PTR naming another host and nothing listening.
Then the shared options stack (HOSTNAMES with ``mta-sts.example.test``, MTA_STS_MODE
testing): curl fetches the policy over HTTPS, and the doctor fetches and judges it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.reversename
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from roost import tls
from roost.cli import cli
from roost.core import dkim, mtasts
from roost.core.dnsrecords import txt_value
from roost.layout import Layout
from roost.settings import load_settings
from roost.store.db import Store
from tests.e2e.conftest import require_root
from tests.e2e.local_dns import DNS_ADDRESS, add_records
from tests.e2e.stack import DOMAIN, HOSTNAME, Stack, e2e_address, make_base

pytestmark = pytest.mark.e2e

RESOLVER = f"{DNS_ADDRESS}:53"
GOOD, BROKEN = e2e_address(101), e2e_address(102)
#: Nothing answers DNS here: every query fails.
DEAD_RESOLVER = f"{e2e_address(103)}:53"


@dataclass
class World:
    domain: str
    host: str
    env_file: Path
    root: Path
    ca_file: Path | None = None

    def roost(self, *args: str) -> str:
        result = CliRunner().invoke(cli, ["--env", str(self.env_file), *args])
        assert result.exit_code == 0, result.output
        return result.output

    def doctor(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``roost doctor`` as a process, trusting the world's CA as the system's."""
        environ = {k: v for k, v in os.environ.items() if k != "ROOST_ENV"}
        if self.ca_file:
            environ["SSL_CERT_FILE"] = str(self.ca_file)
        return subprocess.run(
            [sys.executable, "-m", "roost", "--env", str(self.env_file), "doctor", *args],
            capture_output=True,
            text=True,
            env=environ,
            timeout=60,
            check=False,
        )


def make_world(base: Path, domain: str, address: str) -> World:
    host = f"mail.{domain}"
    root = base / domain
    env_file = base / f"{domain}.env"
    env_file.write_text(
        f"ROOT={root}\nDOMAIN={domain}\nHOSTNAMES={host}\nBIND_ADDRESS4={address}\n"
        "PORTS=25,443\nTLS_FLAVOR=cert\nSECRET_KEY=doctor-test-secret-0123456789ab\n"
    )
    store = Store.from_settings(load_settings(env_file=env_file, environ={}))
    try:
        store.upgrade()
    finally:
        store.dispose()
    world = World(domain, host, env_file, root)
    world.roost("domain", domain)
    world.roost("dkim", "generate", domain)
    return world


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def ca_signed_pair(world: World) -> bytes:
    """A CA (written to ``ca.pem``, the doctor's system CAs) and a server certificate for
    the host signed by it in ROOT/certs; returns the server's SubjectPublicKeyInfo."""
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    later = now + datetime.timedelta(days=90)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Doctor Test CA"))
        .issuer_name(_name("Doctor Test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(world.host))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(world.host)]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    certs = world.root / "certs"
    certs.mkdir(parents=True)
    (certs / "cert.pem").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    (certs / "key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    world.ca_file = world.root.parent / f"{world.domain}-ca.pem"
    world.ca_file.write_bytes(ca.public_bytes(pem))
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def ptr(address: str) -> str:
    return dns.reversename.from_address(address).to_text()


def published(world: World) -> str:
    """What ``roost dns`` says to publish, without its "Left out" lines."""
    lines = world.roost("dns", world.domain).splitlines()
    return "\n".join(line for line in lines if not line.startswith("Left out")) + "\n"


@pytest.fixture(scope="module")
def worlds() -> Iterator[tuple[World, World]]:
    require_root()
    base = make_base() / "doctor"
    subprocess.run(["rm", "-rf", str(base)], check=True)
    base.mkdir()
    good, broken = make_world(base, "good.test", GOOD), make_world(base, "broken.test", BROKEN)
    good.roost("user", "admin", "good.test", "doctor-test-password")
    good.roost("alias", "postmaster", "good.test", "admin@good.test")
    spki = ca_signed_pair(good)
    tls.ensure(Layout(load_settings(env_file=broken.env_file, environ={})))  # self-signed
    add_records(
        published(good)
        + f"mail.good.test. 600 IN A {GOOD}\n"
        + f"{ptr(GOOD)} 600 IN PTR mail.good.test.\n"
    )
    # roost dns suggests the TLSA record of the CA-signed key (DANE-EE, 3 1 1).
    assert f"IN TLSA 3 1 1 {hashlib.sha256(spki).hexdigest()}" in published(good)
    stale_key = txt_value(dkim.record_text(dkim.public_key(dkim.generate_key())))
    add_records(
        "broken.test. 600 IN MX 10 mx.elsewhere.test.\n"
        'broken.test. 600 IN TXT "v=spf1 mx ~all"\n'
        'broken.test. 600 IN TXT "v=spf1 a:mail.broken.test -all"\n'
        f"dkim._domainkey.broken.test. 600 IN TXT {stale_key}\n"
        f"mail.broken.test. 600 IN A {BROKEN}\n"
        f"{ptr(BROKEN)} 600 IN PTR host.isp.test.\n"
        f"host.isp.test. 600 IN A {BROKEN}\n"
        f"_25._tcp.mail.broken.test. 600 IN TLSA 3 1 1 {'00' * 32}\n"
    )
    listeners = []
    for port in (25, 443):  # the good host's enabled ports answer; the broken one's do not
        listener = socket.create_server((GOOD, port))
        listeners.append(listener)
    try:
        yield good, broken
    finally:
        for listener in listeners:
            listener.close()


def findings(report: dict[str, Any], group: str) -> dict[str, list[dict[str, str]]]:
    """The findings of one group by check."""
    (found,) = [g for g in report["groups"] if g["name"] == group]
    out: dict[str, list[dict[str, str]]] = {}
    for finding in found["findings"]:
        out.setdefault(finding["check"], []).append(finding)
    return out


CHECKS = {"mx", "spf", "dkim", "dmarc", "mta-sts", "tls-rpt", "postmaster"}
HOST_CHECKS = {"address", "reverse-dns", "certificate", "tlsa", "ports"}


def test_a_domain_published_as_roost_dns_says_is_healthy(worlds: tuple[World, World]) -> None:
    good, _ = worlds
    result = good.doctor("--json", "--resolver", RESOLVER)
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["status"] == "ok" and report["counts"]["ok"] > 0
    assert report["version"] == 1 and "firewall" in report["notes"][0]
    domain, host = findings(report, "good.test"), findings(report, "mail.good.test")
    assert set(domain) == CHECKS and set(host) == HOST_CHECKS
    every = [f for checks in (domain, host) for found in checks.values() for f in found]
    bad = [f for f in every if f["severity"] != "ok"]
    assert bad == []
    assert [f["message"] for f in host["ports"]] == [
        f"{GOOD} port 25 answers",
        f"{GOOD} port 443 answers",
    ]
    assert (
        host["reverse-dns"][0]["message"]
        == f"{GOOD} is mail.good.test both ways (HELO mail.good.test)"
    )


def test_a_broken_domain_gets_each_problem_and_its_fix(worlds: tuple[World, World]) -> None:
    _, broken = worlds
    result = broken.doctor("--json", "--resolver", RESOLVER)
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    domain, host = findings(report, "broken.test"), findings(report, "mail.broken.test")
    severity = {
        check: [f["severity"] for f in found] for check, found in {**domain, **host}.items()
    }
    assert severity == {
        "mx": ["error"],
        "spf": ["error"],
        "dkim": ["error"],
        "dmarc": ["error"],
        "mta-sts": ["ok"],
        "tls-rpt": ["ok"],
        "postmaster": ["warning"],
        "address": ["ok"],
        "reverse-dns": ["warning"],
        "certificate": ["warning"],
        "tlsa": ["error"],
        "ports": ["error", "warning"],
    }
    assert domain["mx"][0]["fix"] == "broken.test. 600 IN MX 10 mail.broken.test."
    assert "2 SPF records" in domain["spf"][0]["message"]
    stored = broken.roost("dkim", "show", "broken.test").splitlines()[0]
    assert domain["dkim"][0]["fix"] == f"replace it with {stored}"
    assert domain["dmarc"][0]["fix"].startswith(
        '_dmarc.broken.test. 600 IN TXT "v=DMARC1; p=reject;'
    )
    assert "host.isp.test" in host["reverse-dns"][0]["message"]
    assert "self-signed" in host["certificate"][0]["message"]
    # Nothing to suggest for a self-signed placeholder (roost dns says why): remove it.
    assert host["tlsa"][0]["fix"].startswith("remove the TLSA records at _25._tcp.mail.broken.test")
    assert host["ports"][0]["message"].startswith(f"{BROKEN} port 25 does not answer")

    text = broken.doctor("broken.test", "--resolver", RESOLVER)
    assert text.returncode == 1
    lines = text.stdout.splitlines()
    assert lines[0] == "broken.test"
    assert "          fix: broken.test. 600 IN MX 10 mail.broken.test." in lines
    assert "host mail.broken.test" in lines
    assert lines[-1].startswith("6 error(s), 4 warning(s), 0 not checked")


def test_a_resolver_that_does_not_answer_is_not_a_missing_record(
    worlds: tuple[World, World],
) -> None:
    good, _ = worlds
    started = time.monotonic()
    result = good.doctor("--json", "--resolver", DEAD_RESOLVER)
    assert time.monotonic() - started < 20
    report = json.loads(result.stdout)
    assert result.returncode == 3, result.stdout + result.stderr
    mx = findings(report, "good.test")["mx"][0]
    assert mx["severity"] == "unknown" and mx["message"].startswith("could not look up")
    assert report["counts"]["error"] == 0


def test_bad_arguments_are_one_line(worlds: tuple[World, World]) -> None:
    good, _ = worlds
    result = good.doctor("--resolver", "dns.example")
    assert result.returncode == 2 and "not an IP address" in result.stderr
    result = good.doctor("nowhere.test")
    assert result.returncode == 2 and "nowhere.test" in result.stderr


# -- MTA-STS on the shared options stack -------------------------------------------------------

POLICY_HOST = f"mta-sts.{DOMAIN}"


def curl(stack: Stack, host: str, scheme: str = "https") -> tuple[str, str]:
    """(headers, body) of the policy URL from curl, connected to the stack's address."""
    port = 443 if scheme == "https" else 80
    result = subprocess.run(
        [
            "curl", "--silent", "--show-error", "--max-time", "10",
            "--resolve", f"{host}:{port}:{stack.address}",
            "--cacert", str(stack.ca_file), "--dump-header", "-",
            f"{scheme}://{host}{mtasts.POLICY_PATH}",
        ],
        capture_output=True, timeout=20, check=True,
    )  # fmt: skip
    # Bytes: text mode would turn the policy's CRLF line ends into LF.
    headers, _, body = result.stdout.decode().partition("\r\n\r\n")
    return headers, body


def test_nginx_serves_the_policy_whose_id_roost_dns_publishes(options_stack: Stack) -> None:
    headers, body = curl(options_stack, POLICY_HOST)
    assert headers.startswith("HTTP/2 200") or headers.startswith("HTTP/1.1 200"), headers
    assert "content-type: text/plain" in headers.lower()
    assert body == (f"version: STSv1\r\nmode: testing\r\nmx: {HOSTNAME}\r\nmax_age: 604800\r\n")
    dns_lines = options_stack.roost("dns", DOMAIN).stdout
    assert f'_mta-sts.{DOMAIN}. 600 IN TXT "v=STSv1; id={mtasts.policy_id(body)}"' in dns_lines
    assert f"_smtp._tls.{DOMAIN}. 600 IN TXT" in dns_lines
    # Only on the policy host, and only over HTTPS.
    assert " 404" in curl(options_stack, HOSTNAME)[0].splitlines()[0]
    assert curl(options_stack, POLICY_HOST, "http")[1] != body

    add_records(
        f"{POLICY_HOST}. 600 IN A {options_stack.address}\n"
        + "\n".join(
            line for line in dns_lines.splitlines() if "_mta-sts." in line or "_smtp._tls." in line
        )
        + "\n"
    )
    environ = options_stack.environ() | {"SSL_CERT_FILE": str(options_stack.ca_file)}
    result = subprocess.run(
        options_stack.roost_argv("doctor", DOMAIN, "--json", "--resolver", RESOLVER),
        capture_output=True, text=True, env=environ, timeout=60, check=False,
    )  # fmt: skip
    report = json.loads(result.stdout)
    checks = findings(report, DOMAIN)
    assert checks["mta-sts"][0]["severity"] == "ok", checks["mta-sts"]
    assert checks["mta-sts"][0]["message"].startswith(f"mode testing, lists {HOSTNAME}, id=")
    assert checks["tls-rpt"][0] == {
        "check": "tls-rpt",
        "severity": "ok",
        "message": f"reports go to mailto:postmaster@{DOMAIN}",
        "fix": "",
        "reference": "RFC 8460 §3",
    }
