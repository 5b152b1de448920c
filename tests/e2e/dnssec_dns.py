"""A DNSSEC-signed zone for end-to-end tests, served by an authoritative Unbound.

The tests' dnslib server (tests/e2e/local_dns.py) signs nothing, and DANE needs answers a
validating resolver can prove. This helper writes a zone, signs it with ldnsutils
(``ldns-keygen``, ``ldns-signzone``: ECDSA P-256, NSEC denial) and serves it with Unbound's
``auth-zone`` on a loopback address of the tests' own, which answers with the RRSIG and
NSEC records a validator needs. :meth:`SignedZone.resolver_override` is what Roost's own
Unbound then needs to reach it and trust it (a stub zone and the zone's DS as trust anchor),
written as an override the way a user would.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.e2e.local_dns import DNS_ADDRESS
from tests.e2e.stack import wait_for_port

__all__ = ["SignedZone", "tlsa_3_1_1"]


def tlsa_3_1_1(certificate_pem: bytes) -> str:
    """The TLSA data ``3 1 1 <hex>`` (DANE-EE, SPKI, SHA-256; RFC 7671 section 5.1)."""
    cert = x509.load_pem_x509_certificate(certificate_pem)
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return f"3 1 1 {hashlib.sha256(spki).hexdigest()}"


def _run(*argv: str, cwd: Path) -> str:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr or result.stdout}")
    return result.stdout.strip()


class SignedZone:
    """One signed zone (``origin``, e.g. ``tls.test.``) served on ``address``:53.

    ``records`` are master-file lines relative to the origin or absolute; the helper adds
    the SOA, the NS and the name server's address.
    """

    def __init__(self, origin: str, address: str, records: str) -> None:
        self.origin = origin if origin.endswith(".") else origin + "."
        self.address = address
        self.records = records
        self.directory = Path(tempfile.mkdtemp(prefix="roost-dnssec-"))
        self.ds = ""

    def zone_text(self) -> str:
        """The unsigned zone, also what dnslib can serve to resolvers that do not validate."""
        return (
            f"$ORIGIN {self.origin}\n$TTL 60\n"
            f"@ IN SOA ns.{self.origin} hostmaster.{self.origin} 1 3600 600 86400 60\n"
            f"@ IN NS ns.{self.origin}\n"
            f"ns IN A {self.address}\n"
            f"{self.records}\n"
        )

    def sign(self) -> Path:
        """Write and sign the zone; keep the key-signing key's DS as the trust anchor."""
        unsigned = self.directory / "zone"
        unsigned.write_text(self.zone_text())
        origin = self.origin.rstrip(".")
        ksk = _run("ldns-keygen", "-a", "ECDSAP256SHA256", "-k", origin, cwd=self.directory)
        zsk = _run("ldns-keygen", "-a", "ECDSAP256SHA256", origin, cwd=self.directory)
        _run("ldns-signzone", "-o", self.origin, str(unsigned), ksk, zsk, cwd=self.directory)
        self.ds = " ".join((self.directory / f"{ksk}.ds").read_text().split())
        return self.directory / "zone.signed"

    def server_config(self, signed: Path) -> str:
        return (
            "server:\n"
            f"    interface: {self.address}@53\n"
            '    username: ""\n    chroot: ""\n    pidfile: ""\n'
            f'    directory: "{self.directory}"\n'
            '    use-syslog: no\n    logfile: ""\n    verbosity: 1\n'
            "    access-control: 127.0.0.0/8 allow\n"
            '    local-zone: "test." nodefault\n'
            "auth-zone:\n"
            f'    name: "{self.origin}"\n'
            f'    zonefile: "{signed}"\n'
            "    for-downstream: yes\n    for-upstream: no\n"
            "remote-control:\n    control-enable: no\n"
        )

    @contextmanager
    def serving(self) -> Iterator[SignedZone]:
        """Sign the zone and serve it until the block ends."""
        config = self.directory / "auth.conf"
        config.write_text(self.server_config(self.sign()))
        log = (self.directory / "auth.log").open("wb")
        process = subprocess.Popen(
            ["unbound", "-d", "-p", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        try:
            wait_for_port(self.address, 53, timeout=20)
            yield self
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
            shutil.rmtree(self.directory, ignore_errors=True)

    def resolver_override(self) -> str:
        """``overrides/unbound/*.conf`` for a stack whose Unbound must resolve the test world.

        Unbound refuses to ask loopback servers and answers nothing under ``test.``
        (RFC 6761) by default. The signed zone is trusted through its DS; the rest of
        ``test.`` is the dnslib server's, unsigned. Every other name is forwarded there
        too, so the stack's resolver never sends a query off the host.
        """
        return (
            "server:\n"
            "    do-not-query-localhost: no\n"
            '    local-zone: "test." nodefault\n'
            '    domain-insecure: "test."\n'
            f'    trust-anchor: "{self.ds}"\n'
            "stub-zone:\n"
            f'    name: "{self.origin}"\n'
            f"    stub-addr: {self.address}\n"
            "forward-zone:\n"
            '    name: "."\n'
            f"    forward-addr: {DNS_ADDRESS}\n"
        )
