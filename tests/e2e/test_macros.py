"""SCAN_MACROS=true: Rspamd hands Office attachments to Roost's olefy server; a macro that
runs by itself and writes and executes is refused at SMTP time with Mailu's text, a clean
document arrives, and while the scanner does not answer senders are asked to retry.

The documents are made by tests/unit/macrodocs.py (macro-enabled Word documents with a VBA
project, and an OpenXML package without one), sent under Office names and types so Rspamd's
rule picks them, and judged by the real olevba and mraptor; nothing on the mail path is
mocked."""

from __future__ import annotations

import smtplib
import uuid
from email.message import EmailMessage

import pytest

from tests.e2e.stack import Stack
from tests.e2e.test_inbound import SENDER
from tests.unit.macrodocs import benign_macro, clean_docx, dangerous_macro

pytestmark = pytest.mark.e2e

#: Word's types for a macro-enabled document and a plain one (MS-OE376 / ECMA-376).
DOCM = ("application", "vnd.ms-word.document.macroEnabled.12")
DOCX = ("application", "vnd.openxmlformats-officedocument.wordprocessingml.document")


@pytest.fixture(scope="module")
def scanned(scanning_stack: Stack) -> Stack:
    """The session's scanner stack (tests/e2e/conftest.py), with SCAN_MACROS on."""
    assert scanning_stack.settings["SCAN_MACROS"] == "true"
    return scanning_stack


def mail_with(user: str, subject: str, document: bytes, name: str, kind: tuple[str, str]) -> bytes:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = SENDER, user, subject
    mail.set_content("Please see the attached report.")
    mail.add_attachment(document, maintype=kind[0], subtype=kind[1], filename=name)
    return mail.as_bytes()


def test_a_self_starting_macro_that_writes_and_executes_is_refused(scanned: Stack) -> None:
    user = scanned.add_user("macros", "macros-pw-1")
    with scanned.smtp() as client, pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail(
            SENDER, [user], mail_with(user, "invoice", dangerous_macro(), "invoice.docm", DOCM)
        )
    assert refused.value.smtp_code == 554, refused.value
    assert refused.value.smtp_error == b"5.7.1 Rejected (dangerous macro detected)"
    assert scanned.count_messages(user, "macros-pw-1", "invoice") == 0
    # The scanner said why, in the stack's log.
    scanned.wait_for_log(r"oletools.*macros: mraptor A AutoOpen")


def test_a_clean_document_and_a_harmless_macro_arrive(scanned: Stack) -> None:
    user = scanned.add_user("clean", "clean-pw-1")
    plain, harmless = f"plain {uuid.uuid4()}", f"harmless {uuid.uuid4()}"
    with scanned.smtp() as client:
        client.sendmail(SENDER, [user], mail_with(user, plain, clean_docx(), "figures.docx", DOCX))
        client.sendmail(
            SENDER, [user], mail_with(user, harmless, benign_macro(), "greeting.docm", DOCM)
        )
    arrived = scanned.wait_for_message(user, "clean-pw-1", plain)
    assert b'filename="figures.docx"' in arrived
    scanned.wait_for_message(user, "clean-pw-1", harmless)


def test_while_the_scanner_is_away_mail_waits_and_arrives_once_it_is_back(
    scanned: Stack,
) -> None:
    user = scanned.add_user("waiting", "waiting-pw-1")
    subject = f"later {uuid.uuid4()}"
    # A document never scanned before: Rspamd keeps verdicts by content in Redis.
    message = mail_with(user, subject, clean_docx(subject), "later.docx", DOCX)
    olefy = scanned.root / "run" / "oletools" / "olefy.sock"
    away = olefy.with_name("olefy.away")
    olefy.rename(away)
    try:
        with scanned.smtp() as client, pytest.raises(smtplib.SMTPDataError) as deferred:
            client.sendmail(SENDER, [user], message)
    finally:
        away.rename(olefy)
    assert deferred.value.smtp_code == 451, deferred.value
    assert b"Please retry later (anti-virus/oletools not ready)" in deferred.value.smtp_error
    assert scanned.count_messages(user, "waiting-pw-1", subject) == 0
    # The sender's retry, with the scanner back.
    with scanned.smtp() as client:
        client.sendmail(SENDER, [user], message)
    scanned.wait_for_message(user, "waiting-pw-1", subject)
