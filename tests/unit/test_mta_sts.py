"""Inbound MTA-STS and TLS-RPT: the policy and records (core.mtasts, core.dnsrecords) and
nginx's location that serves the policy (rendered and checked with ``nginx -t``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_services_nginx import block, directives
from test_services_postfix_support import make_settings, roost_root

from roost import tls
from roost.core import mtasts
from roost.core.dnsrecords import omitted, records
from roost.layout import Layout
from roost.services.nginx import NginxService
from roost.settings import Settings, SettingsError, load_settings


def settings(**extra: str) -> Settings:
    environ = {
        "DOMAIN": "example.com",
        "HOSTNAMES": "mail.example.com,mta-sts.example.com,mta-sts.alt.example",
    }
    return load_settings(env_file=None, environ=environ | extra)


def test_policy_text_is_rfc_8461_with_crlf_lines() -> None:
    text = mtasts.policy_text(settings())
    assert text == (
        "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 604800\r\n"
    )
    policy, problem = mtasts.parse_policy(text)
    assert problem == "" and policy == mtasts.Policy("enforce", ("mail.example.com",), 604800)
    testing = mtasts.policy_text(settings(MTA_STS_MODE="Testing", MTA_STS_MAX_AGE="86400"))
    assert "mode: testing\r\n" in testing and "max_age: 86400\r\n" in testing


def test_the_id_follows_the_policy() -> None:
    ids = {
        mtasts.sts_record_text(settings(**extra))
        for extra in ({}, {"MTA_STS_MODE": "testing"}, {"MTA_STS_MAX_AGE": "86400"})
    }
    assert len(ids) == 3
    assert mtasts.sts_record_text(settings()) == mtasts.sts_record_text(settings())
    record_id, problem = mtasts.parse_sts_record(mtasts.sts_record_text(settings()))
    assert problem == "" and record_id is not None and re.fullmatch(r"[0-9a-f]{20}", record_id)


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("MTA_STS_MODE", "strict", "enforce, testing or none"),
        ("MTA_STS_MAX_AGE", "60", "from 86400 to 31557600"),
        ("MTA_STS_MAX_AGE", "31557601", "from 86400 to 31557600"),
        ("TLSRPT_RUA", "a b", "TLSRPT_RUA"),
    ],
)
def test_settings_refuse_bad_values(name: str, value: str, words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        settings(**{name: value})


def test_records_only_for_domains_whose_policy_host_is_ours() -> None:
    lines = [r.line for r in records(settings(), "example.com", ["alt.example", "b.example"])]
    sts = f'"{mtasts.sts_record_text(settings())}"'
    assert f"_mta-sts.example.com. 600 IN TXT {sts}" in lines
    assert "mta-sts.example.com. 600 IN CNAME mail.example.com." in lines
    assert (
        '_smtp._tls.example.com. 600 IN TXT "v=TLSRPTv1; rua=mailto:postmaster@example.com"'
        in lines
    )
    assert f"_mta-sts.alt.example. 600 IN TXT {sts}" in lines  # an alternative of ours
    assert not [line for line in lines if "b.example" in line and "mta-sts" in line]
    assert not [line for line in lines if "_smtp._tls.b.example" in line]
    assert not any("MTA-STS" in reason for reason in omitted(settings(), "example.com"))
    (hint,) = [r for r in omitted(settings(), "b.example") if "MTA-STS" in r]
    assert "add mta-sts.b.example to HOSTNAMES" in hint
    rua = records(settings(TLSRPT_RUA="tls-reports"), "example.com")
    assert any("rua=mailto:tls-reports@example.com" in r.line for r in rua)
    # Without HTTPS there is no policy to fetch, so nothing announces one.
    plain = records(settings(TLS_FLAVOR="notls"), "example.com")
    assert not [r for r in plain if "mta-sts" in r.name or "_smtp._tls" in r.name]


def test_the_api_keeps_mailus_fields(tmp_path: Path) -> None:
    """Mailu's DomainGet has no field for MTA-STS: its CNAME is not an autoconfig record."""
    from roost.web.api.dns import dns_fields

    fields = dns_fields(settings(ROOT=str(tmp_path)), "example.com")
    assert fields["dns_autoconfig"]
    assert not [line for line in fields["dns_autoconfig"] if "mta-sts" in line]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("v=STSv1; id=abc", ""),
        ("v=STSv1;id=abc;", ""),
        ("id=abc; v=STSv1", "does not start with v=STSv1"),
        ("v=STSv1;", "no id="),
        ("v=STSv1; id=a; id=b", "exactly one id="),
        ("v=STSv1; id=" + "a" * 33, "1 to 32 letters and digits"),
    ],
)
def test_sts_record_syntax(text: str, problem: str) -> None:
    record_id, found = mtasts.parse_sts_record(text)
    assert (found == "") == (problem == "") and problem in found
    assert (record_id is None) == bool(problem)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("v=TLSRPTv1; rua=mailto:a@example.com,https://r.example/x", ""),
        ("v=TLSRPTv1;rua=mailto:a@example.com", ""),
        ("rua=mailto:a@example.com; v=TLSRPTv1", "does not start with v=TLSRPTv1"),
        ("v=TLSRPTv1; rua=mailto:a@example.com,", "an empty URI is not"),
        ("v=TLSRPTv1; rua=http://r.example", "not a mailto: or https: URI"),
    ],
)
def test_tlsrpt_record_syntax(text: str, problem: str) -> None:
    uris, found = mtasts.parse_tlsrpt_record(text)
    assert (found == "") == (problem == "") and problem in found
    assert bool(uris) == (problem == "")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("version: STSv1\nmode: none\nmax_age: 0\n", ""),
        ("version: STSv1\nmode: enforce\nmax_age: 1\n", "no mx:"),
        ("version: STSv2\nmode: enforce\nmx: a\nmax_age: 1\n", "version: STSv1"),
        ("version: STSv1\nmode: strict\nmx: a\nmax_age: 1\n", "mode:"),
        ("version: STSv1\nmode: enforce\nmx: a\nmax_age: 31557601\n", "max_age:"),
        ("version: STSv1\nmode: enforce\nmx a\nmax_age: 1\n", "not key: value"),
    ],
)
def test_policy_syntax(text: str, problem: str) -> None:
    assert problem in mtasts.parse_policy(text)[1]
    assert (mtasts.parse_policy(text)[0] is None) == bool(problem)


def test_mx_patterns() -> None:
    assert mtasts.mx_matches("mail.example.com", "MAIL.example.com.")
    assert mtasts.mx_matches("*.example.com", "mail.example.com")
    assert not mtasts.mx_matches("*.example.com", "a.mail.example.com")
    assert not mtasts.mx_matches("*.example.com", "example.com")


@pytest.fixture()
def root() -> Iterator[Path]:
    with roost_root() as path:
        yield path


def https_server(root: Path, **values: object) -> str:
    layout = Layout(make_settings(root, "127.0.5.31", **values))
    tls.ensure(layout)
    service = NginxService(layout)
    service.render()  # nginx -t checks the result
    text = service.conf.read_text()
    return block(text, "# HTTPS, the main server")


def test_nginx_serves_the_policy_to_the_policy_hosts_only(root: Path) -> None:
    hostnames = ("mail.example.test", "mta-sts.example.test", "mta-sts.alt.test")
    server = https_server(root, HOSTNAMES=hostnames, MTA_STS_MODE="testing")
    location = block(server, "location = /.well-known/mta-sts.txt")
    policy = mtasts.policy_text(make_settings(root, "127.0.5.31", MTA_STS_MODE="testing"))
    assert directives(location) == [
        "location = /.well-known/mta-sts.txt {",
        'if ($host !~* "^(mta\\-sts\\.example\\.test|mta\\-sts\\.alt\\.test)$") {',
        "return 404;",
        "}",
        "default_type text/plain;",
        'return 200 "' + policy.replace("\r\n", "\\r\\n") + '";',
        "}",
    ]


def test_nginx_has_no_policy_without_a_policy_host(root: Path) -> None:
    assert "mta-sts" not in https_server(root)
