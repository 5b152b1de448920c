"""The outside world's DNS for end-to-end tests, served on a loopback address.

The tests run in a mount namespace of their own in which /etc/resolv.conf names this server,
so Postfix's DNS checks (the sender domain exists, the MX of a remote domain) work offline
and never reach a real resolver. Names not in the zone are NXDOMAIN at once.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import tempfile
from pathlib import Path

from dnslib import QTYPE, RCODE, RR, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from tests.e2e.stack import e2e_address

DNS_ADDRESS = e2e_address(53)
CLONE_NEWNS = 0x00020000

ZONE = f"""
sender.test.        300 IN MX 10 mx.sender.test.
mx.sender.test.     300 IN A  {e2e_address(92)}
outside.test.       300 IN A  {e2e_address(93)}
remote.test.        300 IN MX 10 mx.remote.test.
mx.remote.test.     300 IN A  {e2e_address(91)}
example.test.       300 IN MX 10 mail.example.test.
mail.example.test.  300 IN A  {e2e_address(2)}
"""


#: Records a test publishes while it runs (:func:`add_records`), answered beside ZONE.
ADDED: list[RR] = []


def add_records(zone: str) -> None:
    """Serve these master-file lines too from now on (say, the DKIM key a test made).

    Shared by every test in the session: add names of your own, never ZONE's."""
    ADDED.extend(RR.fromZone(zone))


class ZoneResolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, zone: str) -> None:
        self.records = RR.fromZone(zone)

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        reply = request.reply()
        question = request.q
        known = False
        for record in [*self.records, *ADDED]:
            if record.rname == question.qname:
                known = True
                if question.qtype in (record.rtype, QTYPE.ANY):
                    reply.add_answer(record)
        if not known:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


def start_dns(zone: str = ZONE) -> list[DNSServer]:
    resolver = ZoneResolver(zone)
    quiet = DNSLogger(log="-request,-reply,-truncated,-data", prefix=False)
    servers = [
        DNSServer(resolver, address=DNS_ADDRESS, port=53, tcp=tcp, logger=quiet)
        for tcp in (False, True)
    ]
    for server in servers:
        server.start_thread()
    return servers


def private_resolv_conf() -> bool:
    """Enter a mount namespace of our own whose /etc/resolv.conf names the test DNS.

    Must run while the test process is still single-threaded (unshare refuses otherwise);
    every daemon the tests start inherits the namespace. Returns False when not root.
    """
    if os.geteuid() != 0:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) failed")
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    conf = Path(tempfile.mkdtemp(prefix="roost-dns-")) / "resolv.conf"
    conf.write_text(f"nameserver {DNS_ADDRESS}\noptions timeout:1 attempts:1\n")
    conf.chmod(0o644)
    conf.parent.chmod(0o755)
    subprocess.run(["mount", "--bind", str(conf), "/etc/resolv.conf"], check=True)
    return True
