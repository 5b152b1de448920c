"""Outbound transport security pieces: Roost's Unbound (rendered and judged by
unbound-checkconf), the MTA-STS resolver's configuration and socket, the DNS_RESOLVER
setting, and the gate's ``dane`` map's decisions. tests/e2e/test_outbound_tls.py runs them
all against a signed zone and real peers."""

from __future__ import annotations

import asyncio
import grp
import pwd
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dnslib import RCODE, RR, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer
from test_services_postfix_support import make_settings, roost_root

from roost.gate.dane import DaneCheck, dane_applies
from roost.layout import Layout
from roost.services.base import ServiceConfigError
from roost.services.mtasts import MtaStsService
from roost.services.unbound import UnboundService
from roost.settings.parsers import SettingsError, resolver

ADDRESS = "127.0.5.53"
#: A DNS server of the tests', standing in for the validating resolver.
DNS_SERVER = "127.0.5.54"


@pytest.fixture()
def root() -> Iterator[Path]:
    with roost_root() as path:
        yield path


def layout(root: Path, **values: object) -> Layout:
    return Layout(make_settings(root, ADDRESS, **values))


# -- DNS_RESOLVER ---------------------------------------------------------------------------
def test_the_resolver_setting_takes_unbound_system_or_an_address() -> None:
    assert resolver("DNS_RESOLVER", " Unbound ") == "unbound"
    assert resolver("DNS_RESOLVER", "system") == "system"
    assert resolver("DNS_RESOLVER", "[2001:db8::53]") == "2001:db8::53"
    with pytest.raises(SettingsError, match=r"DNS_RESOLVER='8\.8\.8': accepts unbound"):
        resolver("DNS_RESOLVER", "8.8.8")


def test_the_validating_resolver_follows_the_setting(root: Path) -> None:
    assert layout(root).validating_resolver == ADDRESS  # Roost's own, on the internal address
    assert layout(root, DNS_RESOLVER="192.0.2.53").validating_resolver == "192.0.2.53"
    assert layout(root, DNS_RESOLVER="system").validating_resolver is None
    assert not UnboundService.enabled(layout(root, DNS_RESOLVER="system").settings)


# -- Unbound --------------------------------------------------------------------------------
def test_unbound_listens_on_the_internal_address_only_and_validates_from_the_root(
    root: Path,
) -> None:
    service = UnboundService(layout(root))
    service.render()  # unbound-checkconf accepted it
    text = service.conf.read_text()
    assert f"interface: {ADDRESS}@53" in text
    assert 'trust-anchor-file: "/usr/share/dns/root.key"' in text
    assert "control-enable: no" in text
    assert service.command()[-4:] == ["-d", "-p", "-c", str(service.conf)]
    assert service.readiness().tcp == ((ADDRESS, 53),)


def test_unbound_includes_the_users_files_and_names_a_broken_one(root: Path) -> None:
    overrides = root / "overrides" / "unbound"
    overrides.mkdir(parents=True)
    (overrides / "forward.conf").write_text(
        'forward-zone:\n    name: "."\n    forward-addr: 192.0.2.53\n'
    )
    service = UnboundService(layout(root))
    service.render()
    assert f'include: "{overrides / "forward.conf"}"' in service.conf.read_text()
    (overrides / "typo.conf").write_text("server:\n    no-such-option: yes\n")
    with pytest.raises(ServiceConfigError, match=r"typo\.conf"):
        service.render()


# -- the MTA-STS resolver -------------------------------------------------------------------
def test_the_mta_sts_resolver_answers_on_a_socket_only_postfix_can_open(root: Path) -> None:
    service = MtaStsService(layout(root))
    service.render()
    config = yaml.safe_load(service.conf.read_text())
    assert config["path"] == str(root / "run" / "mta-sts" / "mta-sts.sock")
    assert config["mode"] == 0o660
    assert "host" not in config and "port" not in config
    assert config["default_zone"]["strict_testing"] is True  # DEFER_ON_TLS_ERROR
    assert config["cache"]["type"] == "internal"
    directory = (root / "run" / "mta-sts").stat()
    assert directory.st_uid == pwd.getpwnam("nobody").pw_uid
    assert directory.st_gid == grp.getgrnam("postfix").gr_gid
    assert stat.S_IMODE(directory.st_mode) == 0o2750
    command = service.command()
    assert "--reuid=nobody" in command and "--no-new-privs" in command
    assert command[-2:] == ["-c", str(service.conf)]


def test_testing_policies_are_not_enforced_without_defer_on_tls_error(root: Path) -> None:
    service = MtaStsService(layout(root, DEFER_ON_TLS_ERROR=False))
    assert service.config()["default_zone"]["strict_testing"] is False


def test_mailus_override_file_replaces_the_configuration_but_not_the_socket(root: Path) -> None:
    override = root / "overrides" / "postfix" / "mta-sts-daemon.yml"
    override.parent.mkdir(parents=True)
    override.write_text("host: 0.0.0.0\nport: 8461\ndefault_zone:\n  strict_testing: false\n")
    config = MtaStsService(layout(root)).config()
    assert config["default_zone"] == {"strict_testing": False}
    assert "host" not in config and config["path"].endswith("mta-sts.sock")
    override.write_text("- a list\n")
    with pytest.raises(ServiceConfigError, match=r"mta-sts-daemon\.yml: must be a YAML mapping"):
        MtaStsService(layout(root)).config()


# -- the gate's dane map --------------------------------------------------------------------
def test_dane_wins_where_signed_tlsa_exists_or_cannot_be_ruled_out() -> None:
    assert dane_applies(signed_tlsa=True, failed=False, defer_on_error=False)
    assert dane_applies(signed_tlsa=False, failed=True, defer_on_error=True)
    assert not dane_applies(signed_tlsa=False, failed=True, defer_on_error=False)
    assert not dane_applies(signed_tlsa=False, failed=False, defer_on_error=True)


@pytest.mark.parametrize("key", [".example.com", "[192.0.2.1]:25", "[mx.example.com]", ""])
def test_the_dane_map_leaves_keys_that_are_no_mail_domain_to_the_next_map(
    root: Path, key: str
) -> None:
    # No resolver listens at 192.0.2.53: an answer here proves no lookup was made.
    check = DaneCheck(layout(root, DNS_RESOLVER="192.0.2.53").settings)
    assert asyncio.run(check.policy(key)) is None


class Zone(BaseResolver):  # type: ignore[misc]
    """A resolver for the map to ask: answers from master-file lines, with the AD bit when
    ``signed``; SERVFAIL (what a validator answers for a bogus signature) for ``bogus``."""

    def __init__(self, records: str, signed: bool = True, bogus: str = "") -> None:
        self.records = RR.fromZone(records)
        self.signed = signed
        self.bogus = bogus

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        reply = request.reply()
        reply.header.ad = int(self.signed)
        if self.bogus and str(request.q.qname).rstrip(".") == self.bogus:
            reply.header.ad = 0
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        found = [r for r in self.records if r.rname == request.q.qname]
        if not found:
            reply.header.rcode = RCODE.NXDOMAIN
        reply.add_answer(*[r for r in found if r.rtype == request.q.qtype])
        return reply


TLSA = "3 1 1 " + "0123456789abcdef" * 4
RECORDS = f"""
dane.example. 60 IN MX 10 mx.dane.example.
dane.example. 60 IN MX 20 mx2.dane.example.
_25._tcp.mx2.dane.example. 60 IN TLSA {TLSA}
plain.example. 60 IN MX 10 mx.plain.example.
mx.plain.example. 60 IN A 192.0.2.25
bare.example. 60 IN A 192.0.2.26
_25._tcp.bare.example. 60 IN TLSA {TLSA}
"""


def ask(root: Path, zone: Zone, key: str, **values: object) -> str | None:
    server = DNSServer(
        zone,
        address=DNS_SERVER,
        port=53,
        logger=DNSLogger(log="-request,-reply,-truncated,-data", prefix=False),
    )
    server.start_thread()
    try:
        check = DaneCheck(layout(root, DNS_RESOLVER=DNS_SERVER, **values).settings)
        return asyncio.run(check.policy(key))
    finally:
        server.stop()


def test_a_domain_with_a_signed_tlsa_record_at_any_mx_host_keeps_dane(root: Path) -> None:
    assert ask(root, Zone(RECORDS), "dane.example") == "dane"
    assert ask(root, Zone(RECORDS), "dane.example", OUTBOUND_TLS_LEVEL="dane-only") == "dane-only"
    # No MX: the domain is its own host (RFC 5321 section 5.1).
    assert ask(root, Zone(RECORDS), "bare.example") == "dane"
    # No TLSA record: MTA-STS may decide.
    assert ask(root, Zone(RECORDS), "plain.example") is None
    assert ask(root, Zone(RECORDS), "nowhere.example") is None


def test_unsigned_answers_never_count(root: Path) -> None:
    assert ask(root, Zone(RECORDS, signed=False), "dane.example") is None


def test_a_failed_lookup_keeps_dane_only_with_defer_on_tls_error(root: Path) -> None:
    bogus = Zone(RECORDS, bogus="_25._tcp.mx2.dane.example")
    assert ask(root, bogus, "dane.example") == "dane"
    assert ask(root, bogus, "dane.example", DEFER_ON_TLS_ERROR=False) is None
