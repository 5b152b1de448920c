"""Authenticated submission on 465 (implicit TLS) and 587 (STARTTLS before AUTH)."""

from __future__ import annotations

import smtplib
import time
import uuid

import pytest

from tests.e2e.conftest import REMOTE_DOMAIN, Receiver
from tests.e2e.stack import Stack
from tests.e2e.test_inbound import message

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sender(stack: Stack) -> tuple[str, str]:
    return stack.add_user("sender", "sender-pw-1"), "sender-pw-1"


@pytest.fixture(scope="module")
def reader(stack: Stack) -> tuple[str, str]:
    return stack.add_user("reader", "reader-pw-1"), "reader-pw-1"


def test_465_delivers_to_a_local_user(
    stack: Stack, sender: tuple[str, str], reader: tuple[str, str]
) -> None:
    subject = f"via 465 {uuid.uuid4()}"
    with stack.smtps() as client:
        client.login(*sender)
        client.sendmail(sender[0], [reader[0]], message(sender[0], reader[0], subject))
    stack.wait_for_message(*reader, subject)


def test_587_requires_starttls_before_auth(stack: Stack, sender: tuple[str, str]) -> None:
    with stack.smtp(587) as client:
        assert not client.has_extn("auth")
        code, _ = client.docmd("AUTH", "PLAIN AHNlbmRlckBleGFtcGxlLnRlc3QAc2VuZGVyLXB3LTE=")
        assert code == 530


def test_587_sends_to_an_outside_domain(
    stack: Stack, sender: tuple[str, str], receiver: Receiver
) -> None:
    subject = f"via 587 {uuid.uuid4()}"
    rcpt = f"friend@{REMOTE_DOMAIN}"
    with stack.submission() as client:
        client.login(*sender)
        client.sendmail(sender[0], [rcpt], message(sender[0], rcpt, subject))
    deadline = time.monotonic() + 20
    while not receiver.by_subject(subject):
        assert time.monotonic() < deadline, stack.log_tail()
        time.sleep(0.3)
    mail_from, rcpts, _ = receiver.by_subject(subject)[0]
    assert rcpts == [rcpt]
    assert mail_from == sender[0]


def test_sender_address_must_belong_to_the_login(
    stack: Stack, sender: tuple[str, str], reader: tuple[str, str]
) -> None:
    with stack.submission() as client:
        client.login(*sender)
        with pytest.raises(smtplib.SMTPException) as refused:
            client.sendmail(reader[0], [reader[0]], message(reader[0], reader[0], "spoof"))
    assert b"Sender address rejected" in str(refused.value).encode() or (
        b"Sender address rejected" in getattr(refused.value, "smtp_error", b"")
    ), refused.value
