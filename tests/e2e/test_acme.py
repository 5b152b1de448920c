"""TLS_FLAVOR=letsencrypt end to end: certbot against Pebble (Let's Encrypt's test CA).

Pebble validates HTTP-01 for real: it looks the stack's host names up in the tests' DNS
(``-dnsserver``) and fetches the token from nginx on port 80 of the stack's address. The
stack starts before Pebble does, so its first run gets nothing and the self-signed pair
serves; then Pebble starts, a SIGHUP wakes the ACME process, and the names that resolve
get a certificate while the one that does not is left out and named by ``roost status``.
Once it resolves, the full set is issued; a forced renewal is served to new connections
while an IMAP session opened before goes on. Under LETSENCRYPT_SHORTCHAIN=true port 25
serves the chain with Pebble's root (the stack's system CAs, through SSL_CERT_FILE), the
other ports without it.
"""

from __future__ import annotations

import datetime
import imaplib
import ipaddress
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.conftest import require_root
from tests.e2e.local_dns import DNS_ADDRESS, add_records
from tests.e2e.stack import Stack, e2e_address, make_base, running, wait_for_port

pytestmark = pytest.mark.e2e

ADDRESS = e2e_address(120)
PEBBLE = e2e_address(121)
NAMES = ("mx.acme.test", "web.acme.test")
#: in HOSTNAMES, but without an address in DNS until test_the_full_set_is_issued_later
LATE = "late.acme.test"
TLS_PORTS = (443, 465, 993)


def make_pebble_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for Pebble's own HTTPS API (its ACME and management ports);
    certbot trusts the CA through REQUESTS_CA_BUNDLE. Returns (CA, certificate, key)."""
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Pebble API test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, PEBBLE)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(PEBBLE))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(mode=0o755, exist_ok=True)
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class Pebble:
    """Pebble on its own loopback address, started when a test asks for it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca, self.cert, self.key = make_pebble_tls(directory)
        self.process: subprocess.Popen[bytes] | None = None
        self.log = directory / "pebble.log"

    @property
    def url(self) -> str:
        return f"https://{PEBBLE}:14000/dir"

    def start(self) -> None:
        config = self.directory / "pebble-config.json"
        config.write_text(
            json.dumps(
                {
                    "pebble": {
                        "listenAddress": f"{PEBBLE}:14000",
                        "managementListenAddress": f"{PEBBLE}:15000",
                        "certificate": str(self.cert),
                        "privateKey": str(self.key),
                        # validation connects to port 80 of the names' addresses
                        "httpPort": 80,
                        "tlsPort": 443,
                        "ocspResponderURL": "",
                        "externalAccountBindingRequired": False,
                    }
                }
            )
        )
        env = {
            **os.environ,
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_VA_ALWAYS_VALID": "0",
            "PEBBLE_WFE_NONCEREJECT": "0",
            "PEBBLE_AUTHZREUSE": "0",
        }
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                ["pebble", "-config", str(config), "-dnsserver", f"{DNS_ADDRESS}:53"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        wait_for_port(PEBBLE, 14000)

    @property
    def root_file(self) -> Path:
        """Where :meth:`root` writes Pebble's root: the stack's system CAs."""
        return self.directory / "pebble-root.pem"

    def root(self) -> Path:
        """Pebble's root CA (new at each start), which signs what it issues."""
        context = ssl.create_default_context(cafile=str(self.ca))
        with urllib.request.urlopen(f"https://{PEBBLE}:15000/roots/0", context=context) as r:
            pem = r.read()
        self.root_file.write_bytes(pem)
        return self.root_file

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class AcmeStack(Stack):
    """A stack whose certbot trusts Pebble's API certificate, and whose system CAs are
    Pebble's root once it runs (tests only)."""

    ca_bundle: str = ""
    system_cas: str = ""

    def environ(self) -> dict[str, str]:
        return {
            **super().environ(),
            "REQUESTS_CA_BUNDLE": self.ca_bundle,
            "SSL_CERT_FILE": self.system_cas,
        }


@pytest.fixture(scope="module")
def pebble() -> Iterator[Pebble]:
    require_root()
    server = Pebble(make_base() / "pebble")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def acme_stack(pebble: Pebble) -> Iterator[AcmeStack]:
    add_records("".join(f"{name}. 300 IN A {ADDRESS}\n" for name in NAMES))
    settings = {
        "TLS_FLAVOR": "letsencrypt",
        "HOSTNAMES": ",".join((*NAMES, LATE)),
        "ACME_SERVER": pebble.url,
        "LETSENCRYPT_SHORTCHAIN": "true",
    }
    stack = AcmeStack("acme", ADDRESS, settings=settings)
    stack.ca_bundle = str(pebble.ca)
    stack.system_cas = str(pebble.root_file)
    with running(stack) as started:
        yield started


def served(port: int, name: str, cafile: Path | None = None) -> x509.Certificate:
    """The certificate served on ``port`` to a client asking for ``name``; with ``cafile``
    the connection fails unless it is valid for ``name`` under that CA."""
    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    if cafile is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((ADDRESS, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def issuer(certificate: x509.Certificate) -> str:
    return certificate.issuer.rfc4514_string()


def wait_served(
    stack: Stack, check: Callable[[x509.Certificate], bool], what: str, timeout: float = 60
) -> dict[int, x509.Certificate]:
    """Poll 443, 465 and 993 until ``check`` holds for the certificate each serves."""
    deadline = time.monotonic() + timeout
    while True:
        certificates = {port: served(port, NAMES[0]) for port in TLS_PORTS}
        if all(check(c) for c in certificates.values()):
            return certificates
        if time.monotonic() > deadline:
            shown = {port: issuer(c) for port, c in certificates.items()}
            raise AssertionError(f"not {what}: {shown}\n{stack.log_tail()}")
        time.sleep(0.5)


def dns_names(certificate: x509.Certificate) -> set[str]:
    extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return set(extension.value.get_values_for_type(x509.DNSName))


def acme_pid(stack: Stack) -> int:
    data = json.loads((stack.root / "run" / "status.json").read_text())
    return int(data["services"]["acme"]["pid"])


def test_the_self_signed_pair_serves_until_the_ca_answers(acme_stack: AcmeStack) -> None:
    """Pebble is not running yet: the first ACME run fails, TLS works all the same."""
    acme_stack.wait_for_log(r"acme.*no certificate: ", timeout=60)
    for port in TLS_PORTS:
        certificate = served(port, NAMES[0])
        assert certificate.issuer == certificate.subject, port
    status = acme_stack.roost("status").stdout
    assert "certificate: self-signed until the ACME server issues one" in status
    assert "certificate: the last ACME run got none:" in status


def test_names_that_validate_get_a_certificate_without_the_one_that_fails(
    acme_stack: AcmeStack, pebble: Pebble
) -> None:
    pebble.start()
    root = pebble.root()
    os.kill(acme_pid(acme_stack), signal.SIGHUP)
    wait_served(acme_stack, lambda c: "Pebble" in issuer(c), "issued by Pebble")
    for port in TLS_PORTS:
        for name in NAMES:
            # a client that checks the certificate against Pebble's root accepts it
            assert dns_names(served(port, name, cafile=root)) == set(NAMES)
    status = acme_stack.roost("status").stdout
    assert "certificate: from the ACME server, for mx.acme.test, web.acme.test" in status
    assert f"certificate: {LATE} left out: http://{LATE}/" in status
    assert "self-signed" not in status
    acme_stack.wait_for_log(rf"acme.*HTTP-01 self-check of {LATE} failed")
    acme_stack.wait_for_log(r"new certificate in .*: reloaded dovecot, postfix, nginx")


def served_chain(port: int) -> list[x509.Certificate]:
    """The whole chain a server sends on ``port`` (STARTTLS on 25), as openssl shows it."""
    argv = ["openssl", "s_client", "-connect", f"{ADDRESS}:{port}", "-servername", NAMES[0]]
    argv += ["-showcerts", *(["-starttls", "smtp"] if port == 25 else [])]
    result = subprocess.run(argv, input="", capture_output=True, text=True, timeout=30, check=False)
    blocks = re.findall(
        r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", result.stdout, re.S
    )
    assert blocks, result.stdout + result.stderr
    return [x509.load_pem_x509_certificate(block.encode()) for block in blocks]


def test_port_25_sends_the_root_for_dane_and_the_others_the_short_chain(
    acme_stack: AcmeStack, pebble: Pebble
) -> None:
    """DANE-TA(2) records name the root's key, so port 25 must send the root itself;
    LETSENCRYPT_SHORTCHAIN=true leaves it out everywhere else."""
    root = x509.load_pem_x509_certificate(pebble.root_file.read_bytes())
    mx = served_chain(25)
    assert [c.subject for c in mx][1:] == [mx[0].issuer, root.subject], mx
    assert mx[-1] == root and dns_names(mx[0]) >= set(NAMES)
    for port in (443, 465):
        assert served_chain(port) == mx[:-1], port


def test_the_full_set_is_issued_once_every_name_validates(acme_stack: AcmeStack) -> None:
    add_records(f"{LATE}. 300 IN A {ADDRESS}\n")
    result = acme_stack.roost("certificate", "renew", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    new = [line for line in result.stdout.splitlines() if line.startswith("new certificate for")]
    assert len(new) == 1 and all(name in new[0] for name in (*NAMES, LATE)), result.stdout
    wait_served(acme_stack, lambda c: LATE in dns_names(c), f"valid for {LATE}")
    status = acme_stack.roost("status").stdout
    assert "left out" not in status, status


def test_a_forced_renewal_is_served_and_an_open_imap_session_goes_on(
    acme_stack: AcmeStack,
) -> None:
    user = acme_stack.add_user("renewal", "renewal-pw-1")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    session = imaplib.IMAP4_SSL(ADDRESS, 993, ssl_context=context, timeout=30)
    session.login(user, "renewal-pw-1")
    session.select("INBOX")
    before = {port: served(port, NAMES[0]) for port in TLS_PORTS}
    result = acme_stack.roost("certificate", "renew", "--force", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "new certificate for" in result.stdout
    old = {c.serial_number for c in before.values()}
    wait_served(acme_stack, lambda c: c.serial_number not in old, "renewed")
    # The session opened before the reload is still served.
    assert session.noop()[0] == "OK"
    assert session.select("INBOX")[0] == "OK"
    session.logout()
