"""Mail from the outside world on port 25: delivered, refused, never relayed."""

from __future__ import annotations

import smtplib
import time
import uuid
from email import message_from_bytes

import pytest

from tests.e2e.conftest import REMOTE_DOMAIN, Receiver
from tests.e2e.stack import DOMAIN, Stack

pytestmark = pytest.mark.e2e

SENDER = "someone@sender.test"


def message(sender: str, rcpt: str, subject: str, body: str = "Hello from the test.") -> str:
    return (
        f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4()}@outside.test>\r\n\r\n{body}\r\n"
    )


def test_inbound_mail_lands_in_inbox(stack: Stack) -> None:
    user = stack.add_user("inbound", "inbound-pw-1")
    subject = f"inbound {uuid.uuid4()}"
    with stack.smtp() as client:
        client.sendmail(SENDER, [user], message(SENDER, user, subject))
    raw = stack.wait_for_message(user, "inbound-pw-1", subject)
    assert b"Hello from the test." in raw
    # The real client address reached Postfix through nginx's XCLIENT: Postfix's Received
    # line names it ("from client.outside.test (... [127.80.0.1])"), not nginx's address.
    received = message_from_bytes(raw).get_all("Received", [])
    assert any("[127.80.0.1]" in line and "ESMTP" in line for line in received), received
    # The home existed before Dovecot opened its duplicate database (gate/homes.py).
    assert ".dovecot.lda-dupes" not in stack.log_text()


def test_unknown_local_recipient_is_refused_at_rcpt(stack: Stack) -> None:
    with stack.smtp() as client:
        client.mail("someone@sender.test")
        code, reply = client.rcpt(f"nobody-{uuid.uuid4().hex[:8]}@{DOMAIN}")
    assert code == 550, reply


def test_no_open_relay_for_outside_clients(stack: Stack) -> None:
    """127.80.0.1 is a loopback address, but not 127.0.0.1: it is an outside sender."""
    with stack.smtp() as client:
        client.mail("someone@sender.test")
        code, reply = client.rcpt(f"victim@{REMOTE_DOMAIN}")
    assert code == 554, reply
    assert b"Relay access denied" in reply


def test_localhost_may_relay_without_authentication(stack: Stack, receiver: Receiver) -> None:
    subject = f"relayed {uuid.uuid4()}"
    rcpt = f"friend@{REMOTE_DOMAIN}"
    with stack.smtp(source="127.0.0.1") as client:
        client.sendmail(f"app@{DOMAIN}", [rcpt], message(f"app@{DOMAIN}", rcpt, subject))
    deadline = time.monotonic() + 20
    while not receiver.by_subject(subject):
        assert time.monotonic() < deadline, stack.log_tail()
        time.sleep(0.3)
    assert receiver.by_subject(subject)[0][1] == [rcpt]


def test_auth_on_port_25_is_refused_and_logged_for_fail2ban(stack: Stack) -> None:
    with stack.smtp(source="127.80.0.25") as client:
        code, reply = client.docmd("AUTH", "PLAIN AGFkbWluAHNlY3JldA==")
    assert code == 502, reply
    assert reply.startswith(b"5.5.1"), reply
    # Mailu's documented fail2ban filter, with Roost's log prefix in place of journald's.
    stack.wait_for_log(
        r'client login failed: "AUTH not supported" while in http auth state, '
        r"client: 127\.80\.0\.25, server:"
    )


def test_message_over_size_limit_is_refused_with_552(stack: Stack) -> None:
    user = stack.add_user("big", "big-pw-1")
    limit = int(stack.settings["MESSAGE_SIZE_LIMIT"])
    body = ("x" * 76 + "\r\n") * (limit // 78 + 100)
    with pytest.raises(smtplib.SMTPException) as refused, stack.smtp() as client:
        client.sendmail(SENDER, [user], message(SENDER, user, "big", body))
    error = refused.value
    code = getattr(error, "smtp_code", None)
    if code is None and isinstance(error, smtplib.SMTPRecipientsRefused):
        code = next(iter(error.recipients.values()))[0]
    assert code == 552, error
