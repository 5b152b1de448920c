"""The real Postfix, started as the runner starts it, against stand-in gate and Dovecot."""

from __future__ import annotations

import smtplib
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_services_postfix_support import (
    FORGED_SENDER,
    PostfixStack,
    roost_root,
    running_postfix,
    wait_for,
)

pytestmark = pytest.mark.e2e

ADDRESS = "127.0.5.21"
NOTLS_ADDRESS = "127.0.5.22"
REMOTE = "127.0.5.24"
NOTLS_REMOTE = "127.0.5.26"
OUTSIDE = ("127.80.0.1", 0)  # a loopback source that is not in mynetworks


@pytest.fixture(scope="module")
def stack() -> Iterator[PostfixStack]:
    with (
        roost_root() as root,
        running_postfix(root, ADDRESS, REMOTE, MESSAGE_SIZE_LIMIT=20000) as running,
    ):
        yield running


@pytest.fixture(autouse=True)
def _empty_sinks(request: pytest.FixtureRequest) -> None:
    if "stack" in request.fixturenames:
        stack = request.getfixturevalue("stack")
        stack.mailboxes.messages.clear()
        stack.remote.messages.clear()


def client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def mx(source: tuple[str, int] = OUTSIDE) -> smtplib.SMTP:
    client = smtplib.SMTP(ADDRESS, 10025, source_address=source, timeout=10)
    client.ehlo("client.example.net")
    return client


def test_known_recipient_is_delivered_over_lmtp(stack: PostfixStack) -> None:
    with mx() as client:
        client.sendmail(
            "sender@example.test", ["alice@example.test"], b"Subject: hi\r\n\r\nhello\r\n"
        )
    wait_for(lambda: len(stack.mailboxes.messages) == 1, 10, "LMTP delivery")
    envelope = stack.mailboxes.messages[0]
    assert envelope.rcpt_tos == ["alice@example.test"]
    assert b"hello" in envelope.content
    assert "postfix/mx/smtpd" in stack.log()  # maillog_file reaches the runner's stdout


def test_alias_expands_through_the_gate(stack: PostfixStack) -> None:
    with mx() as client:
        client.sendmail("sender@example.test", ["team@example.test"], b"Subject: all\r\n\r\n.\r\n")
    wait_for(lambda: len(stack.mailboxes.messages) >= 1, 10, "LMTP delivery")
    wait_for(
        lambda: (
            sorted(r for m in stack.mailboxes.messages for r in m.rcpt_tos)
            == ["alice@example.test", "bob@example.test"]
        ),
        10,
        "both alias destinations",
    )


def test_unknown_recipient_rejected_at_rcpt(stack: PostfixStack) -> None:
    with mx() as client:
        client.mail("sender@example.test")
        code, text = client.rcpt("nobody@example.test")
    assert code == 550
    assert b"5.1.1" in text


def test_foreign_domain_is_relay_access_denied(stack: PostfixStack) -> None:
    with mx() as client:
        client.mail("sender@example.test")
        code, text = client.rcpt("someone@foreign.example")
    assert (code, b"Relay access denied" in text) == (554, True)


def test_loopback_is_mynetworks_and_may_relay(stack: PostfixStack) -> None:
    with mx(source=("127.0.0.1", 0)) as client:
        client.mail("sender@example.test")
        assert client.rcpt("someone@foreign.example")[0] == 250


def test_port_25_asks_senderaccess_after_mynetworks(stack: PostfixStack) -> None:
    with mx() as client:
        client.mail(FORGED_SENDER)
        code, text = client.rcpt("alice@example.test")
    assert code == 554
    assert (
        text
        == (
            f"5.7.1 <{FORGED_SENDER}>: Sender address rejected: "
            "Senders of this domain must log in to send"
        ).encode()
    )
    with mx() as client:
        client.mail("")  # the null sender: bounces are welcome
        assert client.rcpt("alice@example.test")[0] == 250
    assert ("senderaccess", "<>") in stack.gate.queries
    with mx(source=("127.0.0.1", 0)) as client:  # mynetworks passes first
        client.mail(FORGED_SENDER)
        assert client.rcpt("alice@example.test")[0] == 250


def test_the_sieve_listener_never_lets_mynetworks_skip_its_checks(stack: PostfixStack) -> None:
    """Loopback is mynetworks, yet mail Dovecot sends still meets localsender, mailfromrate."""
    address = stack.layout.internal_address
    stack.gate.maps["localsender"]["spoof@foreign.example"] = "553 5.7.1 not ours"
    stack.gate.maps["mailfromrate"]["bob@example.test"] = "450 4.2.1 too fast"
    try:
        with smtplib.SMTP(address, 10026, source_address=("127.0.0.1", 0), timeout=10) as client:
            client.ehlo("dovecot")
            client.mail("spoof@foreign.example")
            assert client.rcpt("someone@foreign.example")[0] == 553
            client.rset()
            client.mail("unknown@foreign.example")  # not in the map: the final reject
            assert client.rcpt("someone@foreign.example")[0] == 554
            client.rset()
            client.mail("bob@example.test")
            assert client.rcpt("someone@foreign.example")[0] == 250  # bob may send anywhere
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.data(b"Subject: redirected\r\n\r\nhi\r\n")
            assert refused.value.smtp_code == 450
            assert refused.value.smtp_error.endswith(b"Sender address rejected: too fast")
    finally:
        del stack.gate.maps["localsender"]["spoof@foreign.example"]
        del stack.gate.maps["mailfromrate"]["bob@example.test"]
    assert ("mailfromrate", "bob@example.test") in stack.gate.queries


def test_oversize_is_552(stack: PostfixStack) -> None:
    with mx() as client:
        code, _ = client.mail("sender@example.test", ["SIZE=30000"])
        assert code == 552
        client.rset()
        client.mail("sender@example.test")
        client.rcpt("alice@example.test")
        code, text = client.data(b"Subject: big\r\n\r\n" + (b"x" * 76 + b"\r\n") * 400)
    assert (code, text) == (552, b"5.3.4 Error: message file too big")


def test_relay_domain_goes_to_its_transport(stack: PostfixStack) -> None:
    with mx() as client:
        client.sendmail("sender@example.test", ["user@relay.test"], b"Subject: r\r\n\r\n.\r\n")
    wait_for(lambda: len(stack.remote.messages) == 1, 15, "delivery to the relay host")
    assert stack.remote.messages[0].rcpt_tos == ["user@relay.test"]


def test_xclient_only_from_the_internal_hop(stack: PostfixStack) -> None:
    # nginx connects from the loopback route's source: XCLIENT there replaces the client,
    # so the outside address is no longer mynetworks and may not relay.
    with mx(source=("127.0.0.1", 0)) as client:
        assert "xclient" in client.esmtp_features
        code, _ = client.docmd("XCLIENT", "ADDR=203.0.113.7 NAME=[UNAVAILABLE]")
        assert code == 220
        client.ehlo("client.example.net")
        client.mail("sender@example.test")
        assert client.rcpt("someone@foreign.example")[0] == 554
    assert "client=unknown[203.0.113.7]" in stack.log() or "203.0.113.7" in stack.log()
    with mx() as client:
        assert "xclient" not in client.esmtp_features
        assert client.docmd("XCLIENT", "ADDR=127.0.0.1")[0] == 550


def test_submission_requires_starttls_then_auth(stack: PostfixStack) -> None:
    with smtplib.SMTP(ADDRESS, 587, source_address=OUTSIDE, timeout=10) as client:
        client.ehlo("laptop")
        assert "auth" not in client.esmtp_features
        client.starttls(context=client_tls())
        client.ehlo("laptop")
        assert client.esmtp_features["auth"].split() == ["PLAIN"]
        # Not logged in: nothing may be sent, not even to a local user.
        client.mail("alice@example.test")
        assert client.rcpt("bob@example.test")[0] == 554


def test_submission_sender_must_be_owned(stack: PostfixStack) -> None:
    with smtplib.SMTP(ADDRESS, 587, source_address=OUTSIDE, timeout=10) as client:
        client.starttls(context=client_tls())
        client.login("alice@example.test", "alice-secret")
        client.mail("bob@example.test")
        code, text = client.rcpt("bob@example.test")
        assert code == 553
        assert b"Sender address rejected: not owned by user alice@example.test" in text
        client.rset()
        client.mail("ghost@example.test")  # a local address nobody has
        code, text = client.rcpt("bob@example.test")
        assert (code, b"Sender address rejected" in text) == (550, True)


def test_submission_delivers_and_strips_client_headers(stack: PostfixStack) -> None:
    message = (
        b"Subject: out\r\nX-Mailer: Example Mail 1.0\r\nUser-Agent: Example\r\n"
        b"MIME-Version: 1.0 (Example Mail)\r\n\r\nbody\r\n"
    )
    with smtplib.SMTP_SSL(ADDRESS, 465, source_address=OUTSIDE, context=client_tls()) as client:
        assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
        client.login("alice@example.test", "alice-secret")
        client.sendmail("alice@example.test", ["friend@relay.test"], message)
    wait_for(lambda: len(stack.remote.messages) == 1, 15, "outbound delivery")
    content = stack.remote.messages[0].content
    assert b"body" in content
    for header in (b"X-Mailer", b"User-Agent", b"127.80.0.1"):
        assert header not in content
    assert b"MIME-Version: 1.0\r\n" in content


def test_submission_wrong_password(stack: PostfixStack) -> None:
    with (
        smtplib.SMTP_SSL(ADDRESS, 465, source_address=OUTSIDE, context=client_tls()) as client,
        pytest.raises(smtplib.SMTPAuthenticationError) as error,
    ):
        client.login("alice@example.test", "wrong")
    assert error.value.smtp_code == 535


def test_notls_submission_and_clean_stop() -> None:
    with roost_root() as root:
        with running_postfix(
            root, NOTLS_ADDRESS, NOTLS_REMOTE, TLS_FLAVOR="notls", PORTS=(25, 80, 465, 587)
        ) as notls:
            with smtplib.SMTP(NOTLS_ADDRESS, 587, source_address=OUTSIDE, timeout=10) as client:
                client.ehlo("laptop")
                assert "starttls" not in client.esmtp_features
                client.login("bob@example.test", "bob-secret")
                client.sendmail(
                    "bob@example.test", ["alice@example.test"], b"Subject: x\r\n\r\n.\r\n"
                )
            wait_for(lambda: len(notls.mailboxes.messages) == 1, 10, "LMTP delivery")
            with pytest.raises(OSError):
                smtplib.SMTP(NOTLS_ADDRESS, 465, timeout=2)
            pid = int((Path(notls.layout.queue) / "pid" / "master.pid").read_text().split()[0])
        # running_postfix stopped it with the service's stop_command: master is gone.
        assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0


def test_disabled_mailbox_is_refused_at_rcpt_even_for_mynetworks(stack: PostfixStack) -> None:
    stack.gate.maps["recipientaccess"]["bob@example.test"] = "550 5.2.1 Mailbox disabled"
    try:
        for source in (OUTSIDE, ("127.0.0.1", 0)):
            with mx(source) as client:
                client.mail("sender@example.test")
                code, text = client.rcpt("bob@example.test")
                assert (code, text.endswith(b"Mailbox disabled")) == (550, True), text
                assert text.startswith(b"5.2.1 ")
    finally:
        stack.gate.maps["recipientaccess"].clear()


def test_a_bounce_to_a_reversible_srs_address_goes_to_the_original_sender(
    stack: PostfixStack,
) -> None:
    srs = "SRS0=HHHH=TT=relay.test=Bob@example.test"
    # smtpd asks with the key lower-cased, cleanup as the client wrote it (the gate
    # reverses both: SRS hashes are compared without regard to case).
    stack.gate.maps["recipientmap"][srs.lower()] = "bob@relay.test"
    stack.gate.maps["recipientmap"][srs] = "Bob@relay.test"
    try:
        with mx() as client:
            # Known through recipient_canonical_maps, so accepted though no user has it.
            client.sendmail("", [srs], b"Subject: bounce\r\n\r\nundeliverable\r\n")
        wait_for(lambda: len(stack.remote.messages) == 1, 15, "the reversed bounce")
        assert stack.remote.messages[0].rcpt_tos == ["Bob@relay.test"]
        with mx() as client:
            client.mail("")
            assert client.rcpt("SRS0=FAKE=TT=relay.test=eve@example.test")[0] == 550
    finally:
        stack.gate.maps["recipientmap"].clear()


def test_foreign_envelope_senders_go_through_sendermap(stack: PostfixStack) -> None:
    stack.gate.maps["sendermap"]["someone@foreign.example"] = "SRS0=HHHH=TT=x@example.test"
    try:
        # From mynetworks: no DNS here to find the sender's domain.
        with mx(source=("127.0.0.1", 0)) as client:
            client.sendmail(
                "someone@foreign.example", ["alice@example.test"], b"Subject: s\r\n\r\n.\r\n"
            )
        wait_for(lambda: len(stack.mailboxes.messages) == 1, 15, "LMTP delivery")
        assert stack.mailboxes.messages[0].mail_from == "SRS0=HHHH=TT=x@example.test"
    finally:
        stack.gate.maps["sendermap"].clear()


def test_message_rate_is_asked_once_per_message_at_data(stack: PostfixStack) -> None:
    too_fast = "450 4.2.1 You are sending too many emails too fast."
    stack.gate.queries.clear()
    with smtplib.SMTP_SSL(ADDRESS, 465, source_address=OUTSIDE, context=client_tls()) as client:
        client.login("alice@example.test", "alice-secret")
        client.sendmail(
            "alice@example.test",
            ["bob@example.test", "alice@example.test", "x@relay.test"],
            b"Subject: three recipients\r\n\r\n.\r\n",
        )
        assert stack.gate.queries.count(("senderrate", "alice@example.test")) == 1
        stack.gate.maps["senderrate"]["alice@example.test"] = too_fast
        try:
            client.mail("alice@example.test")
            assert client.rcpt("bob@example.test")[0] == 250
            code, text = client.docmd("DATA")
        finally:
            stack.gate.maps["senderrate"].clear()
    assert code == 450
    assert text.startswith(b"4.2.1 ") and text.endswith(too_fast[10:].encode()), text
