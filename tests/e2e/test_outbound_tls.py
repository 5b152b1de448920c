"""Outbound transport security: DANE, MTA-STS and the override map, against real peers.

One stack with Roost's own Unbound (DNS_RESOLVER=unbound), which resolves the signed test
zone ``tls.test`` (tests/e2e/dnssec_dns.py) and trusts it by its DS. The remote MX hosts
are aiosmtpd servers with STARTTLS on loopback addresses of their own; the MTA-STS policies
come from an HTTPS server with a certificate of the tests' CA, which the MTA-STS resolver
(SSL_CERT_FILE) and Postfix (``smtp_tls_CAfile``, an override) trust. The domains:

* ``dane.tls.test``: a TLSA 3 1 1 record that matches its MX host's key, and an
  MTA-STS policy in enforce mode naming another MX: delivered, because DANE wins.
* ``dane-wrong.tls.test``: a TLSA record that does not match: deferred, kept in the queue.
* ``sts.tls.test``: MTA-STS enforce, the MX host's certificate matches: delivered.
* ``sts-wrong.tls.test``: MTA-STS enforce, the certificate names another host: deferred.
* ``override.tls.test``: a TLSA record that does not match, but tls_policy.map says
  ``may``: delivered.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.conftest import require_root
from tests.e2e.dnssec_dns import SignedZone, tlsa_3_1_1
from tests.e2e.local_dns import add_records
from tests.e2e.stack import Stack, e2e_address, make_base, running

pytestmark = pytest.mark.e2e

STACK_ADDRESS = e2e_address(110)
ZONE_SERVER = e2e_address(111)
#: The MX host whose certificate every matching record and policy names.
GOOD_PEER = e2e_address(112)
#: An MX host whose certificate names some other host.
OTHER_PEER = e2e_address(113)
POLICY_SERVER = e2e_address(116)
CLIENT = "127.80.110.1"
PASSWORD = "outbound-pw-1"


# -- the tests' own CA ----------------------------------------------------------------------
@dataclass
class Issued:
    cert: Path
    key: Path


@dataclass
class LocalCA:
    directory: Path
    key: ec.EllipticCurvePrivateKey = field(init=False)
    cert: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Roost outbound test CA")])
        self.cert = (
            self._builder(name, self.key.public_key())
            .issuer_name(name)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.file.chmod(0o644)

    @property
    def file(self) -> Path:
        return self.directory / "ca.pem"

    @staticmethod
    def _builder(subject: x509.Name, key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .public_key(key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
        )

    def issue(self, name: str, *names: str) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            self._builder(subject, key.public_key())
            .issuer_name(self.cert.subject)
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in (name, *names)]),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        issued = Issued(self.directory / f"{name}.pem", self.directory / f"{name}.key")
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issued.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return issued


# -- the remote world -----------------------------------------------------------------------
class Peer:
    """A remote MX host: keeps the recipients of every message it accepts."""

    def __init__(self) -> None:
        self.recipients: list[str] = []

    async def handle_DATA(self, server: object, session: Session, envelope: Envelope) -> str:
        self.recipients.extend(envelope.rcpt_tos)
        return "250 OK"


def start_peer(address: str, issued: Issued) -> tuple[Peer, Controller]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(issued.cert, issued.key)
    peer = Peer()
    controller = Controller(peer, hostname=address, port=25, tls_context=context)
    controller.start()
    return peer, controller


def policy(mx: str) -> str:
    """An MTA-STS policy in enforce mode (RFC 8461 section 3.2)."""
    return f"version: STSv1\r\nmode: enforce\r\nmx: {mx}\r\nmax_age: 86400\r\n"


#: Each domain's MTA-STS policy, served at https://mta-sts.<domain>/.well-known/mta-sts.txt.
POLICIES = {
    # Would fail if Postfix used it: DANE must win (RFC 8461 section 2).
    "dane.tls.test": policy("nowhere.tls.test"),
    "sts.tls.test": policy("mx.sts.tls.test"),
    "sts-wrong.tls.test": policy("mx.sts-wrong.tls.test"),
    "override.tls.test": policy("nowhere.tls.test"),
}


class PolicyHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").split(":")[0].removeprefix("mta-sts.")
        text = POLICIES.get(host)
        if text is None or self.path != "/.well-known/mta-sts.txt":
            self.send_error(404)
            return
        body = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def zone_records(good: Issued, other: Issued) -> str:
    good_tlsa = tlsa_3_1_1(good.cert.read_bytes())
    other_tlsa = tlsa_3_1_1(other.cert.read_bytes())
    lines = []
    for domain, peer, tlsa in (
        ("dane", GOOD_PEER, good_tlsa),
        ("dane-wrong", GOOD_PEER, other_tlsa),
        ("sts", GOOD_PEER, None),
        ("sts-wrong", OTHER_PEER, None),
        ("override", GOOD_PEER, other_tlsa),
    ):
        lines += [f"{domain} IN MX 10 mx.{domain}", f"mx.{domain} IN A {peer}"]
        if tlsa:
            lines.append(f"_25._tcp.mx.{domain} IN TLSA {tlsa}")
    for full in POLICIES:
        domain = full.removesuffix(".tls.test")
        lines += [
            f'_mta-sts.{domain} IN TXT "v=STSv1; id=1"',
            f"mta-sts.{domain} IN A {POLICY_SERVER}",
        ]
    return "\n".join(lines)


@dataclass
class World:
    stack: Stack
    user: str
    good: Peer
    other: Peer


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    require_root()
    pki = make_base() / "outbound-pki"
    pki.mkdir(exist_ok=True)
    pki.chmod(0o755)
    ca = LocalCA(pki)
    # The good MX host's certificate fits DANE (its key) and MTA-STS (its name).
    good = ca.issue("mx.sts.tls.test")
    other = ca.issue("other.tls.test")
    https = ca.issue(*(f"mta-sts.{domain}" for domain in POLICIES))
    zone = SignedZone("tls.test", ZONE_SERVER, zone_records(good, other))
    # The MTA-STS resolver uses the host's resolver, the tests' dnslib server: it serves
    # the same names, unsigned.
    add_records(zone.zone_text())

    server = ThreadingHTTPServer((POLICY_SERVER, 443), PolicyHandler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(https.cert, https.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    good_peer, good_controller = start_peer(GOOD_PEER, good)
    other_peer, other_controller = start_peer(OTHER_PEER, other)
    try:
        with zone.serving():
            stack = Stack(
                "outbound",
                STACK_ADDRESS,
                settings={"DNS_RESOLVER": "unbound"},
                files={
                    "overrides/unbound/test-world.conf": zone.resolver_override(),
                    # The remote hosts' certificates come from the tests' CA.
                    "overrides/postfix/postfix.cf": f"smtp_tls_CAfile = {ca.file}\n",
                    "overrides/postfix/tls_policy.map": "override.tls.test may\n",
                },
                environment={"SSL_CERT_FILE": str(ca.file)},
            )
            with running(stack):
                user = stack.add_user("outbound", PASSWORD)
                yield World(stack, user, good_peer, other_peer)
    finally:
        good_controller.stop()
        other_controller.stop()
        server.shutdown()


def send(world: World, domain: str) -> str:
    """Submit a message to ``rcpt@domain``; its recipient address, unique to the test."""
    rcpt = f"rcpt-{uuid.uuid4().hex[:8]}@{domain}"
    message = EmailMessage()
    message["From"] = world.user
    message["To"] = rcpt
    message["Subject"] = f"outbound TLS to {domain}"
    message.set_content("Hello over a checked channel.\n")
    with world.stack.submission(source=CLIENT) as client:
        client.login(world.user, PASSWORD)
        client.send_message(message, world.user, [rcpt])
    return rcpt


def delivered(peer: Peer, rcpt: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while rcpt not in peer.recipients:
        if time.monotonic() > deadline:
            raise AssertionError(f"{rcpt} was not delivered")
        time.sleep(0.2)


def queued(stack: Stack, rcpt: str) -> dict[str, object]:
    """The queue's entry for ``rcpt`` once Postfix has tried it and kept it, with the reason."""
    deadline = time.monotonic() + 30
    while True:
        listing = subprocess.run(
            ["postqueue", "-c", str(stack.root / "etc" / "postfix"), "-j"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in listing.splitlines():
            entry = json.loads(line)
            for recipient in entry["recipients"]:
                if recipient["address"] == rcpt and recipient.get("delay_reason"):
                    return {"queue_name": entry["queue_name"], **recipient}
        if time.monotonic() > deadline:
            raise AssertionError(f"{rcpt} was not deferred:\n{stack.log_tail()}")
        time.sleep(0.3)


def test_dane_delivers_when_the_tlsa_record_matches_and_wins_over_mta_sts(world: World) -> None:
    rcpt = send(world, "dane.tls.test")
    delivered(world.good, rcpt)
    world.stack.wait_for_log(r"Verified TLS connection established to mx\.dane\.tls\.test")


def test_dane_defers_when_the_certificate_does_not_match(world: World) -> None:
    rcpt = send(world, "dane-wrong.tls.test")
    entry = queued(world.stack, rcpt)
    assert entry["queue_name"] == "deferred"
    assert "Server certificate not verified" in str(entry["delay_reason"])
    assert rcpt not in world.good.recipients


def test_mta_sts_enforce_delivers_to_a_host_its_policy_names(world: World) -> None:
    rcpt = send(world, "sts.tls.test")
    delivered(world.good, rcpt)
    world.stack.wait_for_log(r"Verified TLS connection established to mx\.sts\.tls\.test")


def test_mta_sts_enforce_defers_when_the_certificate_names_another_host(world: World) -> None:
    rcpt = send(world, "sts-wrong.tls.test")
    entry = queued(world.stack, rcpt)
    assert entry["queue_name"] == "deferred"
    assert "Server certificate not verified" in str(entry["delay_reason"])
    assert rcpt not in world.other.recipients


def test_the_override_map_wins_over_dane_and_mta_sts(world: World) -> None:
    rcpt = send(world, "override.tls.test")
    delivered(world.good, rcpt)
    # "may": encrypted, but the certificate is not held against any record or policy.
    world.stack.wait_for_log(r"(Trusted|Untrusted) TLS connection established to mx\.override")


def service_pid(stack: Stack, service: str) -> int | None:
    data = json.loads((stack.root / "run" / "status.json").read_text())
    entry = data["services"].get(service, {})
    return int(entry["pid"]) if entry.get("state") == "running" and entry.get("pid") else None


def test_killed_resolvers_are_restarted_and_checks_go_on(world: World) -> None:
    """Last: it kills Unbound and the MTA-STS resolver; the runner brings both back."""
    for service in ("unbound", "mtasts"):
        pid = service_pid(world.stack, service)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while service_pid(world.stack, service) in (None, pid):
            assert time.monotonic() < deadline, f"{service} was not restarted"
            time.sleep(0.2)
    dane = send(world, "dane.tls.test")
    sts = send(world, "sts.tls.test")
    delivered(world.good, dane)
    delivered(world.good, sts)
