"""The gate's HTTP Basic endpoint (``/auth/basic``), nginx's auth_request for WEBDAV.

A real gate (store, Redis, limiter) answers; the requests are the ones nginx's
``webdav.conf.j2`` sends: the client's ``Authorization`` header and nginx's own
``Auth-Protocol``, ``Auth-Port``, ``Client-Ip`` and ``Client-Port``.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterator

import pytest

from roost.gate.control import request_reload
from roost.gate.routes import basic_credentials
from tests.unit.test_gate_support import (
    ALTERNATIVE,
    DOMAIN,
    GateHarness,
    add_token,
    add_user,
    flush_limits,
    running_gate,
)

JOE = f"joe@{DOMAIN}"
TOKEN = "fedcba9876543210fedcba9876543210"
TWOFA = f"twofa@{DOMAIN}"
TWOFA_TOKEN = "00112233445566778899aabbccddeeff"
BADAUTH_LINE = re.compile(
    r"Login attempt for: (\S+)/webdav/443 from: 192\.0\.2\.\d+/40000: failed: badauth: [0-9a-f]{6}"
)


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateHarness]:
    with running_gate(tmp_path_factory.mktemp("basic"), "127.0.50.60") as harness:
        add_token(harness.store, JOE, TOKEN)
        add_user(harness.store, TWOFA, "twofa-secret", totp_enabled=True)
        add_token(harness.store, TWOFA, TWOFA_TOKEN)
        request_reload(harness.layout)
        yield harness


@pytest.fixture(autouse=True)
def fresh_limits(gate: GateHarness, caplog: pytest.LogCaptureFixture) -> None:
    flush_limits(gate)
    caplog.set_level(logging.INFO, logger="roost.gate")


def encoded(user: str | bytes, password: str | bytes) -> str:
    raw = (user if isinstance(user, bytes) else user.encode()) + b":"
    raw += password if isinstance(password, bytes) else password.encode()
    return "Basic " + base64.b64encode(raw).decode()


def basic(
    gate: GateHarness, authorization: str | None, ip: str = "192.0.2.10", **extra: str
) -> tuple[int, dict[str, str]]:
    headers = {
        "Auth-Protocol": "webdav",
        "Auth-Port": "443",
        "Client-Ip": ip,
        "Client-Port": "40000",
        **extra,
    }
    if authorization is not None:
        headers["Authorization"] = authorization
    status, answer, _ = gate.get("/auth/basic", headers)
    return status, answer


def gate_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "roost.gate"]


def test_a_good_password_names_the_canonical_address(gate: GateHarness) -> None:
    status, answer = basic(gate, encoded(f"JOE@{ALTERNATIVE}", "joe-secret"))
    assert status == 200
    assert answer["Auth-User"] == JOE
    assert "WWW-Authenticate" not in answer


def test_an_app_token_opens_it_too(gate: GateHarness) -> None:
    status, answer = basic(gate, encoded(JOE, TOKEN))
    assert (status, answer["Auth-User"]) == (200, JOE)


def test_with_two_factor_login_only_an_app_token_opens_it(
    gate: GateHarness, caplog: pytest.LogCaptureFixture
) -> None:
    status, answer = basic(gate, encoded(TWOFA, "twofa-secret"))
    assert status == 401 and "Auth-User" not in answer
    assert any("two-factor login is on" in line for line in gate_lines(caplog))
    assert basic(gate, encoded(TWOFA, TWOFA_TOKEN))[0] == 200


def test_a_wrong_password_is_a_challenge_and_a_fail2ban_line(
    gate: GateHarness, caplog: pytest.LogCaptureFixture
) -> None:
    status, answer = basic(gate, encoded(JOE, "not-joes"))
    assert status == 401
    assert answer["WWW-Authenticate"] == 'Basic realm="Login Required", charset="UTF-8"'
    assert "Auth-User" not in answer
    matches = [BADAUTH_LINE.search(line) for line in gate_lines(caplog)]
    assert [m.group(1) for m in matches if m] == [JOE]


def test_wrong_logins_spend_the_network_budget_like_every_login(
    gate: GateHarness, caplog: pytest.LogCaptureFixture
) -> None:
    # AUTH_RATELIMIT_IP (5/hour): five names that are no account, from one /24.
    for n in range(5):
        assert basic(gate, encoded(f"ghost{n}@{DOMAIN}", "guess"), ip=f"192.0.2.{n + 1}")[0] == 401
    status, answer = basic(gate, encoded(JOE, "joe-secret"), ip="192.0.2.77")
    assert status == 401
    assert "rate-limit" in answer["WWW-Authenticate"]
    assert any("has been rate-limited" in line for line in gate_lines(caplog))
    # An app token still works from there (it is never rate-limited when it matches).
    assert basic(gate, encoded(JOE, TOKEN), ip="192.0.2.77")[0] == 200
    # Another network is not touched.
    assert basic(gate, encoded(JOE, "joe-secret"), ip="198.51.100.7")[0] == 200


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer abc",
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon-here").decode(),
        "Basic " + base64.b64encode(b":password-without-user").decode(),
    ],
)
def test_no_or_unreadable_credentials_are_a_challenge_not_a_failed_login(
    gate: GateHarness, caplog: pytest.LogCaptureFixture, authorization: str | None
) -> None:
    status, answer = basic(gate, authorization)
    assert status == 401
    assert answer["WWW-Authenticate"].startswith('Basic realm="Login Required"')
    assert not any("Login attempt" in line for line in gate_lines(caplog))


def test_bytes_that_are_not_utf8_never_match_and_do_not_crash(gate: GateHarness) -> None:
    assert basic(gate, encoded(JOE.encode(), b"joe-secret\xff"))[0] == 401
    assert basic(gate, encoded(b"\xffjoe@" + DOMAIN.encode(), b"joe-secret"))[0] == 401
    assert basic(gate, encoded(JOE, "joe-secret"))[0] == 200


def test_the_mail_protocols_survive_such_bytes_as_well(gate: GateHarness) -> None:
    """The same decision behind nginx's and Dovecot's auth_http: percent-encoded bytes that
    are not UTF-8 in the user name are a refusal, not a 500 (a temporary failure)."""
    answer = gate.auth("x", "joe-secret", **{"Auth-User": "%FFjoe%40" + DOMAIN})
    assert answer["Auth-Status"] == "Authentication credentials invalid"


def test_headers_a_client_slips_in_are_not_read(gate: GateHarness) -> None:
    status, answer = basic(
        gate,
        encoded(JOE, "not-joes"),
        **{"Auth-User": JOE, "Auth-Pass": "joe-secret", "Auth-Second-Factor": "passed"},
    )
    assert status == 401 and "Auth-User" not in answer


@pytest.mark.parametrize(
    "headers",
    [
        {"Auth-Protocol": "imap"},
        {"Auth-Protocol": ""},
        {"Client-Ip": ""},
        {"Client-Ip": "not-an-address"},
        {"Auth-Port": "99999"},
    ],
)
def test_a_request_nginx_would_not_send_is_a_400(
    gate: GateHarness, headers: dict[str, str]
) -> None:
    status, _ = basic(gate, encoded(JOE, "joe-secret"), **headers)
    assert status == 400


def test_basic_credentials_reads_rfc7617() -> None:
    assert basic_credentials(encoded("a@b.test", "p:w é")) == ("a@b.test", "p:w é")
    assert basic_credentials("basic " + base64.b64encode(b"u:").decode()) == ("u", "")
    assert basic_credentials("Digest username=x") is None
