"""roost doctor's pure checks (roost.doctor.checks, roost.doctor.spf) and its report, on
plain values: every good and broken case without a network."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json

import pytest

from roost.core.dane import ISRG_ROOTS, ServedKey
from roost.core.dnsrecords import Record, records, tlsa_records
from roost.doctor import checks
from roost.doctor.findings import ERROR, OK, UNKNOWN, WARNING, Finding, Group, Report
from roost.doctor.observed import FOUND, MISSING, Certificate, Looked, Policy, Port
from roost.doctor.observed import UNKNOWN as NO_ANSWER
from roost.doctor.spf import NOT_EVALUATED, SpfResult, check_host
from roost.settings import Settings, load_settings

HOST = "mail.example.com"
NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)


def settings(**extra: str) -> Settings:
    environ = {"DOMAIN": "example.com", "HOSTNAMES": f"{HOST},mta-sts.example.com"} | extra
    return load_settings(env_file=None, environ=environ)


def expected(name: str, rtype: str, start: str = "") -> Record:
    for record in records(settings(), "example.com", dkim="KEY"):
        if record.name == name and record.rtype == rtype and str(record.data[0]).startswith(start):
            return record
    raise AssertionError(f"no {rtype} at {name}")


def found(*values: object) -> Looked:
    return Looked(FOUND, tuple(values))


MISSING_ANSWER = Looked(MISSING, (), "no such name")
TIMEOUT = Looked(NO_ANSWER, (), "the resolver did not answer in time")
MX = expected("example.com.", "MX")
SPF = expected("example.com.", "TXT", "v=spf1")


# -- MX ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "severity", "words"),
    [
        (found((10, HOST)), OK, "points to mail.example.com"),
        (found((10, "MAIL.example.com")), ERROR, "none of HOSTNAMES"),
        (found((10, "mx.other.net")), ERROR, "mail goes elsewhere"),
        (found((10, HOST), (20, "backup.other.net")), WARNING, "also backup.other.net"),
        (found((0, "")), ERROR, "null MX"),
        (MISSING_ANSWER, ERROR, "no MX record"),
        (TIMEOUT, UNKNOWN, "did not answer in time"),
    ],
)
def test_mx(answer: Looked, severity: str, words: str) -> None:
    finding = checks.check_mx("example.com", answer, (HOST,), MX)
    assert (finding.severity, finding.check) == (severity, "mx")
    assert words in finding.message
    assert (MX.line in finding.fix) == (severity in (ERROR, WARNING))


# -- SPF -----------------------------------------------------------------------------------

PASS = [("192.0.2.1", SpfResult("pass", "'mx'"))]


@pytest.mark.parametrize(
    ("answer", "verdicts", "severity", "words"),
    [
        (found("v=spf1 mx ~all", "other=x"), PASS, OK, "allows 192.0.2.1"),
        (found("google-site-verification=1"), [], ERROR, "no SPF record"),
        (found("v=spf1 mx ~all", "v=spf1 -all"), PASS, ERROR, "2 SPF records"),
        (found("V=SPF1 mx", "v=spf1 a"), PASS, ERROR, "2 SPF records"),
        (found("v=spf1 -all"), [("192.0.2.1", SpfResult("fail", "'-all'"))], ERROR, "192.0.2.1"),
        (found("v=spf1 include:x"), [("192.0.2.1", SpfResult("temperror", "t"))], UNKNOWN, ""),
        (found("v=spf1 exists:%{i}"), [("1.2.3.4", SpfResult(NOT_EVALUATED, "m"))], WARNING, ""),
        (TIMEOUT, [], UNKNOWN, "could not look up"),
    ],
)
def test_spf(answer: Looked, verdicts: list, severity: str, words: str) -> None:
    finding = checks.check_spf("example.com", answer, verdicts, SPF)
    assert finding.severity == severity
    assert words in finding.message
    if severity == ERROR:
        assert SPF.line in finding.fix


ZONE: dict[tuple[str, str], Looked] = {
    ("example.com", "TXT"): found("v=spf1 mx include:_spf.provider.net ~all"),
    ("example.com", "MX"): found((10, HOST)),
    (HOST, "A"): found("192.0.2.1"),
    (HOST, "AAAA"): found("2001:db8::1"),
    ("_spf.provider.net", "TXT"): found("v=spf1 ip4:198.51.100.0/24 ip6:2001:db8:1::/48 -all"),
    ("redirected.example", "TXT"): found("v=spf1 redirect=example.com"),
    ("strict.example", "TXT"): found("v=spf1 a:mail.example.com/24 -all"),
    ("loop.example", "TXT"): found("v=spf1 include:loop.example"),
    ("two.example", "TXT"): found("v=spf1 include:double.example ?all"),
    ("double.example", "TXT"): found("v=spf1 -all", "v=spf1 +all"),
    ("macro.example", "TXT"): found("v=spf1 exists:%{i}.spf.example -all"),
    ("slow.example", "TXT"): found("v=spf1 include:timeout.example -all"),
    ("timeout.example", "TXT"): TIMEOUT,
    ("neutral.example", "TXT"): found("v=spf1 ip4:203.0.113.7"),
    ("exists.example", "TXT"): found("v=spf1 exists:yes.example -all"),
    ("yes.example", "A"): found("127.0.0.2"),
}


def lookup(name: str, rtype: str) -> Looked:
    return ZONE.get((name.rstrip("."), rtype), MISSING_ANSWER)


@pytest.mark.parametrize(
    ("address", "domain", "result"),
    [
        ("192.0.2.1", "example.com", "pass"),  # mx
        ("2001:db8::1", "example.com", "pass"),  # mx, over IPv6
        ("198.51.100.9", "example.com", "pass"),  # include's ip4 network
        ("2001:db8:1::5", "example.com", "pass"),  # include's ip6 network
        ("203.0.113.1", "example.com", "softfail"),  # ~all (include said fail: no match)
        ("203.0.113.1", "redirected.example", "softfail"),  # redirect to example.com
        ("192.0.2.200", "strict.example", "pass"),  # a:host/24
        ("203.0.113.1", "strict.example", "fail"),
        ("192.0.2.1", "loop.example", "permerror"),  # more than 10 lookups
        ("192.0.2.1", "two.example", "permerror"),  # two records in an include
        ("192.0.2.1", "macro.example", NOT_EVALUATED),
        ("192.0.2.1", "slow.example", "temperror"),
        ("192.0.2.1", "neutral.example", "neutral"),  # no all: the default
        ("192.0.2.1", "nothing.example", "none"),
        ("192.0.2.1", "exists.example", "pass"),
    ],
)
def test_spf_evaluation(address: str, domain: str, result: str) -> None:
    assert check_host(address, domain, lookup).result == result


# -- DKIM ----------------------------------------------------------------------------------

DKIM = Record("dkim._domainkey.example.com.", "TXT", ("v=DKIM1; k=rsa; p=KEY",), "example.com", "")
ROTATION = Record(
    "dkim2._domainkey.example.com.", "TXT", ("v=DKIM1; k=rsa; p=NEW",), "example.com", ""
)


def test_dkim() -> None:
    def one(answer: Looked) -> Finding:
        (finding,) = checks.check_dkim("example.com", [DKIM], [answer])
        return finding

    assert one(found("v=DKIM1; k=rsa; p=K EY")).severity == OK  # spaces in p= do not count
    assert one(found("v=DKIM1; k=rsa; p=OLD")).severity == ERROR
    assert "another key" in one(found("v=DKIM1; k=rsa; p=OLD")).message
    assert one(found("v=DKIM1; k=rsa; p=OLD")).fix == f"replace it with {DKIM.line}"
    assert one(MISSING_ANSWER).fix == DKIM.line
    assert one(found("v=DKIM1; p=")).severity == ERROR  # a revoked key is no key
    assert one(TIMEOUT).severity == UNKNOWN
    (none,) = checks.check_dkim("example.com", [], [])
    assert none.severity == WARNING and "roost dkim generate example.com" in none.fix
    both = checks.check_dkim("example.com", [DKIM, ROTATION], [found("p=KEY"), MISSING_ANSWER])
    assert [f.severity for f in both] == [OK, WARNING]


# -- DMARC ---------------------------------------------------------------------------------

DMARC_LINE = '_dmarc.example.com. 600 IN TXT "v=DMARC1; p=reject; adkim=s; aspf=s"'


@pytest.mark.parametrize(
    ("answer", "severity", "words"),
    [
        (found("v=DMARC1; p=reject; adkim=s; aspf=s"), OK, "p=reject"),
        (found("v=DMARC1;p=quarantine;pct=50"), OK, "p=quarantine"),
        (found("v=DMARC1; p=none; rua=mailto:d@example.com"), WARNING, "p=none"),
        (found("v=DMARC1; rua=mailto:d@example.com"), ERROR, "needs p="),
        (found("v=DMARC1; p=reject; pct=150"), ERROR, "pct=150"),
        (found("v=DMARC1; p=reject; adkim=x"), ERROR, "adkim=x"),
        (found("v=DMARC1; p=reject", "v=DMARC1; p=none"), ERROR, "2 DMARC records"),
        (found("spf-like text"), ERROR, "no DMARC record"),
        (MISSING_ANSWER, ERROR, "no DMARC record"),
        (TIMEOUT, UNKNOWN, "could not look up"),
    ],
)
def test_dmarc(answer: Looked, severity: str, words: str) -> None:
    finding = checks.check_dmarc("example.com", answer, DMARC_LINE, True)
    assert finding.severity == severity
    assert words in finding.message


def test_dmarc_without_key_says_to_make_one_first() -> None:
    finding = checks.check_dmarc("example.com", MISSING_ANSWER, DMARC_LINE, False)
    assert finding.fix == f"roost dkim generate example.com, then {DMARC_LINE}"


# -- MTA-STS and TLS-RPT -------------------------------------------------------------------

STS = expected("_mta-sts.example.com.", "TXT")
TLSRPT = expected("_smtp._tls.example.com.", "TXT")
URL = "https://mta-sts.example.com/.well-known/mta-sts.txt"
POLICY_TEXT = f"version: STSv1\r\nmode: enforce\r\nmx: {HOST}\r\nmax_age: 604800\r\n"
GOOD_POLICY = Policy(URL, 200, "text/plain", POLICY_TEXT)


def sts(
    answer: Looked,
    policy: Policy | None = GOOD_POLICY,
    expect: Record | None = STS,
    cert_problem: str = "",
) -> Finding:
    return checks.check_mta_sts("example.com", answer, policy, HOST, expect, cert_problem)


def test_mta_sts() -> None:
    record = found(str(STS.data[0]))
    assert sts(record).severity == OK
    assert sts(found("v=STSv1; id=20260101"), expect=None).severity == OK  # someone else's
    assert sts(MISSING_ANSWER, None, None).severity == OK
    unannounced = sts(MISSING_ANSWER, None)
    assert unannounced.severity == WARNING and unannounced.fix == STS.line
    assert sts(TIMEOUT).severity == UNKNOWN
    assert "2 _mta-sts records" in sts(found("v=STSv1; id=1", "v=STSv1; id=2")).message
    assert "id=" in sts(found("v=STSv1; id=no-dashes")).message
    failed = sts(record, Policy(URL, error="certificate not valid"))
    assert failed.severity == ERROR and "certificate not valid" in failed.message
    assert "HTTP 404" in sts(record, Policy(URL, 404, "text/html", "")).message
    assert "text/html" in sts(record, Policy(URL, 200, "text/html", POLICY_TEXT)).message
    assert "unusable" in sts(record, Policy(URL, 200, "text/plain", "mode: enforce")).message
    elsewhere = POLICY_TEXT.replace(HOST, "mx.other.net")
    assert sts(record, Policy(URL, 200, "text/plain", elsewhere)).severity == ERROR
    testing = elsewhere.replace("enforce", "testing")
    assert sts(record, Policy(URL, 200, "text/plain", testing)).severity == WARNING
    wildcard = POLICY_TEXT.replace(HOST, "*.example.com")
    assert sts(record, Policy(URL, 200, "text/plain; charset=utf-8", wildcard)).severity == OK
    stale = sts(found("v=STSv1; id=old1"))
    assert stale.severity == WARNING and stale.fix == STS.line
    assert sts(record, cert_problem="self-signed").severity == ERROR


def test_tlsrpt() -> None:
    good = checks.check_tlsrpt("example.com", found(str(TLSRPT.data[0])), TLSRPT)
    assert good.severity == OK and "mailto:postmaster@example.com" in good.message
    assert checks.check_tlsrpt("example.com", MISSING_ANSWER, None).severity == OK
    missing = checks.check_tlsrpt("example.com", MISSING_ANSWER, TLSRPT)
    assert missing.severity == WARNING and missing.fix == TLSRPT.line
    bad = checks.check_tlsrpt("example.com", found("v=TLSRPTv1; rua=ftp://x"), TLSRPT)
    assert bad.severity == WARNING and "mailto: or https:" in bad.message
    assert "no rua=" in checks.check_tlsrpt("example.com", found("v=TLSRPTv1;"), None).message
    two = checks.check_tlsrpt("example.com", found("v=TLSRPTv1; rua=a", "v=TLSRPTv1;"), None)
    assert two.severity == WARNING
    assert checks.check_tlsrpt("example.com", TIMEOUT, None).severity == UNKNOWN


# -- the host ------------------------------------------------------------------------------


def test_address() -> None:
    assert checks.check_address(HOST, found("192.0.2.1"), MISSING_ANSWER).severity == OK
    assert checks.check_address(HOST, MISSING_ANSWER, MISSING_ANSWER).severity == ERROR
    assert checks.check_address(HOST, TIMEOUT, MISSING_ANSWER).severity == UNKNOWN


LEAF, LEAF_SPKI, CA, CA_SPKI = b"leaf-der", b"leaf-spki", b"ca-der", b"ca-spki"
CERT = Certificate(
    names=(HOST,),
    not_before=NOW - datetime.timedelta(days=30),
    not_after=NOW + datetime.timedelta(days=60),
    chain=(LEAF, CA),
    spkis=(LEAF_SPKI, CA_SPKI),
)


def test_tlsa() -> None:
    leaf_hash = hashlib.sha256(LEAF_SPKI).hexdigest()
    # The fix is what `roost dns` suggests for this certificate (one function for both).
    suggested = tlsa_records(settings(), ServedKey(LEAF_SPKI, self_signed=False))

    def tlsa(*values: tuple[int, int, int, str]) -> Finding:
        return checks.check_tlsa(HOST, found(*values), CERT, suggested)

    assert tlsa((3, 1, 1, leaf_hash)).severity == OK
    assert tlsa((3, 0, 2, hashlib.sha512(LEAF).hexdigest())).severity == OK
    assert tlsa((2, 1, 1, hashlib.sha256(CA_SPKI).hexdigest())).severity == OK
    assert tlsa((3, 0, 0, LEAF.hex())).severity == OK
    stale = tlsa((3, 1, 1, "00" * 32), (2, 1, 1, hashlib.sha256(LEAF_SPKI).hexdigest()))
    assert stale.severity == ERROR and "defer all mail" in stale.message
    assert stale.fix == f"_25._tcp.{HOST}. 3600 IN TLSA 3 1 1 {leaf_hash}"
    assert tlsa((1, 1, 1, leaf_hash)).severity == ERROR  # PKIX-EE: unusable for SMTP
    assert checks.check_tlsa(HOST, MISSING_ANSWER, CERT, suggested).severity == OK
    assert checks.check_tlsa(HOST, TIMEOUT, CERT, suggested).severity == UNKNOWN
    no_cert = checks.check_tlsa(HOST, found((3, 1, 1, leaf_hash)), Certificate(), suggested)
    assert no_cert.severity == UNKNOWN
    # Nothing to suggest (a self-signed placeholder): the fix says to remove the record.
    placeholder = checks.check_tlsa(HOST, found((3, 1, 1, "00" * 32)), CERT, [])
    assert placeholder.fix.startswith(f"remove the TLSA records at _25._tcp.{HOST}")


def test_tlsa_under_letsencrypt_names_both_roots() -> None:
    """Mailu's two DANE-TA records are the fix, each on its own line; one of them matches
    a chain that ends in that root (port 25 serves the root)."""
    s = settings(TLS_FLAVOR="letsencrypt")
    suggested = tlsa_records(s, ServedKey(LEAF_SPKI, self_signed=False))
    stale = checks.check_tlsa(HOST, found((3, 1, 1, "00" * 32)), CERT, suggested)
    assert stale.fix.splitlines() == [
        f"_25._tcp.{HOST}. 86400 IN TLSA 2 1 1 {digest}" for digest in ISRG_ROOTS.values()
    ]
    ca_hash = hashlib.sha256(CA_SPKI).hexdigest()
    assert checks.check_tlsa(HOST, found((2, 1, 1, ca_hash)), CERT, suggested).severity == OK


def test_reverse_dns() -> None:
    def rdns(ptr: Looked, forward: dict[str, Looked]) -> Finding:
        return checks.check_reverse(HOST, "192.0.2.1", ptr, forward)

    assert rdns(found(HOST), {HOST: found("192.0.2.1")}).severity == OK
    assert rdns(MISSING_ANSWER, {}).severity == ERROR
    lying = rdns(found("host.isp.net"), {"host.isp.net": found("198.51.100.1")})
    assert lying.severity == ERROR and "does not resolve back" in lying.message
    other = rdns(found("host.isp.net"), {"host.isp.net": found("192.0.2.1")})
    assert other.severity == WARNING and "HELO mail.example.com" in other.message
    assert "set its PTR to mail.example.com" in other.fix
    assert rdns(found("host.isp.net"), {"host.isp.net": TIMEOUT}).severity == UNKNOWN
    assert rdns(TIMEOUT, {}).severity == UNKNOWN


def test_certificate() -> None:
    def cert(**changes: object) -> list[tuple[str, str]]:
        findings = checks.check_certificate((HOST,), dataclasses.replace(CERT, **changes), NOW)
        return [(f.severity, f.message) for f in findings]

    assert [s for s, _ in cert()] == [OK]
    assert cert(not_after=NOW - datetime.timedelta(days=1))[0][0] == ERROR
    soon = cert(not_after=NOW + datetime.timedelta(days=10))
    assert soon[0][0] == WARNING and "in 10 day(s)" in soon[0][1]
    assert cert(self_signed=True, trust_error="self-signed")[0] == (
        WARNING,
        "self-signed: mail clients warn, and senders that check certificates (MTA-STS, "
        "DANE) refuse it",
    )
    assert "not trusted" in cert(trust_error="unknown issuer")[0][1]
    assert "does not cover mail.example.com" in cert(names=("other.example.com",))[0][1]
    assert cert(problem="cert.pem: missing")[0][0] == ERROR
    (notls,) = checks.check_certificate((HOST,), None, NOW)
    assert notls.severity == WARNING and "TLS_FLAVOR" in notls.fix
    assert checks.mx_certificate_problem(HOST, CERT) == ""
    assert checks.mx_certificate_problem("other.example", CERT) == "it does not name other.example"


def test_ports() -> None:
    findings = checks.check_ports(
        [
            Port("192.0.2.1", 25, False, "Connection refused"),
            Port("192.0.2.1", 443, False, "no answer in 3 s"),
            Port("192.0.2.1", 993, True),
        ]
    )
    assert [f.severity for f in findings] == [ERROR, WARNING, OK]
    assert "open 25/tcp" in findings[0].fix


# -- the report ----------------------------------------------------------------------------


def test_report_status_exit_and_shapes() -> None:
    ok = Finding("mx", OK, "points to mail.example.com", "", "RFC 5321 §5.1")
    warn = Finding("dmarc", WARNING, "p=none", DMARC_LINE, "RFC 7489 §6.3")
    unknown = Finding("spf", UNKNOWN, "could not look up", "", "RFC 7208 §4.5")
    error = Finding("tlsa", ERROR, "stale", "_25._tcp... TLSA 3 1 1 ab", "RFC 7672 §3.1")
    assert Report((Group("example.com", "domain", (ok, warn)),)).exit_status == 0
    assert Report((Group("example.com", "domain", (ok, unknown, warn)),)).exit_status == 3
    report = Report(
        (Group("example.com", "domain", (ok, unknown)), Group(HOST, "host", (error,))),
        ("a note",),
    )
    assert report.exit_status == 1
    shape = json.loads(json.dumps(report.as_json()))
    assert shape["version"] == 1 and shape["status"] == "error"
    assert shape["counts"] == {"error": 1, "warning": 0, "unknown": 1, "ok": 1}
    assert shape["groups"][1] == {
        "name": HOST,
        "kind": "host",
        "note": "",
        "findings": [
            {
                "check": "tlsa",
                "severity": "error",
                "message": "stale",
                "fix": "_25._tcp... TLSA 3 1 1 ab",
                "reference": "RFC 7672 §3.1",
            }
        ],
    }
    text = report.as_text().splitlines()
    assert text[:3] == [
        "example.com",
        "  ok      mx: points to mail.example.com",
        "  unknown spf: could not look up",
    ]
    assert f"host {HOST}" in text
    assert "          fix: _25._tcp... TLSA 3 1 1 ab" in text
    assert text[-2:] == ["Note: a note", "1 error(s), 0 warning(s), 1 not checked, 1 ok"]


# -- one run, with a probe that answers from a table ---------------------------------------


class TableProbe:
    """Stands in for roost.doctor.probe.Probe: DNS from a table, ports from a set."""

    def __init__(self, zone: dict[tuple[str, str], Looked], open_ports: set[int]) -> None:
        self.zone = zone
        self.open_ports = open_ports
        self.fetched: list[str] = []

    def lookup(self, name: str, rtype: str) -> Looked:
        return self.zone.get((name.lower().rstrip("."), rtype), MISSING_ANSWER)

    def addresses(self, host: str) -> list[str]:
        return [str(v) for t in ("A", "AAAA") for v in self.lookup(host, t).values]

    def reverse(self, address: str) -> Looked:
        return self.lookup(f"ptr:{address}", "PTR")

    def fetch_policy(self, domain: str) -> Policy:
        self.fetched.append(domain)
        raise RuntimeError("no network in unit tests")

    def port(self, address: str, port: int) -> Port:
        return Port(
            address, port, port in self.open_ports, "" if port in self.open_ports else "refused"
        )


def test_one_run_groups_domains_alternatives_and_the_host() -> None:
    from roost.doctor.diagnose import DomainFacts, diagnose

    s = settings(PORTS="25,443,993")
    zone = {
        ("example.com", "MX"): found((10, HOST)),
        ("example.com", "TXT"): found("v=spf1 mx ~all"),
        ("_dmarc.example.com", "TXT"): found("v=DMARC1; p=reject"),
        ("dkim._domainkey.example.com", "TXT"): found("v=DKIM1; k=rsa; p=KEY"),
        ("_mta-sts.example.com", "TXT"): found(str(STS.data[0])),
        ("alt.example", "MX"): found((10, "mx.elsewhere.net")),
        (HOST, "A"): found("192.0.2.1"),
        ("ptr:192.0.2.1", "PTR"): found(HOST),
    }
    probe = TableProbe(zone, {25, 443})
    facts = [DomainFacts("example.com", ("alt.example",), (("dkim", "KEY"),), postmaster=False)]
    certificate = dataclasses.replace(CERT, names=(HOST, "mta-sts.example.com"))
    report = diagnose(s, facts, probe, certificate, NOW)  # type: ignore[arg-type]
    assert [(g.name, g.kind, g.note) for g in report.groups] == [
        ("example.com", "domain", ""),
        ("alt.example", "domain", "alternative of example.com"),
        (HOST, "host", ""),
    ]
    by_check = {f.check: f for f in report.groups[0].findings}
    assert [f.check for f in report.groups[0].findings] == [
        "mx", "spf", "dkim", "dmarc", "mta-sts", "tls-rpt", "postmaster"
    ]  # fmt: skip
    # RFC 5321 §4.5.1: the postmaster must receive mail; an alternative's is the primary's.
    assert by_check["postmaster"].severity == WARNING
    assert by_check["postmaster"].fix == (
        "roost alias postmaster example.com <an administrator's address>"
    )
    assert by_check["spf"].severity == OK and by_check["dkim"].severity == OK
    # A probe that fails is that check's "unknown", not the run's end.
    assert by_check["mta-sts"].severity == UNKNOWN
    assert by_check["mta-sts"].message == "the check failed: RuntimeError: no network in unit tests"
    assert by_check["tls-rpt"].severity == WARNING  # served MTA-STS, but no TLS-RPT record
    alt = {f.check: f for f in report.groups[1].findings}
    assert "postmaster" not in alt
    assert (
        alt["mx"].severity == ERROR
        and alt["mx"].fix == "alt.example. 600 IN MX 10 mail.example.com."
    )
    host = [(f.check, f.severity) for f in report.groups[2].findings]
    assert host == [
        ("address", OK),
        ("reverse-dns", OK),
        ("certificate", OK),
        ("tlsa", OK),
        ("ports", OK),
        ("ports", OK),
        ("ports", WARNING),
    ]
    assert probe.fetched == ["example.com"]
    assert report.exit_status == 1 and len(report.notes) == 1
