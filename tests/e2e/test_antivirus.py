"""ANTIVIRUS=clamav: Rspamd hands every part to Roost's clamd; a virus is refused at SMTP
time with Mailu's text, and while clamd does not answer senders are asked to retry. The
signature database has one line (EICAR's MD5), so nothing is downloaded."""

from __future__ import annotations

import smtplib
import uuid
from email.message import EmailMessage

import pytest

from tests.e2e.stack import Stack
from tests.e2e.test_inbound import SENDER
from tests.unit.eicar import EICAR

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def scanned(scanning_stack: Stack) -> Stack:
    """The session's scanner stack (tests/e2e/conftest.py), with ANTIVIRUS=clamav."""
    assert scanning_stack.settings["ANTIVIRUS"] == "clamav"
    return scanning_stack


def mail_with(user: str, subject: str, attachment: bytes) -> bytes:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = SENDER, user, subject
    mail.set_content("Please see the attached file.")
    mail.add_attachment(
        attachment, maintype="application", subtype="octet-stream", filename="report.txt"
    )
    return mail.as_bytes()


def test_a_virus_is_refused_with_mailus_message_and_clean_mail_arrives(scanned: Stack) -> None:
    user = scanned.add_user("scanned", "scanned-pw-1")
    with scanned.smtp() as client, pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail(SENDER, [user], mail_with(user, "infected", EICAR))
    assert refused.value.smtp_code == 554, refused.value
    assert refused.value.smtp_error == b"5.7.1 Rejected (dangerous/malicious code detected)"
    subject = f"clean {uuid.uuid4()}"
    with scanned.smtp() as client:
        client.sendmail(SENDER, [user], mail_with(user, subject, b"quarterly figures"))
    scanned.wait_for_message(user, "scanned-pw-1", subject)
    assert scanned.count_messages(user, "scanned-pw-1", "infected") == 0


def test_while_clamd_does_not_answer_mail_waits(scanned: Stack) -> None:
    user = scanned.add_user("clamd-waiting", "waiting-pw-1")  # test_macros has "waiting"
    clamd = scanned.root / "run" / "clamav" / "clamd.sock"
    away = clamd.with_name("clamd.away")
    clamd.rename(away)
    try:
        with scanned.smtp() as client, pytest.raises(smtplib.SMTPDataError) as deferred:
            client.sendmail(SENDER, [user], mail_with(user, "deferred", b"harmless"))
    finally:
        away.rename(clamd)
    assert deferred.value.smtp_code == 451, deferred.value
    assert b"Please retry later" in deferred.value.smtp_error
