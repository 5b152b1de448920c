"""The gate's Postfix socketmap (socketmap_table(5)) and its control socket, over real sockets."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from roost.gate.control import GateControlError, request_reload
from roost.gate.socketmap import MAX_REQUEST
from roost.layout import Layout
from tests.unit.test_gate_support import (
    ALTERNATIVE,
    DOMAIN,
    GateHarness,
    add_alias,
    add_user,
    flush_limits,
    make_settings,
    netstring,
    read_netstrings,
    running_gate,
)


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateHarness]:
    with running_gate(tmp_path_factory.mktemp("sm"), "127.0.4.1") as harness:
        yield harness


def closed(sock: socket.socket) -> bool:
    """True when the server closed the connection (EOF on read)."""
    sock.settimeout(5)
    return sock.recv(1) == b""


# -- framing ---------------------------------------------------------------------------------


def test_many_requests_on_one_connection_and_in_one_packet(gate: GateHarness) -> None:
    with gate.socketmap_connection() as sock:
        for _ in range(50):  # Postfix keeps its connection and reuses it
            sock.sendall(netstring(b"domain " + DOMAIN.encode()))
            assert read_netstrings(sock, 1) == [b"OK " + DOMAIN.encode()]
        packet = (
            netstring(b"domain " + DOMAIN.encode())
            + netstring(b"domain nowhere.test")
            + netstring(f"mailbox joe@{DOMAIN}".encode())
        )
        sock.sendall(packet)
        assert read_netstrings(sock, 3) == [
            b"OK " + DOMAIN.encode(),
            b"NOTFOUND ",
            f"OK joe@{DOMAIN}".encode(),
        ]


def test_a_request_split_across_packets_is_answered_once_complete(gate: GateHarness) -> None:
    request = netstring(f"alias team@{DOMAIN}".encode()) + netstring(b"domain other.test")
    with gate.socketmap_connection() as sock:
        for cut in (1, 2, 3, 10, len(request) - 1):
            sock.sendall(request[:cut])
            time.sleep(0.02)  # the server sees the first part on its own
            sock.sendall(request[cut:])
            assert read_netstrings(sock, 2) == [
                f"OK fwd@{DOMAIN},joe@{DOMAIN}".encode(),
                b"OK other.test",
            ]


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        (b"%d:" % (MAX_REQUEST + 1), b"PERM request too large"),
        (b"1234567:", b"PERM request too large"),
        (b"abc:domain x,", b"PERM malformed netstring"),
        (b":domain x,", b"PERM malformed netstring"),
        (b"8:domain x;", b"PERM malformed netstring"),
        (b"-1:x,", b"PERM malformed netstring"),
    ],
)
def test_a_broken_netstring_is_refused_and_the_connection_closed(
    gate: GateHarness, garbage: bytes, reason: bytes
) -> None:
    with gate.socketmap_connection() as sock:
        sock.sendall(netstring(b"domain " + DOMAIN.encode()) + garbage)
        assert read_netstrings(sock, 2) == [b"OK " + DOMAIN.encode(), reason]
        assert closed(sock)
    # The server itself keeps serving.
    assert gate.lookup("domain", DOMAIN) == f"OK {DOMAIN}"


def test_the_largest_request_is_still_answered(gate: GateHarness) -> None:
    key = b"x" * (MAX_REQUEST - len(b"mailbox ") - len(b"@example.test")) + b"@example.test"
    payload = b"mailbox " + key
    assert len(payload) == MAX_REQUEST
    assert gate.lookup("mailbox", key) == "NOTFOUND "


def test_a_request_without_a_key_is_perm_but_the_connection_stays(gate: GateHarness) -> None:
    with gate.socketmap_connection() as sock:
        sock.sendall(netstring(b"domain") + netstring(b"domain " + DOMAIN.encode()))
        first, second = read_netstrings(sock, 2)
        assert first.startswith(b"PERM ")
        assert second == b"OK " + DOMAIN.encode()


def test_unknown_map_is_temp_like_podop(gate: GateHarness) -> None:
    assert gate.lookup("virtual", f"joe@{DOMAIN}") == "TEMP no such map"


def test_a_client_that_disconnects_mid_request_does_not_hurt(gate: GateHarness) -> None:
    with gate.socketmap_connection() as sock:
        sock.sendall(b"20:domain exa")
    assert gate.lookup("domain", DOMAIN) == f"OK {DOMAIN}"


# -- the maps ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key", "answer"),
    [
        ("domain", DOMAIN, f"OK {DOMAIN}"),
        ("domain", ALTERNATIVE, f"OK {ALTERNATIVE}"),
        ("domain", "EXAMPLE.TEST", "OK EXAMPLE.TEST"),
        ("domain", "remote.test", "NOTFOUND "),
        ("domain", "[192.0.2.1]", "NOTFOUND "),
        ("mailbox", f"joe@{DOMAIN}", f"OK joe@{DOMAIN}"),
        ("mailbox", f"Joe@{ALTERNATIVE}", f"OK joe@{DOMAIN}"),
        ("mailbox", f"off@{DOMAIN}", f"OK off@{DOMAIN}"),  # refused by recipientaccess
        ("mailbox", f"nobody@{DOMAIN}", "NOTFOUND "),
        ("alias", f"joe@{DOMAIN}", f"OK joe@{DOMAIN}"),
        ("alias", f"joe+box@{DOMAIN}", f"OK joe+box@{DOMAIN}"),
        ("alias", f"team@{DOMAIN}", f"OK fwd@{DOMAIN},joe@{DOMAIN}"),
        ("alias", f"team+x@{DOMAIN}", f"OK fwd+x@{DOMAIN},joe+x@{DOMAIN}"),
        ("alias", f"fwd@{DOMAIN}", "OK far@remote.test"),
        ("alias", "anything@other.test", f"OK joe@{DOMAIN}"),
        ("alias", DOMAIN, f"OK {DOMAIN}"),
        ("alias", f"nobody@{DOMAIN}", "NOTFOUND "),
        ("alias", "someone@remote.test", "NOTFOUND "),
        ("transport", "relayed.test", "OK smtp:[mx.relayed.test]:2525"),
        ("transport", "a@relayed.test", "OK smtp:[mx.relayed.test]:2525"),
        ("transport", f"joe@{DOMAIN}", "NOTFOUND "),
        ("transport", "*", "NOTFOUND "),
        ("senderlogin", f"joe@{DOMAIN}", f"OK joe@{DOMAIN},wild@example.test"),
        ("senderlogin", f"joe+tag@{DOMAIN}", f"OK joe@{DOMAIN},wild@example.test"),
        ("senderlogin", f"team@{DOMAIN}", f"OK fwd@{DOMAIN},joe@{DOMAIN},wild@example.test"),
        ("senderlogin", f"fwd@{DOMAIN}", f"OK far@remote.test,fwd@{DOMAIN},wild@example.test"),
        ("senderlogin", "stranger@remote.test", "OK wild@example.test"),
        ("recipientaccess", f"off@{DOMAIN}", "OK 550 5.2.1 Mailbox disabled"),
        ("recipientaccess", f"Off+x@{ALTERNATIVE}", "OK 550 5.2.1 Mailbox disabled"),
        ("recipientaccess", f"joe@{DOMAIN}", "NOTFOUND "),
        ("recipientaccess", f"team@{DOMAIN}", "NOTFOUND "),
        ("recipientaccess", DOMAIN, "NOTFOUND "),
        ("sendermap", f"joe@{DOMAIN}", "NOTFOUND "),  # our own domains keep their address
        ("sendermap", f"joe@{ALTERNATIVE}", "NOTFOUND "),
        ("sendermap", "@remote.test", "NOTFOUND "),
        ("sendermap", "remote.test", "NOTFOUND "),
        ("recipientmap", f"joe@{DOMAIN}", "NOTFOUND "),
        ("recipientmap", f"SRS0=AAAA=JQ=remote.test=someone@{DOMAIN}", "NOTFOUND "),
    ],
)
def test_map_answers(gate: GateHarness, name: str, key: str, answer: str) -> None:
    assert gate.lookup(name, key) == answer


def test_foreign_senders_are_srs_rewritten_and_bounces_reversed(gate: GateHarness) -> None:
    answer = gate.lookup("sendermap", "Someone@remote.test")
    assert answer.startswith("OK SRS0=") and answer.endswith(f"=remote.test=Someone@{DOMAIN}")
    srs = answer.removeprefix("OK ")
    assert gate.lookup("recipientmap", srs) == "OK Someone@remote.test"
    # Postfix may hand the key over in lower case; the hash still holds.
    assert gate.lookup("recipientmap", srs.lower()) == "OK someone@remote.test"
    # Only SRS addresses of our own domains are reversed.
    assert gate.lookup("recipientmap", srs.replace(DOMAIN, "remote.test")) == "NOTFOUND "
    # A sender that is itself someone else's SRS0 becomes SRS1, bouncing to them.
    hop = gate.lookup("sendermap", "SRS0=abcd=XY=first.test=bob@hop.test")
    assert hop.startswith("OK SRS1=")
    assert hop.endswith(f"=hop.test==abcd=XY=first.test=bob@{DOMAIN}")
    assert gate.lookup("recipientmap", hop[3:]) == "OK SRS0=abcd=XY=first.test=bob@hop.test"


def test_an_alias_of_only_disabled_users_is_refused(gate: GateHarness) -> None:
    add_alias(gate.store, f"offteam@{DOMAIN}", [f"off@{DOMAIN}"])
    add_alias(gate.store, f"mixed@{DOMAIN}", [f"off@{DOMAIN}", f"joe@{DOMAIN}"])
    request_reload(gate.layout)
    assert gate.lookup("recipientaccess", f"offteam@{DOMAIN}") == ("OK 550 5.2.1 Mailbox disabled")
    assert gate.lookup("alias", f"offteam@{DOMAIN}") == "NOTFOUND "
    assert gate.lookup("recipientaccess", f"mixed@{DOMAIN}") == "NOTFOUND "
    assert gate.lookup("alias", f"mixed@{DOMAIN}") == f"OK joe@{DOMAIN}"


def test_a_relay_that_cannot_be_parsed_defers_and_is_logged(
    gate: GateHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="roost.gate")
    assert gate.lookup("transport", "x@broken.test").startswith("TEMP ")
    assert any(
        "broken.test" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records
    )


@pytest.mark.parametrize(
    "key",
    [
        b"a@b@example.test",
        b'"joe"@example.test',
        b"joe\xff@example.test",
        b"\xc3\x28@example.test",
        b"joe\x00@example.test",
        b"joe,team@example.test",
        b"",
    ],
)
@pytest.mark.parametrize("name", ["alias", "mailbox", "senderlogin"])
def test_malformed_keys_are_notfound_and_logged(
    gate: GateHarness, caplog: pytest.LogCaptureFixture, name: str, key: bytes
) -> None:
    caplog.set_level(logging.INFO, logger="roost.gate")
    with gate.socketmap_connection() as sock:
        sock.sendall(netstring(name.encode() + b" " + key) + netstring(b"domain example.test"))
        assert read_netstrings(sock, 2) == [b"NOTFOUND ", b"OK example.test"]
    assert any(
        r.levelno == logging.INFO
        and "key" in r.getMessage()
        and repr(key)[2:-1][:8] in r.getMessage()
        for r in caplog.records
    )


# -- the message rate limit (check_sasl_access, Mailu's senderrate) ------------------------------

RATE_LIMITED = "OK 450 4.2.1 You are sending too many emails too fast."


@pytest.fixture(scope="module")
def limited_gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateHarness]:
    with running_gate(
        tmp_path_factory.mktemp("rate"),
        "127.0.4.20",
        MESSAGE_RATELIMIT="2/hour",
        MESSAGE_RATELIMIT_EXEMPTION=(f"noimap@{ALTERNATIVE}",),
    ) as harness:
        yield harness


def test_each_lookup_is_one_message_and_the_third_is_refused(limited_gate: GateHarness) -> None:
    flush_limits(limited_gate)
    assert limited_gate.lookup("senderrate", f"joe@{DOMAIN}") == "NOTFOUND "
    # The same login in another spelling shares the budget.
    assert limited_gate.lookup("senderrate", f"JOE@{ALTERNATIVE}") == "NOTFOUND "
    assert limited_gate.lookup("senderrate", f"joe@{DOMAIN}") == RATE_LIMITED
    assert limited_gate.lookup("senderrate", f"joe@{DOMAIN}") == RATE_LIMITED
    # Other logins have budgets of their own; refusals took no place in joe's window.
    assert limited_gate.lookup("senderrate", f"fwd@{DOMAIN}") == "NOTFOUND "
    client = redis.Redis(unix_socket_path=str(limited_gate.layout.redis_socket), db=2)
    try:
        assert client.llen(f"LIMITER/sender/joe@{DOMAIN}/2/3600") == 2
    finally:
        client.close()


def test_unknown_and_exempt_logins_are_never_limited(limited_gate: GateHarness) -> None:
    flush_limits(limited_gate)
    for _ in range(4):
        assert limited_gate.lookup("senderrate", f"nobody@{DOMAIN}") == "NOTFOUND "
        assert limited_gate.lookup("senderrate", f"noimap@{DOMAIN}") == "NOTFOUND "


def test_rate_answers_keep_request_order_among_ready_ones(limited_gate: GateHarness) -> None:
    flush_limits(limited_gate)
    requests = [
        b"senderrate nopop@" + DOMAIN.encode(),
        b"domain " + DOMAIN.encode(),
        b"senderrate nopop@" + DOMAIN.encode(),
        b"mailbox joe@" + DOMAIN.encode(),
        b"senderrate nopop@" + DOMAIN.encode(),
    ]
    with limited_gate.socketmap_connection() as sock:
        sock.sendall(b"".join(netstring(r) for r in requests))
        sock.sendall(netstring(b"domain other.test"))
        assert read_netstrings(sock, 6) == [
            b"NOTFOUND ",
            b"OK " + DOMAIN.encode(),
            b"NOTFOUND ",
            f"OK joe@{DOMAIN}".encode(),
            RATE_LIMITED.encode(),
            b"OK other.test",
        ]
        # A framing error after a waiting answer still comes last, then the connection ends.
        sock.sendall(netstring(b"senderrate nopop@" + DOMAIN.encode()) + b"x:")
        assert read_netstrings(sock, 2) == [RATE_LIMITED.encode(), b"PERM malformed netstring"]
        assert closed(sock)


def test_rate_limits_fall_back_to_memory_without_redis(tmp_path: Path) -> None:
    with running_gate(tmp_path, "127.0.4.21", redis=False, MESSAGE_RATELIMIT="1/hour") as gate:
        assert gate.lookup("senderrate", f"joe@{DOMAIN}") == "NOTFOUND "
        assert gate.lookup("senderrate", f"joe@{DOMAIN}") == RATE_LIMITED


# -- reloads -----------------------------------------------------------------------------------


def test_a_reload_request_is_seen_by_the_next_lookup(gate: GateHarness) -> None:
    before = gate.get("/health")
    assert before[0] == 200
    add_user(gate.store, f"fresh@{DOMAIN}", "fresh-secret")
    generation = request_reload(gate.layout)
    assert generation is not None and generation == gate.store.generation()
    assert gate.lookup("mailbox", f"fresh@{DOMAIN}") == f"OK fresh@{DOMAIN}"


def test_a_change_without_a_reload_request_is_picked_up_by_polling(gate: GateHarness) -> None:
    add_user(gate.store, f"polled@{DOMAIN}", "polled-secret")
    deadline = time.monotonic() + 5
    while gate.lookup("mailbox", f"polled@{DOMAIN}") == "NOTFOUND ":
        assert time.monotonic() < deadline, "the poll did not pick the change up"
        time.sleep(0.1)


def test_the_control_socket_refuses_unknown_commands(gate: GateHarness) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(gate.layout.gate_control))
        sock.sendall(b"shutdown\n")
        assert sock.recv(100) == b"error unknown command\n"
        sock.sendall(b"reload\n")
        assert sock.recv(100).startswith(b"ok ")


def test_request_reload_without_a_gate_returns_none(tmp_path: Path) -> None:
    layout = Layout(make_settings(tmp_path, "127.0.4.250"))
    assert request_reload(layout) is None  # no socket at all
    layout.gate_control.parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(layout.gate_control))
    stale.close()  # a socket file nobody listens on, as a killed gate leaves behind
    assert request_reload(layout) is None


def test_request_reload_reports_a_gate_that_does_not_answer(tmp_path: Path) -> None:
    layout = Layout(make_settings(tmp_path, "127.0.4.250"))
    layout.gate_control.parent.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as mute:
        mute.bind(str(layout.gate_control))
        mute.listen()
        with pytest.raises(GateControlError, match="did not answer"):
            request_reload(layout, timeout=0.2)


def test_socket_permissions(gate: GateHarness) -> None:
    layout = gate.layout
    assert layout.gate_socketmap.parent.stat().st_mode & 0o777 == 0o750
    assert layout.gate_socketmap.stat().st_mode & 0o777 == 0o660
    assert layout.gate_control.stat().st_mode & 0o777 == 0o600


#: Permanent for mail Dovecot sends: Pigeonhole then keeps the message instead of deferring it.
RATE_LIMITED_KEPT = "OK 550 5.7.1 You are sending too many emails too fast."


def test_dovecots_mail_is_charged_to_the_user_it_comes_from(limited_gate: GateHarness) -> None:
    """``mailfromrate``: Sieve redirects and vacation replies share the user's budget."""
    flush_limits(limited_gate)
    assert limited_gate.lookup("senderrate", f"joe@{DOMAIN}") == "NOTFOUND "  # a submission
    # Detail and alternative spellings are the same user.
    assert limited_gate.lookup("mailfromrate", f"joe+away@{ALTERNATIVE}") == "OK DUNNO"
    assert limited_gate.lookup("mailfromrate", f"joe@{DOMAIN}") == RATE_LIMITED_KEPT
    assert limited_gate.lookup("senderrate", f"joe@{DOMAIN}") == RATE_LIMITED
    # An alias has a budget of its own; the null sender one shared budget.
    for key in (f"team@{DOMAIN}", "<>"):
        assert limited_gate.lookup("mailfromrate", key) == "OK DUNNO"
        assert limited_gate.lookup("mailfromrate", key) == "OK DUNNO"
        assert limited_gate.lookup("mailfromrate", key) == RATE_LIMITED_KEPT
    # Not ours (refused by localsender anyway), and exempt users: nothing is counted.
    for _ in range(3):
        assert limited_gate.lookup("mailfromrate", "someone@remote.test") == "NOTFOUND "
        assert limited_gate.lookup("mailfromrate", DOMAIN) == "NOTFOUND "
        assert limited_gate.lookup("mailfromrate", f"noimap@{DOMAIN}") == "OK DUNNO"


# -- who may use our domains as senders -------------------------------------------------------

LOCAL_REJECTED = "OK REJECT Senders of this domain must log in to send"
FOREIGN_REJECTED = "OK 553 5.7.1 Sender address is not one of this server's addresses"


def test_port_25_refuses_senders_of_our_domains_and_alternatives(gate: GateHarness) -> None:
    """``senderaccess``, Mailu's /internal/postfix/sender/access: whoever the local part."""
    for key in (f"joe@{DOMAIN}", f"CEO@{ALTERNATIVE.upper()}", f"nobody@{DOMAIN}", DOMAIN):
        assert gate.lookup("senderaccess", key) == LOCAL_REJECTED, key
    # Postfix's null-sender key, its "user@" key, foreign, relayed and sub-domains pass.
    for key in ("<>", "joe@", "someone@remote.test", "x@relayed.test", f"x@sub.{DOMAIN}"):
        assert gate.lookup("senderaccess", key) == "NOTFOUND ", key


def test_a_valid_srs_address_of_ours_may_come_back(gate: GateHarness) -> None:
    srs = gate.lookup("sendermap", "someone@remote.test").removeprefix("OK ")
    assert srs.endswith(f"@{DOMAIN}")
    assert gate.lookup("senderaccess", srs) == "NOTFOUND "
    forged = f"SRS0=AAAA=ZZ=remote.test=someone@{DOMAIN}"
    assert gate.lookup("senderaccess", forged) == LOCAL_REJECTED


def test_dovecots_mail_must_come_from_one_of_our_addresses(gate: GateHarness) -> None:
    """``localsender``: every key is answered, so Postfix tries no shorter one."""
    for key in (f"joe@{DOMAIN}", f"joe+tag@{ALTERNATIVE}", f"team@{DOMAIN}", "<>"):
        assert gate.lookup("localsender", key) == "OK OK", key
    for key in ("someone@remote.test", f"nobody@{DOMAIN}", DOMAIN, "x@relayed.test"):
        assert gate.lookup("localsender", key) == FOREIGN_REJECTED, key
