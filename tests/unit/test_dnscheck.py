"""Live DNS checks (roost.dnscheck) against a local DNS server that serves some records right,
some wrong and some not at all; and `roost dns --check` against the same server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import QTYPE, RCODE, RR, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from roost import dnscheck
from roost.core.dane import ISRG_ROOTS
from roost.core.dnsrecords import records
from roost.dnscheck import LIVE, MISSING, UNKNOWN, WRONG, ResolverAddress, parse_resolver
from roost.settings import Settings, load_settings
from tests.unit.test_cli_support import make_stack

#: Served for example.com: right MX and SPF, a wrong DMARC (p=none), the SRV records of
#: the default PORTS except a wrong port for imaps and none for pop3s, autoconfig right,
#: autodiscover pointing elsewhere, the DKIM key cut in two strings. alt.example: MX with
#: the wrong preference, no DKIM record. The host: ISRG Root X1's TLSA record only.
ZONE = """
dkim._domainkey.example.com. 600 IN TXT "v=DKIM1; k=rsa; " "p=MIIBIjANBgkqhkiG9w0BAQEFAAOC"
example.com. 600 IN MX 10 mail.example.com.
example.com. 600 IN MX 20 backup.example.net.
example.com. 600 IN TXT "v=spf1 mx a:mail.example.com ~all"
example.com. 600 IN TXT "google-site-verification=abc"
_dmarc.example.com. 600 IN TXT "v=DMARC1; p=none"
_imap._tcp.example.com. 600 IN SRV 0 0 0 .
_pop3._tcp.example.com. 600 IN SRV 0 0 0 .
_submission._tcp.example.com. 600 IN SRV 0 0 0 .
_autodiscover._tcp.example.com. 600 IN SRV 10 1 443 MAIL.example.com.
_submissions._tcp.example.com. 600 IN SRV 5 7 465 mail.example.com.
_imaps._tcp.example.com. 600 IN SRV 10 1 143 mail.example.com.
autoconfig.example.com. 600 IN CNAME mail.example.com.
autodiscover.example.com. 600 IN CNAME other.example.net.
alt.example. 600 IN MX 5 mail.example.com.
alt.example. 600 IN TXT "v=spf1 mx " "a:mail.example.com ~all"
""" + (f"_25._tcp.mail.example.com. 86400 IN TLSA 2 1 1 {ISRG_ROOTS['ISRG Root X1'].upper()}\n")

#: Names the server answers with SERVFAIL, and names it answers only too late.
FAILING = {"_dmarc.alt.example."}
SLOW = {"_pop3s._tcp.example.com."}


class Resolver(BaseResolver):
    """Authoritative answers from ZONE: NXDOMAIN for unknown names, NODATA for other types."""

    def __init__(self) -> None:
        self.zone = list(RR.fromZone(ZONE))
        self.asked: list[tuple[str, str]] = []

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        qname, qtype = str(request.q.qname).lower(), QTYPE[request.q.qtype]
        self.asked.append((qname, qtype))
        reply = request.reply()
        if qname in FAILING:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        if qname in SLOW:
            time.sleep(1.5)
        named = [rr for rr in self.zone if str(rr.rname).lower() == qname]
        if not named:
            reply.header.rcode = RCODE.NXDOMAIN
        for rr in named:
            if QTYPE[rr.rtype] in (qtype, "CNAME"):
                reply.add_answer(rr)
        return reply


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[ResolverAddress, Resolver]]:
    resolver = Resolver()
    host = "127.0.23.53"
    try:
        dns_server = DNSServer(resolver, address=host, port=0, logger=DNSLogger("-request,-reply"))
    except OSError:  # a loopback alias outside 127.0.0.1 is not usable here
        host = "127.0.0.1"
        dns_server = DNSServer(resolver, address=host, port=0, logger=DNSLogger("-request,-reply"))
    dns_server.start_thread()
    try:
        yield ResolverAddress(host, dns_server.server.server_address[1]), resolver
    finally:
        dns_server.stop()
        dns_server.server.server_close()


#: The DKIM public key of example.com (a stand-in: the check compares the text only).
PUBLIC = "MIIBIjANBgkqhkiG9w0BAQEFAAOC"


def settings() -> Settings:
    return load_settings(
        env_file=None, environ={"DOMAIN": "example.com", "HOSTNAMES": "mail.example.com"}
    )


def states(server: ResolverAddress, **kwargs: float) -> dict[str, tuple[str, str]]:
    """(state, reason or found) by "name type" for example.com with alternative alt.example."""
    checks = dnscheck.check_records(
        records(settings(), "example.com", ["alt.example"], dkim=PUBLIC), server, **kwargs
    )
    return {
        f"{c.record.name} {c.record.rtype}": (c.state, c.reason or " | ".join(c.found))
        for c in checks
    }


def test_each_record_is_live_wrong_missing_or_unknown(
    server: tuple[ResolverAddress, Resolver],
) -> None:
    address, _ = server
    got = states(address, query_timeout=0.5, total_timeout=3.0)
    assert {key: state for key, (state, _) in got.items()} == {
        "example.com. MX": LIVE,  # one of two MX answers matches
        "example.com. TXT": LIVE,  # the SPF text among other TXT records
        "dkim._domainkey.example.com. TXT": LIVE,  # character-strings joined
        "_dmarc.example.com. TXT": WRONG,
        "_imap._tcp.example.com. SRV": LIVE,  # "0 0 0 ." as published
        "_pop3._tcp.example.com. SRV": LIVE,
        "_submission._tcp.example.com. SRV": LIVE,
        "_autodiscover._tcp.example.com. SRV": LIVE,  # names compare without case
        "_submissions._tcp.example.com. SRV": LIVE,  # target and port count, not weights
        "_imaps._tcp.example.com. SRV": WRONG,  # port 143 instead of 993
        "_pop3s._tcp.example.com. SRV": UNKNOWN,  # answered after the timeout
        "autoconfig.example.com. CNAME": LIVE,
        "autodiscover.example.com. CNAME": WRONG,
        "alt.example. MX": WRONG,  # preference 5, not 10
        "alt.example. TXT": LIVE,  # character-strings joined (RFC 7208 §3.3)
        "dkim._domainkey.alt.example. TXT": MISSING,
        "_dmarc.alt.example. TXT": UNKNOWN,  # SERVFAIL
    }
    assert got["_dmarc.example.com. TXT"] == (WRONG, '"v=DMARC1; p=none"')
    assert got["_imaps._tcp.example.com. SRV"] == (WRONG, "10 1 143 mail.example.com.")
    assert got["autodiscover.example.com. CNAME"][1] == "other.example.net."
    assert "in time" in got["_pop3s._tcp.example.com. SRV"][1]
    assert got["_dmarc.alt.example. TXT"][1].startswith("no server answered")


def test_tlsa_records_compare_fields_and_data(server: tuple[ResolverAddress, Resolver]) -> None:
    """ISRG Root X1's record is served (its hex in upper case), X2's is not."""
    address, _ = server
    environ = {"DOMAIN": "example.com", "HOSTNAMES": "mail.example.com"}
    s = load_settings(env_file=None, environ=environ | {"TLS_FLAVOR": "letsencrypt"})
    tlsa = [r for r in records(s, "example.com") if r.rtype == "TLSA"]
    checks = dnscheck.check_records(tlsa, address)
    assert [c.state for c in checks] == [LIVE, WRONG]
    assert checks[1].found == (
        "2 1 1 0b9fa5a59eed715c26c1020c711b4f6ec42d58b0015e14337a39dad301c5afc3",
    )


def test_missing_names_and_types(server: tuple[ResolverAddress, Resolver]) -> None:
    address, _ = server
    checks = dnscheck.check_records(records(settings(), "nothing.example"), address)
    assert {c.state for c in checks} == {MISSING}
    assert checks[0].reason == "no such name"
    # A name that exists with other types only: NODATA.
    mx_only = [r for r in records(settings(), "alt.example") if r.rtype == "MX"]
    cname = [r for r in records(settings(), "example.com") if r.rtype == "CNAME"]
    srv_at_mx_name = [r.__class__(r.name, "SRV", (0, 0, 0, "."), "x", "x") for r in mx_only]
    assert dnscheck.check_records(srv_at_mx_name, address)[0].reason == "no SRV record"
    assert dnscheck.check_records(cname, address)[0].state == LIVE


def test_each_name_and_type_is_asked_once(server: tuple[ResolverAddress, Resolver]) -> None:
    address, resolver = server
    resolver.asked.clear()
    record = records(settings(), "example.com")[0]
    dnscheck.check_records([record, record, record], address)
    assert resolver.asked == [("example.com.", "MX")]


def test_the_whole_check_is_bounded_by_its_deadline(
    server: tuple[ResolverAddress, Resolver],
) -> None:
    address, _ = server
    slow = [r for r in records(settings(), "example.com") if r.name in SLOW]
    started = time.monotonic()
    checks = dnscheck.check_records(slow, address, query_timeout=5.0, total_timeout=0.3)
    assert time.monotonic() - started < 1.0
    assert (checks[0].state, checks[0].reason) == (UNKNOWN, "no answer before the deadline")


def test_a_silent_or_refusing_resolver_is_unknown_never_an_exception() -> None:
    # A UDP port that is bound but never answers: every query times out.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        address = ResolverAddress("127.0.0.1", silent.getsockname()[1])
        started = time.monotonic()
        checks = dnscheck.check_records(
            records(settings(), "example.com"), address, query_timeout=0.3, total_timeout=2.0
        )
        assert time.monotonic() - started < 2.5
    assert {c.state for c in checks} == {UNKNOWN}
    assert all(c.reason for c in checks)


def test_a_lookup_that_breaks_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(dnscheck, "_lookup", broken)
    address = ResolverAddress("127.0.0.1", 9)
    checks = dnscheck.check_records(records(settings(), "example.com")[:1], address)
    assert (checks[0].state, checks[0].reason) == (UNKNOWN, "lookup failed: RuntimeError")


def test_parse_resolver() -> None:
    assert parse_resolver("127.0.0.1") == ResolverAddress("127.0.0.1", 53)
    assert parse_resolver("127.0.23.53:5353") == ResolverAddress("127.0.23.53", 5353)
    assert parse_resolver("::1") == ResolverAddress("::1", 53)
    assert parse_resolver("[::1]:5353") == ResolverAddress("::1", 5353)
    for bad in ("dns.example", "1.2.3.4:0", "1.2.3.4:x", "[::1", "[::1]x", "1.2.3.4:70000"):
        with pytest.raises(ValueError, match="resolver"):
            parse_resolver(bad)


def test_cli_check_shows_each_state_and_fails_unless_all_live(
    tmp_path: Path, server: tuple[ResolverAddress, Resolver]
) -> None:
    address, _ = server
    stack = make_stack(tmp_path)
    stack.roost("domain", "example.com")
    stack.roost("alternative", "add", "alt.example", "example.com")
    result = stack.roost(
        "dns", "example.com", "--check", "--resolver", f"{address.host}:{address.port}"
    )
    assert result.exit_code == 1, result.output
    out = result.output.splitlines()
    assert "live     example.com. 600 IN MX 10 mail.example.com." in out
    at = out.index("wrong    _imaps._tcp.example.com. 600 IN SRV 10 1 993 mail.example.com.")
    assert out[at + 1] == "         found: 10 1 143 mail.example.com."
    at = out.index("wrong    alt.example. 600 IN MX 10 mail.example.com.")
    assert out[at + 1].startswith("         found: 5 ")
    # No DKIM key yet, so no DMARC record is suggested (or checked).
    assert not any("_dmarc" in line for line in out)


def test_cli_check_all_live_exits_zero(tmp_path: Path) -> None:
    """A server that serves exactly the zone file `roost dns --zone` prints."""
    stack = make_stack(tmp_path)
    stack.roost("domain", "example.org")
    zone = stack.roost("dns", "example.org", "--zone").output

    class Exact(BaseResolver):
        def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
            reply = request.reply()
            for rr in RR.fromZone(zone):
                if rr.rname == request.q.qname and rr.rtype == request.q.qtype:
                    reply.add_answer(rr)
            return reply

    exact = DNSServer(Exact(), address="127.0.0.1", port=0, logger=DNSLogger("-request,-reply"))
    exact.start_thread()
    try:
        port = exact.server.server_address[1]
        result = stack.roost("dns", "example.org", "--check", "--resolver", f"127.0.0.1:{port}")
    finally:
        exact.stop()
        exact.server.server_close()
    assert result.exit_code == 0, result.output
    assert all(line.startswith(("live ", "Left out:")) for line in result.output.splitlines())


def test_cli_check_refuses_a_bad_resolver(tmp_path: Path) -> None:
    stack = make_stack(tmp_path)
    stack.roost("domain", "example.org")
    result = stack.roost("dns", "example.org", "--check", "--resolver", "dns.example")
    assert result.exit_code == 2
    assert "not an IP address" in result.stderr


def test_no_thread_is_left_behind(server: tuple[ResolverAddress, Resolver]) -> None:
    address, _ = server
    before = threading.active_count()
    dnscheck.check_records(records(settings(), "example.com"), address, query_timeout=0.3)
    time.sleep(0.5)
    assert threading.active_count() <= before + 1
