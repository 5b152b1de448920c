"""Every TLS port passes testssl.sh: TLS 1.2 and 1.3 only, no weak or obsolete ciphers.

testssl.sh (Debian's package) connects to each port of the shared stack the way a client
would, with STARTTLS where the port speaks it, and lists the protocols and cipher
categories it offers. Port 25 under TLS_PERMISSIVE (the default) deliberately accepts old
protocols and ciphers, because a sender that cannot do better would otherwise send in
plain text (RFC 7435 section 4): there only the modern protocols are required to be there.
"""

from __future__ import annotations

import json
import socket
import socketserver
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.stack import Stack

#: port -> testssl.sh's --starttls protocol ("" for implicit TLS)
PORTS = {
    443: "",
    465: "",
    993: "",
    995: "",
    587: "smtp",
    143: "imap",
    110: "pop3",
    25: "smtp",
}
#: ManageSieve (4190) is audited through :class:`SieveStartTLS`: testssl.sh 3.0 knows no
#: STARTTLS for it.
SIEVE = 4190

#: testssl.sh finding ids that must say "not offered" on every strict port
OLD_PROTOCOLS = ("SSLv2", "SSLv3", "TLS1", "TLS1_1")
WEAK_CIPHERS = (
    "cipherlist_NULL",
    "cipherlist_aNULL",
    "cipherlist_EXPORT",
    "cipherlist_LOW",
    "cipherlist_3DES_IDEA",
    # CBC-mode suites (Lucky13 and its kin): Mozilla's "intermediate" profile leaves them out
    "cipherlist_AVERAGE",
)


def audit(address: str, port: int, starttls: str) -> dict[str, str]:
    """testssl.sh's findings for one port: finding id -> its text."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        command = [
            "testssl",
            "--quiet",
            "--color",
            "0",
            "--warnings",
            "off",
            "--nodns",
            "none",
            "--protocols",
            "--std",
            "--jsonfile",
            str(report),
        ]
        if starttls:
            command += ["--starttls", starttls]
        command.append(f"{address}:{port}")
        done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
        if not report.exists():
            raise AssertionError(f"testssl.sh wrote no report for {port}:\n{done.stdout}")
        findings = json.loads(report.read_text())
    return {item["id"]: item["finding"] for item in findings}


class SieveStartTLS(socketserver.ThreadingTCPServer):
    """Says STARTTLS to ManageSieve (RFC 5804 section 2.2) for each connection, then relays
    bytes: testssl.sh audits the TLS behind it as if the port spoke TLS from the start."""

    daemon_threads = True

    def __init__(self, listen: str, sieve: tuple[str, int]) -> None:
        self.sieve = sieve
        super().__init__((listen, 0), _SieveRelay)


class _SieveRelay(socketserver.BaseRequestHandler):
    server: SieveStartTLS

    def handle(self) -> None:
        with socket.create_connection(self.server.sieve, timeout=30) as upstream:
            reader = upstream.makefile("rb")
            while not reader.readline().startswith(b"OK"):  # the capability greeting
                pass
            upstream.sendall(b"STARTTLS\r\n")
            if not reader.readline().startswith(b"OK"):
                return
            pump = threading.Thread(target=_copy, args=(upstream, self.request), daemon=True)
            pump.start()
            _copy(self.request, upstream)
            pump.join(timeout=30)


def _copy(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
        target.shutdown(socket.SHUT_WR)
    except OSError:
        pass


@pytest.fixture(scope="module")
def sieve_relay(stack: Stack) -> Iterator[int]:
    relay = SieveStartTLS(stack.address, (stack.address, SIEVE))
    threading.Thread(target=relay.serve_forever, daemon=True).start()
    try:
        yield relay.server_address[1]
    finally:
        relay.shutdown()
        relay.server_close()


@pytest.fixture(scope="module")
def findings(stack: Stack, sieve_relay: int) -> dict[int, dict[str, str]]:
    targets = {
        **{port: (port, starttls) for port, starttls in PORTS.items()},
        SIEVE: (sieve_relay, ""),
    }
    # testssl.sh mostly waits on the network: three at a time keep two cores busy
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = pool.map(lambda target: audit(stack.address, *target), targets.values())
        return dict(zip(targets, results, strict=True))


@pytest.mark.parametrize("port", [port for port in [*PORTS, SIEVE] if port != 25])
def test_a_port_offers_only_modern_tls(findings: dict[int, dict[str, str]], port: int) -> None:
    found = findings[port]
    assert found.get("TLS1_2") == "offered", found
    assert found.get("TLS1_3", "").startswith("offered"), found
    offered = {
        name: found.get(name)
        for name in OLD_PROTOCOLS + WEAK_CIPHERS
        if found.get(name) != "not offered"
    }
    assert offered == {}, f"port {port} offers {offered}"


def test_port_25_keeps_modern_tls_beside_the_permissive_fallback(
    findings: dict[int, dict[str, str]],
) -> None:
    found = findings[25]
    assert found.get("TLS1_2") == "offered", found
    assert found.get("TLS1_3", "").startswith("offered"), found
    # never the broken ones, even for the plain-text alternative
    assert found.get("SSLv2") == "not offered", found
    assert found.get("SSLv3") == "not offered", found
    assert found.get("cipherlist_NULL") == "not offered", found
