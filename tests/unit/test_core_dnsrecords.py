"""The DNS records a domain publishes (core.dnsrecords) and `roost dns` printing them."""

from __future__ import annotations

from pathlib import Path

import pytest

from roost.core.address import AddressError
from roost.core.dnsrecords import omitted, records, txt_value, zone_file
from roost.settings import Settings, SettingsError, load_settings
from tests.unit.test_cli_support import error_line, make_stack


def settings(**values: str) -> Settings:
    environ = {"DOMAIN": "example.com", "HOSTNAMES": "mail.example.com,mx2.example.com"}
    environ.update(values)
    return load_settings(env_file=None, environ=environ)


#: A DKIM public key's base64 (its length is a 2048-bit key's: two TXT strings).
PUB = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + "x" * 348
DKIM_TXT = f'"v=DKIM1; k=rsa; p={PUB[:232]}" "{PUB[232:]}"'


def lines(s: Settings, domain: str, alternatives: tuple[str, ...] = ()) -> list[str]:
    """The records of a domain with a DKIM key (so with DMARC)."""
    return [r.line for r in records(s, domain, alternatives, dkim=PUB)]


def test_without_a_dkim_key_no_dmarc_is_suggested() -> None:
    """Mailu shows DMARC only with a key: p=reject without a signature would refuse
    every message that a third party forwards (forwarding breaks SPF)."""
    s = settings(DMARC_RUA="postmaster")
    unsigned = [r.line for r in records(s, "other.org", ("alt.example",))]
    assert not any("_dmarc" in line for line in unsigned)
    assert [line for line in lines(s, "other.org", ("alt.example",)) if "_dmarc" in line]
    assert any(reason.startswith("DMARC:") for reason in omitted(s, "other.org"))


def test_default_ports_publish_mailus_formats() -> None:
    # PORTS default: 25,80,443,465,993,995,4190; no DMARC report addresses.
    assert lines(settings(), "example.com") == [
        "example.com. 600 IN MX 10 mail.example.com.",
        'example.com. 600 IN TXT "v=spf1 mx a:mail.example.com ~all"',
        f"dkim._domainkey.example.com. 600 IN TXT {DKIM_TXT}",
        '_dmarc.example.com. 600 IN TXT "v=DMARC1; p=reject; adkim=s; aspf=s"',
        "_imap._tcp.example.com. 600 IN SRV 0 0 0 .",
        "_pop3._tcp.example.com. 600 IN SRV 0 0 0 .",
        "_submission._tcp.example.com. 600 IN SRV 0 0 0 .",
        "_autodiscover._tcp.example.com. 600 IN SRV 10 1 443 mail.example.com.",
        "_submissions._tcp.example.com. 600 IN SRV 10 1 465 mail.example.com.",
        "_imaps._tcp.example.com. 600 IN SRV 10 1 993 mail.example.com.",
        "_pop3s._tcp.example.com. 600 IN SRV 10 1 995 mail.example.com.",
        "autoconfig.example.com. 600 IN CNAME mail.example.com.",
        "autodiscover.example.com. 600 IN CNAME mail.example.com.",
    ]


def test_srv_records_follow_the_enabled_ports() -> None:
    # Mailu always advertises 465 and 993; Roost advertises what listens.
    srv = [
        r.line for r in records(settings(PORTS="25,80,143,587"), "example.com") if r.rtype == "SRV"
    ]
    assert srv == [
        "_imap._tcp.example.com. 600 IN SRV 20 1 143 mail.example.com.",
        "_pop3._tcp.example.com. 600 IN SRV 0 0 0 .",
        "_submission._tcp.example.com. 600 IN SRV 20 1 587 mail.example.com.",
        "_autodiscover._tcp.example.com. 600 IN SRV 0 0 0 .",
        "_submissions._tcp.example.com. 600 IN SRV 0 0 0 .",
        "_imaps._tcp.example.com. 600 IN SRV 0 0 0 .",
        "_pop3s._tcp.example.com. 600 IN SRV 0 0 0 .",
    ]


def test_notls_turns_every_tls_service_off() -> None:
    s = settings(TLS_FLAVOR="notls", PORTS="25,80,110,143,443,465,587,993,995")
    by_service = {
        r.name.split(".")[0]: r.value for r in records(s, "example.com") if r.rtype == "SRV"
    }
    assert by_service == {
        "_imap": "20 1 143 mail.example.com.",
        "_pop3": "20 1 110 mail.example.com.",
        "_submission": "20 1 587 mail.example.com.",
        "_autodiscover": "0 0 0 .",
        "_submissions": "0 0 0 .",
        "_imaps": "0 0 0 .",
        "_pop3s": "0 0 0 .",
    }


def test_webdav_adds_rfc6764_records_for_the_port_that_serves_it() -> None:
    assert not [r for r in records(settings(), "example.com") if "dav" in r.name]
    dav = [r.line for r in records(settings(WEBDAV="radicale"), "example.com") if "dav" in r.name]
    assert dav == [
        "_caldavs._tcp.example.com. 600 IN SRV 10 1 443 mail.example.com.",
        '_caldavs._tcp.example.com. 600 IN TXT "path=/webdav/"',
        "_carddavs._tcp.example.com. 600 IN SRV 10 1 443 mail.example.com.",
        '_carddavs._tcp.example.com. 600 IN TXT "path=/webdav/"',
    ]
    plain = settings(WEBDAV="radicale", TLS_FLAVOR="notls", PORTS="25,80,143,587")
    assert [r.line for r in records(plain, "example.com") if "dav" in r.name][:1] == [
        "_caldav._tcp.example.com. 600 IN SRV 10 1 80 mail.example.com."
    ]
    off = settings(WEBDAV="radicale", PORTS="25,80,993")
    assert not [r for r in records(off, "example.com") if "dav" in r.name]


def test_dmarc_reports_go_to_domain_with_permission_for_other_domains() -> None:
    s = settings(DMARC_RUA="Admin", DMARC_RUF="forensic")
    dmarc = (
        '"v=DMARC1; p=reject; rua=mailto:admin@example.com; '
        'ruf=mailto:forensic@example.com; adkim=s; aspf=s"'
    )
    assert f"_dmarc.example.com. 600 IN TXT {dmarc}" in lines(s, "example.com")
    # The main domain needs no permission from itself.
    assert not [line for line in lines(s, "example.com") if "_report" in line]
    other = lines(s, "other.org", ("alt.net",))
    assert f"_dmarc.other.org. 600 IN TXT {dmarc}" in other
    assert 'other.org._report._dmarc.example.com. 600 IN TXT "v=DMARC1;"' in other
    assert 'alt.net._report._dmarc.example.com. 600 IN TXT "v=DMARC1;"' in other


def test_only_rua_and_no_report_permission_without_addresses() -> None:
    s = settings(DMARC_RUA="postmaster")
    assert (
        '"v=DMARC1; p=reject; rua=mailto:postmaster@example.com; adkim=s; aspf=s"'
        in (lines(s, "example.com")[3])
    )
    assert not [line for line in lines(settings(), "other.org") if "_report" in line]


def test_dmarc_uri_separators_in_a_local_part_are_escaped() -> None:
    # RFC 7489 §6.4: "!" starts a size limit and "," separates URIs (refused by the setting).
    s = settings(DMARC_RUA="a!b")
    assert "rua=mailto:a%21b@example.com;" in lines(s, "example.com")[3]
    with pytest.raises(SettingsError, match="DMARC_RUF="):
        settings(DMARC_RUF="a,b")


def test_names_are_lower_case_punycode_and_alternatives_get_mail_records() -> None:
    got = lines(settings(), "Bücher.Example", ("ALT.example", "bücher.example", "zz.example"))
    assert got[0] == "xn--bcher-kva.example. 600 IN MX 10 mail.example.com."
    assert "autoconfig.xn--bcher-kva.example. 600 IN CNAME mail.example.com." in got
    # The domain itself is no alternative; alternatives sorted, each MX, SPF, DKIM (the
    # domain's key under the alternative's name), DMARC only.
    assert got[-8:] == [
        "alt.example. 600 IN MX 10 mail.example.com.",
        'alt.example. 600 IN TXT "v=spf1 mx a:mail.example.com ~all"',
        f"dkim._domainkey.alt.example. 600 IN TXT {DKIM_TXT}",
        '_dmarc.alt.example. 600 IN TXT "v=DMARC1; p=reject; adkim=s; aspf=s"',
        "zz.example. 600 IN MX 10 mail.example.com.",
        'zz.example. 600 IN TXT "v=spf1 mx a:mail.example.com ~all"',
        f"dkim._domainkey.zz.example. 600 IN TXT {DKIM_TXT}",
        '_dmarc.zz.example. 600 IN TXT "v=DMARC1; p=reject; adkim=s; aspf=s"',
    ]
    ours = records(settings(), "Bücher.Example", ("ALT.example",))
    assert all(r.name == r.name.lower() and r.name.endswith(".") for r in ours)


def test_a_host_named_autoconfig_gets_no_cname_to_itself() -> None:
    s = settings(HOSTNAMES="autoconfig.example.com")
    cnames = [r.line for r in records(s, "example.com") if r.rtype == "CNAME"]
    assert cnames == ["autodiscover.example.com. 600 IN CNAME autoconfig.example.com."]


def test_an_invalid_domain_is_refused() -> None:
    with pytest.raises(AddressError):
        records(settings(), "not a domain")


def test_txt_values_are_quoted_escaped_and_split() -> None:
    assert txt_value('a"b\\c') == '"a\\"b\\\\c"'
    assert txt_value("é") == '"\\195\\169"'
    long = "p=" + "A" * 300
    assert txt_value(long) == f'"{long[:250]}" "{long[250:]}"'


def test_zone_file_is_master_file_lines_with_omissions_as_comments() -> None:
    s = settings()
    text = zone_file(s, "example.com", ["alt.example"], dkim=PUB)
    assert text.endswith("\n")
    body = [line for line in text.splitlines() if not line.startswith(";")]
    assert body == lines(s, "example.com", ("alt.example",))
    comments = [line for line in text.splitlines() if line.startswith(";")]
    assert comments[0] == "; Mail records for example.com, from Roost"
    omissions = ["MTA-STS and TLS-RPT", "TLSA (DANE)"]
    assert [c.split(":")[1].strip() for c in comments[1:]] == omissions
    unsigned = [line for line in zone_file(s, "example.com").splitlines() if line[0] == ";"]
    assert [c.split(":")[1].strip() for c in unsigned[1:]] == ["DKIM", "DMARC", *omissions]
    assert "roost dkim generate example.com" in omitted(s, "example.com")[0]
    assert len(omitted(s, "example.com")) == 4


def test_dkim_record_is_mailus_and_cut_at_250_octets_only_in_zone_lines() -> None:
    (dkim,) = [
        r
        for r in records(settings(DKIM_SELECTOR="Mail2026"), "a.example", dkim=PUB)
        if r.name.startswith("mail2026._domainkey.")
    ]
    assert dkim.data == (f"v=DKIM1; k=rsa; p={PUB}",)
    assert dkim.line.split(" IN TXT ")[1] == DKIM_TXT
    assert len(dkim.line.split('"')[1]) == 250
    # Mailu's API shows the text as one string (dns_dkim).
    assert (
        dkim.unsplit_line == f'mail2026._domainkey.a.example. 600 IN TXT "v=DKIM1; k=rsa; p={PUB}"'
    )


def test_zone_file_parses_as_rfc1035_master_file() -> None:
    dnslib = pytest.importorskip("dnslib")
    s = settings(DMARC_RUA="postmaster")
    parsed = list(dnslib.RR.fromZone(zone_file(s, "bücher.example", ["alt.example"], dkim=PUB)))
    ours = records(s, "bücher.example", ["alt.example"], dkim=PUB)
    assert [(str(rr.rname), dnslib.QTYPE[rr.rtype], rr.ttl) for rr in parsed] == [
        (r.name, r.rtype, 600) for r in ours
    ]
    txt = [rr for rr in parsed if rr.rtype == dnslib.QTYPE.TXT]
    assert b"".join(txt[0].rdata.data) == b"v=spf1 mx a:mail.example.com ~all"
    assert b"".join(txt[1].rdata.data) == f"v=DKIM1; k=rsa; p={PUB}".encode()


# -- roost dns --------------------------------------------------------------------------------


def test_cli_prints_the_records_of_a_domain_and_its_alternatives(tmp_path: Path) -> None:
    stack = make_stack(tmp_path, extra="PORTS=25,80,143,587\n")
    assert stack.roost("domain", "Bücher.example").exit_code == 0
    assert stack.roost("alternative", "add", "alt.example", "bücher.example").exit_code == 0
    result = stack.roost("dns", "BÜCHER.example")
    assert result.exit_code == 0, result.output
    out = result.output.splitlines()
    assert "xn--bcher-kva.example. 600 IN MX 10 mail.example.com." in out
    assert "_imap._tcp.xn--bcher-kva.example. 600 IN SRV 20 1 143 mail.example.com." in out
    assert "alt.example. 600 IN MX 10 mail.example.com." in out
    assert any(line.startswith("Left out: DKIM") for line in out)


def test_cli_zone_prints_the_zone_file(tmp_path: Path) -> None:
    stack = make_stack(tmp_path)
    stack.roost("domain", "example.org")
    stack.roost("alternative", "add", "alt.example", "example.org")
    result = stack.roost("dns", "example.org", "--zone")
    assert result.exit_code == 0, result.output
    assert result.output == zone_file(stack.settings, "example.org", ["alt.example"])


def test_cli_refuses_an_unknown_domain(tmp_path: Path) -> None:
    stack = make_stack(tmp_path)
    result = stack.roost("dns", "nowhere.example")
    assert result.exit_code == 2
    assert error_line(result) == "roost: error: domain 'nowhere.example' does not exist"
    stack.roost("domain", "example.org")
    stack.roost("alternative", "add", "alt.example", "example.org")
    assert error_line(stack.roost("dns", "alt.example")) == (
        "roost: error: 'alt.example' is an alternative domain of 'example.org', not a domain"
    )


def test_the_apis_dns_autoconfig_carries_the_webdav_records(tmp_path: Path) -> None:
    from roost.web.api.dns import dns_fields

    s = settings(WEBDAV="radicale", ROOT=str(tmp_path), DKIM_PATH=str(tmp_path / "{domain}.key"))
    got = dns_fields(s, "example.com")["dns_autoconfig"]
    assert '_caldavs._tcp.example.com. 600 IN TXT "path=/webdav/"' in got
    assert "_carddavs._tcp.example.com. 600 IN SRV 10 1 443 mail.example.com." in got
