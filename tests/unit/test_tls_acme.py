"""TLS_FLAVOR letsencrypt: the ACME decisions (roost.core.acme), the source, the install,
nginx's port 80, and what ``roost status`` says. certbot and a CA run in tests/e2e/test_acme.py."""

from __future__ import annotations

import datetime
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_services_nginx import block, directives
from test_services_postfix_support import make_settings, roost_root

from roost import tls
from roost.core.acme import (
    AcmeState,
    CertbotPaths,
    certbot_command,
    contact_address,
    describe,
    names_to_request,
    refused_names,
    without_refused,
)
from roost.layout import Layout
from roost.runner.lock import LOCK_NAME, RunLock, is_held
from roost.services.acme import AcmeService
from roost.services.base import ServiceConfigError
from roost.services.nginx import NginxService
from roost.tls.acme import certbot_paths, install
from roost.tls.acmestate import read_state, write_state
from roost.tls.sources import Acme
from tests.unit.test_cli_support import error_line, make_stack

ADDRESS = "127.0.5.31"
PATHS = CertbotPaths(Path("/r/c"), Path("/r/w"), Path("/r/l"), Path("/r/run/acme-challenge"))

# What certbot 2.1 prints when the CA refuses some names (auth_handler.py's report).
CERTBOT_FAILURE = """
Certbot failed to authenticate some domains (authenticator: webroot). The Certificate \
Authority reported these problems:
  Domain: late.example.com
  Type:   dns
  Detail: no valid A records found for late.example.com; no valid AAAA records found

  Domain: Other.Example.com
  Type:   unauthorized
  Detail: 203.0.113.9: Invalid response from http://other.example.com/.well-known/x: 404

Hint: The Certificate Authority failed to download the temporary challenge files.
"""


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_certbot_keeps_its_state_under_root_and_lets_certbot_decide_renewal() -> None:
    argv = certbot_command(PATHS, ["a.example.com", "b.example.com"], "https://ca/dir", None)
    assert argv[:4] == ["certbot", "certonly", "--non-interactive", "--agree-tos"]
    assert option(argv, "--config-dir") == "/r/c"
    assert option(argv, "--work-dir") == "/r/w"
    assert option(argv, "--logs-dir") == "/r/l"
    assert option(argv, "--server") == "https://ca/dir"
    assert option(argv, "--authenticator") == "webroot"
    assert option(argv, "--webroot-path") == "/r/run/acme-challenge"
    assert option(argv, "--key-type") == "ecdsa"
    assert option(argv, "--cert-name") == "roost"
    assert "--keep-until-expiring" in argv and "--force-renewal" not in argv
    assert "--register-unsafely-without-email" in argv and "--email" not in argv
    domains = [argv[i + 1] for i, word in enumerate(argv) if word == "--domain"]
    assert domains == ["a.example.com", "b.example.com"]


def test_certbot_with_a_contact_and_forced() -> None:
    argv = certbot_command(PATHS, ["a.example.com"], "https://ca/dir", "pm@example.com", True)
    assert option(argv, "--email") == "pm@example.com"
    assert "--no-eff-email" in argv and "--register-unsafely-without-email" not in argv
    assert "--force-renewal" in argv and "--keep-until-expiring" not in argv


@pytest.mark.parametrize(
    ("domain", "contact"),
    [
        ("mailu.io", "postmaster@mailu.io"),
        ("example.test", None),
        ("example.com", None),
        ("mail.localhost", None),
        ("testing.org", "postmaster@testing.org"),
    ],
)
def test_contact_is_postmaster_where_mail_can_arrive(domain: str, contact: str | None) -> None:
    assert contact_address("postmaster", domain) == contact


def test_names_whose_self_check_failed_are_left_out() -> None:
    names = ["a.example.com", "b.example.com", "c.example.com"]
    assert names_to_request(names, {"b.example.com": "404"}) == ["a.example.com", "c.example.com"]
    assert names_to_request(names, {}) == names


def test_when_every_self_check_failed_all_names_are_asked_for() -> None:
    """The host may not reach itself through NAT while the CA reaches it."""
    names = ["a.example.com", "b.example.com"]
    assert names_to_request(names, dict.fromkeys(names, "timeout")) == names


def test_names_the_ca_refused_are_read_from_certbots_report() -> None:
    refused = refused_names(CERTBOT_FAILURE)
    assert list(refused) == ["late.example.com", "other.example.com"]
    assert refused["late.example.com"].startswith("dns: no valid A records found")
    assert refused["other.example.com"].startswith("unauthorized: 203.0.113.9: Invalid")
    assert refused_names("An unexpected error occurred: Connection refused") == {}


def test_names_the_ca_will_not_issue_for_are_read_too() -> None:
    output = (
        "An unexpected error occurred:\nError creating new order :: Cannot issue for "
        '"mail.internal": Domain name does not end with a valid public suffix (TLD) (and 1 '
        "more problems. Refer to sub-problems for more information.)\n"
    )
    assert refused_names(output) == {
        "mail.internal": "rejected: Domain name does not end with a valid public suffix (TLD)"
    }


def test_a_request_is_repeated_without_the_refused_names_only() -> None:
    names = ["a.example.com", "late.example.com", "other.example.com"]
    remaining, refused = without_refused(names, CERTBOT_FAILURE)
    assert remaining == ["a.example.com"]
    assert set(refused) == {"late.example.com", "other.example.com"}
    # every name refused, or a failure that names none: nothing to ask for again
    assert without_refused(["late.example.com"], CERTBOT_FAILURE)[0] == []
    assert without_refused(names, "Connection refused") == ([], {})


def test_state_round_trip(tmp_path: Path) -> None:
    state = AcmeState(("a.example.com",), {"b.example.com": "404"}, None, 10.0, 3610.0)
    assert AcmeState.from_json(state.to_json()) == state
    assert AcmeState.from_json({}) == AcmeState()


def test_status_while_self_signed() -> None:
    state = AcmeState(error="Connection refused", last_run=0.0, next_run=3600.0)
    lines = describe("letsencrypt", True, ["a.example.com"], "2030-01-01", state)
    assert lines == [
        "certificate: self-signed until the ACME server issues one (TLS_FLAVOR=letsencrypt)",
        "certificate: the last ACME run got none: Connection refused",
        "certificate: all HOSTNAMES tried again at 1970-01-01 01:00 UTC",
    ]
    assert describe("letsencrypt", True, ["a"], "2030-01-01", None)[1].startswith(
        "certificate: certbot has not run yet"
    )


def test_status_names_the_name_left_out() -> None:
    state = AcmeState(("a.example.com",), {"b.example.com": "no address"}, None, 0.0, 3600.0)
    lines = describe("mail-letsencrypt", False, ["a.example.com"], "2030-01-01", state)
    assert lines[:2] == [
        "certificate: from the ACME server, for a.example.com, valid until 2030-01-01",
        "certificate: b.example.com left out: no address",
    ]


def test_status_of_the_file_flavors_says_nothing_of_acme() -> None:
    assert describe("cert", True, ["a"], "2030-01-01", None) == [
        "certificate: self-signed (TLS_FLAVOR=cert: put your own in its place)"
    ]
    assert describe("mail", False, ["a"], "2030-01-01", None) == [
        "certificate: the administrator's, for a, valid until 2030-01-01"
    ]


@pytest.fixture()
def layout() -> Iterator[Layout]:
    with roost_root() as root:
        yield Layout(make_settings(root, ADDRESS, TLS_FLAVOR="letsencrypt"))


def test_a_self_signed_pair_serves_first_and_the_administrators_files_stay(
    layout: Layout,
) -> None:
    layout.certs.mkdir()
    layout.cert_file.write_text("the administrator's")
    messages = tls.ensure(layout)
    assert "until the ACME server issues one" in messages[0]
    pair = tls.served_pair(layout)
    assert pair == tls.CertificatePair(
        layout.acme / "cert.pem", layout.acme / "key.pem", layout.acme / "dane-chain.pem"
    )
    # Port 25's chain is the self-signed certificate too until certbot's arrives.
    assert pair.mx_cert_file.read_bytes() == pair.cert_file.read_bytes()
    assert stat.S_IMODE(os.stat(pair.key_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(layout.acme).st_mode) == 0o750
    assert layout.cert_file.read_text() == "the administrator's"
    assert tls.ensure(layout) == [], "made once"
    assert tls.describe_served(layout)[0].startswith("certificate: self-signed until")


def issued(paths: CertbotPaths, names: list[str], matching: bool = True) -> None:
    """What certbot leaves in live/roost/: a chain and its key (a wrong key if not matching)."""
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    )
    if not matching:
        key = ec.generate_private_key(ec.SECP256R1())
    paths.live_cert.parent.mkdir(parents=True, exist_ok=True)
    paths.live_cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    paths.live_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def test_a_new_certificate_is_installed_once(layout: Layout) -> None:
    tls.ensure(layout)
    paths = certbot_paths(layout)
    issued(paths, list(layout.settings.HOSTNAMES))
    checked = install(layout, paths)
    assert checked is not None and checked.warnings == ()
    source = Acme(layout)
    assert source.cert_file.read_bytes() == paths.live_cert.read_bytes()
    assert stat.S_IMODE(os.stat(source.key_file).st_mode) == 0o600
    assert install(layout, paths) is None, "nothing new"
    write_state(layout, AcmeState(layout.settings.HOSTNAMES, {}, None, 0.0, 43200.0))
    assert read_state(layout) is not None
    lines = tls.describe_served(layout)
    assert lines[0].startswith("certificate: from the ACME server, for mail.example.test")
    assert lines[1] == "certificate: next check at 1970-01-01 12:00 UTC"


def test_a_pair_that_fails_the_check_never_replaces_the_served_one(layout: Layout) -> None:
    tls.ensure(layout)
    served = Acme(layout).cert_file.read_bytes()
    paths = certbot_paths(layout)
    issued(paths, ["mail.example.test"], matching=False)
    with pytest.raises(tls.TLSError, match="does not match"):
        install(layout, paths)
    assert Acme(layout).cert_file.read_bytes() == served


def nginx_http(root: Path, flavor: str, **values: Any) -> tuple[list[str], list[str]]:
    layout = Layout(make_settings(root, ADDRESS, TLS_FLAVOR=flavor, **values))
    tls.ensure(layout)
    service = NginxService(layout)
    service.render()  # nginx -t accepts it
    http = block(service.conf.read_text(), "http {")
    plain = directives(block(http, "# HTTP"))
    secure = directives(block(http, "# HTTPS"))
    return plain, secure


def test_port_80_serves_certbots_tokens_and_redirects_the_rest(layout: Layout) -> None:
    plain, secure = nginx_http(layout.root, "letsencrypt")
    assert "location ^~ /.well-known/acme-challenge/ {" in plain
    assert f"root {layout.acme_webroot};" in plain
    assert "return 301 https://$host$request_uri;" in plain
    assert "location ^~ /.well-known/acme-challenge/ {" not in secure
    assert 'if ($http_x_forwarded_proto = "http") {' in secure


def test_the_mail_flavors_serve_port_80_as_443_without_a_redirect(layout: Layout) -> None:
    for flavor in ("mail", "mail-letsencrypt"):
        plain, secure = nginx_http(layout.root, flavor)
        assert "return 301 https://$host$request_uri;" not in plain
        assert f'include "{layout.overrides}/nginx/*.conf";' in plain, "the main server"
        assert 'if ($http_x_forwarded_proto = "http") {' not in secure
        acme = "location ^~ /.well-known/acme-challenge/ {" in plain
        assert acme is (flavor == "mail-letsencrypt")


def test_the_cert_flavor_has_no_acme_location(layout: Layout) -> None:
    plain, _ = nginx_http(layout.root, "cert")
    assert not any("acme-challenge" in line for line in plain)


def test_the_acme_process_runs_only_under_the_letsencrypt_flavors(layout: Layout) -> None:
    for flavor, wanted in (
        ("letsencrypt", True),
        ("mail-letsencrypt", True),
        ("cert", False),
        ("mail", False),
        ("notls", False),
    ):
        settings = make_settings(layout.root, ADDRESS, TLS_FLAVOR=flavor)
        assert AcmeService.enabled(settings) is wanted, flavor
    service = AcmeService(layout)
    service.render()
    assert stat.S_IMODE(os.stat(layout.acme_webroot).st_mode) == 0o755
    assert service.command()[1:] == ["-m", "roost.tls.acme"]
    assert service.after == ("nginx",)


def test_the_acme_flavors_need_port_80(layout: Layout) -> None:
    settings = make_settings(layout.root, ADDRESS, TLS_FLAVOR="letsencrypt", PORTS=(25, 443))
    with pytest.raises(ServiceConfigError, match="needs port 80 in PORTS"):
        AcmeService(Layout(settings)).render()


def test_renew_refuses_the_file_flavors_and_a_stack_that_is_not_running(tmp_path: Path) -> None:
    stack = make_stack(tmp_path / "cert", migrate=False)
    assert error_line(stack.roost("certificate", "renew")) == (
        "roost: error: TLS_FLAVOR=cert: no ACME certificate to renew (only letsencrypt and "
        "mail-letsencrypt get theirs from certbot)"
    )
    stack = make_stack(tmp_path / "acme", "TLS_FLAVOR=letsencrypt\n", migrate=False)
    lock = Layout(stack.settings).run / LOCK_NAME
    assert "`roost up` is not running for" in error_line(stack.roost("certificate", "renew"))
    assert not is_held(lock)
    runner = RunLock(lock)
    runner.acquire()
    try:
        assert is_held(lock)
    finally:
        runner.release()
    assert not is_held(lock)
