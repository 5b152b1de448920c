"""The one login decision over nginx's auth_http protocol (ngx_mail_auth_http_module)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from passlib import hash as passlib_hash
from sqlalchemy import select

from roost.gate.auth import AuthAnswer, AuthRequest, Gate
from roost.gate.control import request_reload
from roost.gate.index import Index
from roost.gate.limiter import AuthLimiter
from roost.settings import Settings
from roost.store.models import Domain, User
from tests.unit.test_gate_support import (
    ALTERNATIVE,
    DOMAIN,
    GateHarness,
    add_token,
    add_user,
    flush_limits,
    running_gate,
    settings_with,
)

JOE = f"joe@{DOMAIN}"
TOKEN = "0123456789abcdef0123456789abcdef"

# protocol, a port it is served on, bad-credentials code, rate-limited code (Mailu's codes)
PROTOCOLS = [
    ("imap", 993, "AUTHENTICATIONFAILED", "LIMIT"),
    ("smtp", 465, "535 5.7.8", "451 4.3.2"),
    ("submission", 587, "535 5.7.8", "451 4.3.2"),
    ("pop3", 995, "-ERR Authentication failed", "-ERR [LOGIN-DELAY] Retry later"),
    ("sieve", 4190, "AuthFailed", "AuthFailed"),
]
BADAUTH = "Authentication credentials invalid"
LIMITED = "Temporary authentication failure (rate-limit)"


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateHarness]:
    with running_gate(tmp_path_factory.mktemp("auth"), "127.0.4.2") as harness:
        add_token(harness.store, JOE, TOKEN)
        add_user(harness.store, f"pct@{DOMAIN}", "p%20 é+x:ü")
        request_reload(harness.layout)
        yield harness


@pytest.fixture(autouse=True)
def fresh_limits(gate: GateHarness, caplog: pytest.LogCaptureFixture) -> None:
    flush_limits(gate)
    caplog.set_level(logging.INFO, logger="roost.gate")


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "roost.gate"]


def exhaust_ip_budget(gate: GateHarness, prefix: str) -> None:
    """Five distinct unknown usernames from five addresses of one /24 (AUTH_RATELIMIT_IP)."""
    for n in range(5):
        answer = gate.auth(f"ghost{n}@{DOMAIN}", "guess", ip=f"{prefix}.{n + 1}")
        assert answer["Auth-Status"] == BADAUTH


def decide(gate: GateHarness, settings: Settings, *requests: AuthRequest) -> list[AuthAnswer]:
    """Run requests through a Gate built with other settings over the same store and Redis."""

    async def go() -> list[AuthAnswer]:
        index = Index(gate.store)
        await index.load()
        limiter = AuthLimiter(settings, gate.layout.redis_socket)
        decider = Gate(settings, index, limiter)
        try:
            return [await decider.decide(request) for request in requests]
        finally:
            await decider.close()
            await limiter.close()

    return asyncio.run(go())


def request(
    user: str = "",
    password: str = "",
    protocol: str = "imap",
    port: int = 993,
    ip: str = "192.0.2.10",
    method: str = "plain",
    ssl: bool = False,
) -> AuthRequest:
    return AuthRequest(method, user, password, protocol, port, ip, "40000", ssl)


# -- accepted logins ---------------------------------------------------------------------------


@pytest.mark.parametrize(("protocol", "port", "_bad", "_limit"), PROTOCOLS)
def test_good_login_answers_ok_with_the_canonical_address(
    gate: GateHarness,
    caplog: pytest.LogCaptureFixture,
    protocol: str,
    port: int,
    _bad: str,
    _limit: str,
) -> None:
    answer = gate.auth(f"JOE@{ALTERNATIVE}", "joe-secret", protocol, port)
    assert answer["Auth-Status"] == "OK"
    assert answer["Auth-User"] == JOE
    assert answer["Auth-User-Exists"] == "True"
    assert "Auth-Error-Code" not in answer
    assert "Auth-Server" not in answer  # the Dovecot that asked serves the session itself
    assert (
        f"Login attempt for: JOE@{ALTERNATIVE}/{protocol}/{port} from: 192.0.2.10/40000: "
        "success: password"
    ) in messages(caplog)


def test_passwords_and_users_are_percent_decoded(gate: GateHarness) -> None:
    answer = gate.auth(f"pct@{DOMAIN}", "p%20 é+x:ü")
    assert answer["Auth-Status"] == "OK"
    # '+' is not a space in a header (no form decoding): the literal password fails.
    assert gate.auth(f"pct@{DOMAIN}", "p%20 é x:ü")["Auth-Status"] == BADAUTH


def test_unauthenticated_mail_on_port_25_goes_to_postfix(gate: GateHarness) -> None:
    answer = gate.auth("", "", "smtp", 25, method="none")
    assert answer["Auth-Status"] == "OK"
    assert answer["Auth-Server"] == gate.address
    assert answer["Auth-Port"] == "10025"


# -- refused logins ----------------------------------------------------------------------------


@pytest.mark.parametrize(("protocol", "port", "code", "_limit"), PROTOCOLS)
def test_bad_credentials_per_protocol(
    gate: GateHarness,
    caplog: pytest.LogCaptureFixture,
    protocol: str,
    port: int,
    code: str,
    _limit: str,
) -> None:
    answer = gate.auth(JOE, "wrong", protocol, port)
    assert answer["Auth-Status"] == BADAUTH
    assert answer["Auth-Error-Code"] == code
    assert answer["Auth-Wait"] == "0"
    assert answer["Auth-User-Exists"] == "True"
    pattern = re.compile(
        rf"Login attempt for: {re.escape(JOE)}/{protocol}/{port} from: 192\.0\.2\.10/40000: "
        r"failed: badauth: [0-9a-f]{6}$"
    )
    assert any(pattern.match(m) for m in messages(caplog)), messages(caplog)


def test_unknown_user_fails_like_a_wrong_password(
    gate: GateHarness, caplog: pytest.LogCaptureFixture
) -> None:
    answer = gate.auth(f"nobody@{DOMAIN}", "whatever")
    assert answer["Auth-Status"] == BADAUTH
    assert answer["Auth-Error-Code"] == "AUTHENTICATIONFAILED"
    assert answer["Auth-User-Exists"] == "False"
    assert any(
        m.startswith(f"Login attempt for: nobody@{DOMAIN}/imap/993 from: 192.0.2.10/")
        and "failed: badauth: " in m
        for m in messages(caplog)
    )


def test_the_same_guess_gets_the_same_fingerprint(
    gate: GateHarness, caplog: pytest.LogCaptureFixture
) -> None:
    for password in ("guess-a", "guess-a", "guess-b"):
        gate.auth(f"nobody@{DOMAIN}", password, ip="198.51.100.20")
    prints = [m.rsplit(" ", 1)[1] for m in messages(caplog) if "badauth" in m]
    assert prints[0] == prints[1] != prints[2]
    assert not any("guess" in m for m in messages(caplog))


@pytest.mark.parametrize(
    ("user", "password", "protocol", "port"),
    [
        (f"off@{DOMAIN}", "off-secret", "imap", 993),
        (f"off@{DOMAIN}", "off-secret", "smtp", 465),
        (f"off@{DOMAIN}", "off-secret", "pop3", 995),
        (f"off@{DOMAIN}", "off-secret", "sieve", 4190),
        (f"noimap@{DOMAIN}", "noimap-secret", "imap", 993),
        (f"nopop@{DOMAIN}", "nopop-secret", "pop3", 995),
    ],
)
def test_switched_off_accounts_fail_like_a_wrong_password(
    gate: GateHarness,
    caplog: pytest.LogCaptureFixture,
    user: str,
    password: str,
    protocol: str,
    port: int,
) -> None:
    answer = gate.auth(user, password, protocol, port)
    wrong = gate.auth(user, "not-the-password", protocol, port)
    for key in ("Auth-Status", "Auth-Error-Code", "Auth-User-Exists", "Auth-Wait"):
        assert answer[key] == wrong[key]
    assert answer["Auth-Status"] == BADAUTH
    assert any("disabled" in m and "failed: badauth" in m for m in messages(caplog))


def test_protocol_switches_only_close_their_own_protocol(gate: GateHarness) -> None:
    assert gate.auth(f"noimap@{DOMAIN}", "noimap-secret", "pop3", 995)["Auth-Status"] == "OK"
    assert gate.auth(f"noimap@{DOMAIN}", "noimap-secret", "smtp", 465)["Auth-Status"] == "OK"
    assert gate.auth(f"nopop@{DOMAIN}", "nopop-secret", "imap", 993)["Auth-Status"] == "OK"


def test_auth_on_port_25_is_refused_and_spends_no_login_budget(
    gate: GateHarness, caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(8):
        answer = gate.auth(
            f"ghost{n}@{DOMAIN}", "guess", "smtp", 25, ip=f"192.0.2.{n + 1}", method="login"
        )
        assert answer["Auth-Status"] == "AUTH not supported"
        assert answer["Auth-Error-Code"] == "502 5.5.1"
        assert "Auth-Wait" not in answer  # nginx closes the session
    assert "AUTH attempt on port 25 from 192.0.2.1 refused" in messages(caplog)
    # Submission and IMAP logins from that network are not touched ...
    assert gate.auth(JOE, "joe-secret", "smtp", 0, ip="192.0.2.77")["Auth-Status"] == "OK"
    assert gate.auth(JOE, "joe-secret", ip="192.0.2.78")["Auth-Status"] == "OK"
    # ... and mail delivery from it goes through.
    assert gate.auth("", "", "smtp", 25, ip="192.0.2.77", method="none")["Auth-Status"] == "OK"


def test_other_methods_are_refused_without_counting(gate: GateHarness) -> None:
    for n in range(8):
        answer = gate.auth(f"ghost{n}@{DOMAIN}", "x", ip=f"192.0.2.{n + 1}", method="cram-md5")
        assert answer["Auth-Status"] == BADAUTH
    assert gate.auth(JOE, "joe-secret", ip="192.0.2.99")["Auth-Status"] == "OK"


def test_unknown_ports_are_logged_as_0(gate: GateHarness, caplog: pytest.LogCaptureFixture) -> None:
    """Postfix's SASL requests reach Dovecot without ports; its Lua then sends none."""
    headers = {
        "Auth-Method": "plain",
        "Auth-User": JOE,
        "Auth-Pass": "joe-secret",
        "Auth-Protocol": "smtp",
        "Client-Ip": "192.0.2.10",
    }
    status, answer, _body = gate.get("/auth/email", headers)
    assert status == 200 and answer["Auth-Status"] == "OK"
    assert f"Login attempt for: {JOE}/smtp/0 from: 192.0.2.10/0: success: password" in messages(
        caplog
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"Auth-Method": "plain", "Auth-Protocol": "imap", "Auth-Port": "993"},
        {"Auth-Method": "plain", "Auth-Protocol": "imap", "Auth-Port": "x", "Client-Ip": "1.2.3.4"},
        {
            "Auth-Method": "plain",
            "Auth-Protocol": "imap",
            "Auth-Port": "99999",
            "Client-Ip": "1.2.3.4",
        },
        {
            "Auth-Method": "plain",
            "Auth-Protocol": "gopher",
            "Auth-Port": "70",
            "Client-Ip": "1.2.3.4",
        },
        {
            "Auth-Method": "plain",
            "Auth-Protocol": "imap",
            "Auth-Port": "993",
            "Client-Ip": "not-an-ip",
        },
    ],
)
def test_a_request_missing_what_the_decision_needs_is_a_400(
    gate: GateHarness, headers: dict[str, str]
) -> None:
    status, _headers, _body = gate.get("/auth/email", headers)
    assert status == 400


def test_log_lines_cannot_be_forged_through_the_username(
    gate: GateHarness, caplog: pytest.LogCaptureFixture
) -> None:
    evil = "x\nLogin attempt for: y/imap/1 from: 203.0.113.66/1: failed: badauth: 000000"
    answer = gate.auth(evil, "pw", ip="198.51.100.30")
    assert answer["Auth-Status"] == BADAUTH
    assert "Auth-User" not in answer  # not echoed into a header either
    lines = [m for m in messages(caplog) if "Login attempt" in m]
    assert len(lines) == 1
    assert "\n" not in lines[0] and " from: 198.51.100.30/" in lines[0]
    assert "x\\x0aLogin\\x20attempt" in lines[0]


# -- rate limits -------------------------------------------------------------------------------


@pytest.mark.parametrize(("protocol", "port", "_bad", "code"), PROTOCOLS)
def test_distinct_failed_usernames_block_the_network_not_other_networks(
    gate: GateHarness,
    caplog: pytest.LogCaptureFixture,
    protocol: str,
    port: int,
    _bad: str,
    code: str,
) -> None:
    exhaust_ip_budget(gate, "192.0.2")
    answer = gate.auth(JOE, "joe-secret", protocol, port, ip="192.0.2.200")
    assert answer["Auth-Status"] == LIMITED
    assert answer["Auth-Error-Code"] == code
    assert "Authentication attempt from 192.0.2.200 has been rate-limited." in messages(caplog)
    assert gate.auth(JOE, "joe-secret", protocol, port, ip="198.51.100.7")["Auth-Status"] == "OK"


def test_the_same_username_failing_again_does_not_count_twice(gate: GateHarness) -> None:
    for n in range(10):
        gate.auth(f"ghost@{DOMAIN}", f"guess-{n}", ip=f"192.0.2.{n + 1}")
    assert gate.auth(JOE, "joe-secret", ip="192.0.2.99")["Auth-Status"] == "OK"


def test_distinct_wrong_passwords_block_the_user(
    gate: GateHarness, caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(3):  # AUTH_RATELIMIT_USER is 3/day in these tests
        assert gate.auth(JOE, f"wrong-{n}", ip=f"198.51.100.{n + 1}")["Auth-Status"] == BADAUTH
    answer = gate.auth(JOE, "joe-secret", "smtp", 465, ip="203.0.113.9")
    assert answer["Auth-Status"] == f"{LIMITED}. An app token works from anywhere."
    assert answer["Auth-Error-Code"] == "451 4.3.2"
    assert (
        f"Authentication attempt from 203.0.113.9 for {JOE} has been rate-limited. "
        "An app token works from anywhere."
    ) in messages(caplog)
    # Other users are not affected.
    assert gate.auth(f"nopop@{DOMAIN}", "nopop-secret", ip="203.0.113.9")["Auth-Status"] == "OK"


def test_repeating_one_wrong_password_counts_once(gate: GateHarness) -> None:
    for n in range(6):
        gate.auth(JOE, "same-wrong", ip=f"198.51.100.{n + 1}")
    assert gate.auth(JOE, "joe-secret", ip="203.0.113.10")["Auth-Status"] == "OK"


def test_app_tokens_are_not_rate_limited(
    gate: GateHarness, caplog: pytest.LogCaptureFixture
) -> None:
    exhaust_ip_budget(gate, "192.0.2")
    for n in range(3):
        gate.auth(JOE, f"wrong-{n}", ip=f"198.51.100.{n + 1}")
    assert gate.auth(JOE, "joe-secret", ip="192.0.2.50")["Auth-Status"].startswith(LIMITED)
    # Looking like a token is not enough.
    assert gate.auth(JOE, "f" * 32, ip="192.0.2.51")["Auth-Status"] == LIMITED
    answer = gate.auth(JOE, TOKEN, "smtp", 465, ip="192.0.2.50")
    assert answer["Auth-Status"] == "OK"
    assert answer["Auth-User"] == JOE
    assert any(m.endswith("success: token-1") for m in messages(caplog))


def test_a_good_login_trusts_the_network_for_that_account_only(gate: GateHarness) -> None:
    assert gate.auth(JOE, "joe-secret", ip="203.0.113.5")["Auth-Status"] == "OK"
    for n in range(8):
        gate.auth(f"ghost{n}@{DOMAIN}", "guess", ip="203.0.113.5")
    # Joe still logs in from there, from the same address and from a new one nearby ...
    assert gate.auth(JOE, "joe-secret", ip="203.0.113.5")["Auth-Status"] == "OK"
    assert gate.auth(JOE, "joe-secret", ip="203.0.113.6")["Auth-Status"] == "OK"
    # ... but the shared address guessed at other accounts, and that is limited.
    other = gate.auth(f"nopop@{DOMAIN}", "nopop-secret", ip="203.0.113.5")
    assert other["Auth-Status"] == LIMITED
    # Without the trust the same failures block the network for Joe too.
    for n in range(5):
        gate.auth(f"ghost{n}@{DOMAIN}", "guess", ip="198.18.0.5")
    assert gate.auth(JOE, "joe-secret", ip="198.18.0.5")["Auth-Status"] == LIMITED


def test_accepted_mail_on_port_25_does_not_exempt(gate: GateHarness) -> None:
    assert gate.auth("", "", "smtp", 25, ip="198.18.1.1", method="none")["Auth-Status"] == "OK"
    for n in range(5):
        gate.auth(f"ghost{n}@{DOMAIN}", "guess", ip="198.18.1.1")
    assert gate.auth(JOE, "joe-secret", ip="198.18.1.1")["Auth-Status"] == LIMITED


def test_exemption_networks_are_never_limited(gate: GateHarness) -> None:
    settings = settings_with(gate.settings, AUTH_RATELIMIT_EXEMPTION=("192.0.2.0/24",))
    failures = [request(f"ghost{n}@{DOMAIN}", "x", ip=f"192.0.2.{n + 1}") for n in range(8)]
    answers = decide(gate, settings, *failures, request(JOE, "joe-secret", ip="192.0.2.99"))
    assert answers[-1].status == "OK"
    # The default settings would have blocked it.
    answers = decide(gate, gate.settings, *failures, request(JOE, "joe-secret", ip="192.0.2.99"))
    assert answers[-1].status == LIMITED


# -- settings ------------------------------------------------------------------------------------


def test_inbound_tls_enforce_requires_starttls_on_port_25(gate: GateHarness) -> None:
    settings = settings_with(gate.settings, INBOUND_TLS_ENFORCE=True)
    plain, tls = decide(
        gate,
        settings,
        request(protocol="smtp", port=25, method="none"),
        request(protocol="smtp", port=25, method="none", ssl=True),
    )
    assert (plain.status, plain.error_code, plain.wait) == (
        "Must issue a STARTTLS command first",
        "530 5.7.0",
        0,
    )
    assert tls.ok and tls.port == 10025


def test_proxy_protocol_on_25_refuses_mail_a_proxy_names_as_loopback(gate: GateHarness) -> None:
    """A client named 127.0.0.1 or ::1 would relay as local; others pass as before."""
    proxied = settings_with(gate.settings, PROXY_PROTOCOL=(25,), REAL_IP_FROM=("192.0.2.10/32",))
    answers = decide(
        gate,
        proxied,
        request(protocol="smtp", port=25, method="none", ip="127.0.0.1"),
        request(protocol="smtp", port=25, method="none", ip="::1"),
        request(protocol="smtp", port=25, method="none", ip="198.51.100.7"),
    )
    assert [(a.status, a.error_code) for a in answers[:2]] == [
        ("Mail from a loopback address through the proxy refused", "550 5.7.1")
    ] * 2
    assert answers[2].ok and answers[2].port == 10025
    # Without the PROXY protocol on 25 a loopback client is a local one.
    (local,) = decide(
        gate, gate.settings, request(protocol="smtp", port=25, method="none", ip="127.0.0.1")
    )
    assert local.ok


# -- hash upgrades -------------------------------------------------------------------------------


def test_a_legacy_hash_is_upgraded_after_a_good_login(
    gate: GateHarness, caplog: pytest.LogCaptureFixture
) -> None:
    legacy = passlib_hash.sha512_crypt.using(rounds=1000).hash("legacy-secret")
    add_user(gate.store, f"legacy@{DOMAIN}", "", password_hash="{SHA512-CRYPT}" + legacy)
    request_reload(gate.layout)
    assert gate.auth(f"legacy@{DOMAIN}", "legacy-secret", ip="203.0.113.40")["Auth-Status"] == "OK"

    def stored() -> str:
        with gate.store.session() as session:
            return session.scalar(select(User.password).where(User.email == f"legacy@{DOMAIN}"))

    deadline = time.monotonic() + 10
    while not stored().startswith("$argon2id$"):
        assert time.monotonic() < deadline, "the hash was not upgraded"
        time.sleep(0.05)
    assert gate.auth(f"legacy@{DOMAIN}", "legacy-secret", ip="203.0.113.40")["Auth-Status"] == "OK"
    wrong = gate.auth(f"legacy@{DOMAIN}", "legacy-wrong", ip="203.0.113.40")
    assert wrong["Auth-Status"] == BADAUTH


def test_answer_headers_follow_the_auth_http_order() -> None:
    answer = AuthAnswer(BADAUTH, "535 5.7.8", user="a@b", user_exists=False, wait=0)
    assert [name for name, _ in answer.headers()] == [
        "Auth-Status",
        "Auth-User",
        "Auth-User-Exists",
        "Auth-Error-Code",
        "Auth-Wait",
    ]
    injected: Any = AuthAnswer(BADAUTH, user="a@b\r\nAuth-Status: OK")
    assert [name for name, _ in injected.headers()] == ["Auth-Status"]


# -- two-factor login --------------------------------------------------------------------------

TWOFA = f"twofa@{DOMAIN}"
TWOFA_TOKEN = "fedcba9876543210fedcba9876543210"
ENFORCED_DOMAIN = "enforced.test"


@pytest.fixture(scope="module")
def two_factor_users(gate: GateHarness) -> None:
    """twofa@ has two-factor login on and an app token; enforced.test requires it."""
    add_user(gate.store, TWOFA, "twofa-secret", totp_enabled=True, totp_secret="v1:sealed")
    add_token(gate.store, TWOFA, TWOFA_TOKEN)
    with gate.store.session() as session:
        session.add(Domain(name=ENFORCED_DOMAIN, totp_required=True))
    add_user(gate.store, f"new@{ENFORCED_DOMAIN}", "new-secret")
    request_reload(gate.layout)


@pytest.mark.parametrize(("protocol", "port", "code", "_limit"), PROTOCOLS)
def test_two_factor_user_password_is_refused_on_mail_protocols_and_a_token_works(
    gate: GateHarness,
    two_factor_users: None,
    caplog: pytest.LogCaptureFixture,
    protocol: str,
    port: int,
    code: str,
    _limit: str,
) -> None:
    refused = gate.auth(TWOFA, "twofa-secret", protocol, port)
    assert (refused["Auth-Status"], refused["Auth-Error-Code"]) == (BADAUTH, code)
    assert any(
        m.startswith(f"Login attempt for: {TWOFA}/{protocol}/{port} ")
        and m.endswith("(password refused: two-factor login is on, an app token is needed)")
        for m in messages(caplog)
    ), messages(caplog)
    accepted = gate.auth(TWOFA, TWOFA_TOKEN, protocol, port)
    assert (accepted["Auth-Status"], accepted["Auth-User"]) == ("OK", TWOFA)
    assert "Auth-2FA" not in accepted


def test_a_refused_two_factor_password_answers_like_a_wrong_one(
    gate: GateHarness, two_factor_users: None
) -> None:
    right = gate.auth(TWOFA, "twofa-secret")
    wrong = gate.auth(TWOFA, "not-the-password")
    for key in ("Auth-Status", "Auth-Error-Code", "Auth-User-Exists", "Auth-Wait"):
        assert right[key] == wrong[key]


def test_the_admin_may_allow_passwords_on_mail_protocols_with_two_factor(
    gate: GateHarness, two_factor_users: None
) -> None:
    allowed = settings_with(gate.settings, AUTH_TOTP_MAIL_PASSWORDS=True)
    imap, web = decide(
        gate,
        allowed,
        request(TWOFA, "twofa-secret", "imap", 993),
        request(TWOFA, "twofa-secret", "web", 443),
    )
    assert imap.ok and imap.second_factor is None
    assert web.ok and web.second_factor == "required"  # the web still asks for the code


def test_a_web_password_is_only_the_first_step_for_a_two_factor_user(
    gate: GateHarness, two_factor_users: None, caplog: pytest.LogCaptureFixture
) -> None:
    answer = gate.auth(TWOFA, "twofa-secret", "web", 443)
    assert (answer["Auth-Status"], answer["Auth-User"]) == ("OK", TWOFA)
    assert answer["Auth-2FA"] == "required"
    assert (
        f"Login attempt for: {TWOFA}/web/443 from: 192.0.2.10/40000: second factor: required"
        in (messages(caplog))
    )
    # An app token is no way round the second step: it does not open the web at all.
    assert gate.auth(TWOFA, TWOFA_TOKEN, "web", 443)["Auth-Status"] == BADAUTH
    assert gate.auth(TWOFA, "wrong", "web", 443).get("Auth-2FA") is None


def test_web_logins_under_enforcement_must_enrol(gate: GateHarness, two_factor_users: None) -> None:
    enforced = gate.auth(f"new@{ENFORCED_DOMAIN}", "new-secret", "web", 443)
    assert (enforced["Auth-Status"], enforced["Auth-2FA"]) == ("OK", "enrol")
    # Mail protocols keep the password until the user has enrolled.
    assert gate.auth(f"new@{ENFORCED_DOMAIN}", "new-secret")["Auth-Status"] == "OK"
    assert "Auth-2FA" not in gate.auth(JOE, "joe-secret", "web", 443)
    (everyone,) = decide(
        gate,
        settings_with(gate.settings, AUTH_REQUIRE_TOTP=True),
        request(JOE, "joe-secret", "web"),
    )
    assert everyone.ok and everyone.second_factor == "enrol"


def test_the_second_factor_header_follows_the_others() -> None:
    answer = AuthAnswer("OK", user="a@b", user_exists=True, second_factor="required")
    assert answer.headers()[-1] == ("Auth-2FA", "required")
