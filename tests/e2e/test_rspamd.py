"""Rspamd scans every message through Postfix's milter: spam is refused at SMTP time,
everything gets Rspamd's headers, and while Rspamd does not answer mail is deferred with
a 4xx (never accepted unscanned) and arrives once it answers again."""

from __future__ import annotations

import smtplib
import time
import uuid
from email import message_from_bytes
from email.message import EmailMessage

import pytest
import redis

from roost.layout import POSTFIX_FRONT_PORT
from tests.e2e.stack import DOMAIN, Stack
from tests.e2e.test_inbound import SENDER, message

pytestmark = pytest.mark.e2e

# GTUBE, which Rspamd answers with "reject" (rspamd.com/doc/other/gtube_patterns.html).
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def test_gtube_is_refused_at_smtp_time_inbound_and_on_submission(stack: Stack) -> None:
    user = stack.add_user("gtube", "gtube-pw-1")
    with stack.smtp() as client, pytest.raises(smtplib.SMTPDataError) as inbound:
        client.sendmail(SENDER, [user], message(SENDER, user, "gtube in", GTUBE))
    assert inbound.value.smtp_code == 554, inbound.value
    assert inbound.value.smtp_error == b"5.7.1 Gtube pattern"
    with stack.submission() as client:
        client.login(user, "gtube-pw-1")
        with pytest.raises(smtplib.SMTPDataError) as submitted:
            client.sendmail(user, [user], message(user, user, "gtube out", GTUBE))
    assert submitted.value.smtp_code == 554, submitted.value
    assert stack.count_messages(user, "gtube-pw-1", "gtube") == 0


def test_scanned_mail_carries_rspamd_headers(stack: Stack) -> None:
    user = stack.add_user("scanned", "scanned-pw-1")
    subject = f"scanned {uuid.uuid4()}"
    with stack.smtp() as client:
        client.sendmail(SENDER, [user], message(SENDER, user, subject))
    raw = stack.wait_for_message(user, "scanned-pw-1", subject)
    headers = message_from_bytes(raw)
    assert headers["X-Spamd-Bar"] is not None, raw[:800]


def test_mail_is_deferred_while_rspamd_is_away_and_arrives_after(stack: Stack) -> None:
    user = stack.add_user("deferred", "deferred-pw-1")
    subject = f"deferred {uuid.uuid4()}"
    milter = stack.root / "run" / "rspamd" / "milter.sock"
    away = milter.with_name("milter.away")
    # Postfix finds no milter to talk to, exactly as when Rspamd is not running.
    milter.rename(away)
    try:
        with stack.smtp() as client, pytest.raises(smtplib.SMTPException) as refused:
            client.sendmail(SENDER, [user], message(SENDER, user, subject))
        code = getattr(refused.value, "smtp_code", None)
        if code is None:  # SMTPRecipientsRefused: the 4xx came at RCPT
            code = next(iter(refused.value.recipients.values()))[0]  # type: ignore[attr-defined]
        assert 400 <= code < 500, refused.value
    finally:
        away.rename(milter)
    # The sender retries, as SMTP senders do after a 4xx, and the mail arrives scanned.
    with stack.smtp() as client:
        client.sendmail(SENDER, [user], message(SENDER, user, subject))
    raw = stack.wait_for_message(user, "deferred-pw-1", subject)
    assert message_from_bytes(raw)["X-Spamd-Bar"] is not None
    assert stack.count_messages(user, "deferred-pw-1", subject) == 1
    assert DOMAIN in user


def test_a_forbidden_attachment_extension_is_refused_with_mailus_message(stack: Stack) -> None:
    user = stack.add_user("attached", "attached-pw-1")
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = SENDER, user, f"attachment {uuid.uuid4()}"
    mail.set_content("See the attachment.")
    mail.add_attachment(
        b"MZ\x90\x00", maintype="application", subtype="octet-stream", filename="invoice.pdf.exe"
    )
    with stack.smtp() as client, pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail(SENDER, [user], mail.as_bytes())
    assert refused.value.smtp_code == 554, refused.value
    assert refused.value.smtp_error == b"5.7.1 Forbidden attachment extension"
    # The same mail with a harmless attachment passes.
    mail.replace_header("Subject", f"harmless {uuid.uuid4()}")
    harmless = EmailMessage()
    for name in ("From", "To", "Subject"):
        harmless[name] = mail[name]
    harmless.set_content("See the attachment.")
    harmless.add_attachment(
        b"%PDF-1.4", maintype="application", subtype="pdf", filename="invoice.pdf"
    )
    with stack.smtp() as client:
        client.sendmail(SENDER, [user], harmless.as_bytes())
    stack.wait_for_message(user, "attached-pw-1", harmless["Subject"])


def learned(stack: Stack) -> dict[str, int]:
    """How many messages Rspamd's Bayes classifier learnt as spam and as ham, read from its
    Redis (``rspamc stat`` shows them only after its periodic refresh)."""
    client = redis.Redis(unix_socket_path=str(stack.root / "run" / "rspamd-redis" / "redis.sock"))
    try:
        counts = {"BAYES_SPAM": 0, "BAYES_HAM": 0}
        for name, field in (("BAYES_SPAM", "learns_spam"), ("BAYES_HAM", "learns_ham")):
            for key in client.smembers(f"{name}_keys"):
                counts[name] += int(client.hget(key, field) or 0)
        return counts
    finally:
        client.close()


def wait_learned(stack: Stack, name: str, at_least: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while learned(stack)[name] < at_least:
        assert time.monotonic() < deadline, (learned(stack), stack.log_tail())
        time.sleep(0.5)


def test_moving_into_junk_learns_spam_and_out_of_it_learns_ham(stack: Stack) -> None:
    user = stack.add_user("learner", "learner-pw-1")
    # Enough words for Bayes (Rspamd skips messages with too few tokens).
    body = " ".join(f"word{n} meeting budget invoice quarterly review" for n in range(12))
    subjects = [f"learn {n} {uuid.uuid4()}" for n in range(3)]
    with stack.smtp() as client:
        for subject in subjects:
            client.sendmail(SENDER, [user], message(SENDER, user, subject, body + subject))
    for subject in subjects:
        stack.wait_for_message(user, "learner-pw-1", subject)
    before = learned(stack)
    client = stack.imap()
    try:
        client.login(user, "learner-pw-1")
        client.select("INBOX")
        _, data = client.search(None, "SUBJECT", f'"{subjects[0]}"')
        client.copy(data[0].split()[0], "Junk")  # into Junk: spam
        wait_learned(stack, "BAYES_SPAM", before["BAYES_SPAM"] + 1)
        _, data = client.search(None, "SUBJECT", f'"{subjects[1]}"')
        client.copy(data[0].split()[0], "Junk")
        wait_learned(stack, "BAYES_SPAM", before["BAYES_SPAM"] + 2)
        client.select("Junk")
        _, data = client.search(None, "SUBJECT", f'"{subjects[0]}"')
        client.copy(data[0].split()[0], "Trash")  # out of Junk into Trash: nothing learnt
        _, data = client.search(None, "SUBJECT", f'"{subjects[1]}"')
        client.copy(data[0].split()[0], "INBOX")  # out of Junk elsewhere: ham
        wait_learned(stack, "BAYES_HAM", before["BAYES_HAM"] + 1)
        time.sleep(2)
        after = learned(stack)
        assert after["BAYES_HAM"] == before["BAYES_HAM"] + 1, (before, after)
    finally:
        client.logout()


def outside_mx(stack: Stack) -> smtplib.SMTP:
    """Postfix's port-25 listener as nginx reaches it, told by XCLIENT that the client is a
    public address: Rspamd counts every 127/8 client as local and skips the checks meant
    for strangers, so a loopback test client cannot play one."""
    client = smtplib.SMTP(stack.address, POSTFIX_FRONT_PORT, source_address=(stack.address, 0))
    client.ehlo("mx.outside.test")
    code, reply = client.docmd(
        "XCLIENT", "ADDR=198.51.100.7 NAME=[UNAVAILABLE] HELO=mx.outside.test PROTO=ESMTP"
    )
    assert code == 220, reply
    client.ehlo("mx.outside.test")
    return client


def test_mail_from_outside_claiming_one_of_our_domains_is_refused(stack: Stack) -> None:
    user = stack.add_user("spoofed", "spoofed-pw-1")
    forged = f"ceo@{DOMAIN}"
    with outside_mx(stack) as client, pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail(SENDER, [user], message(forged, user, f"forged {uuid.uuid4()}"))
    assert refused.value.smtp_code == 554, refused.value
    assert refused.value.smtp_error.startswith(b"5.7.1 Rejected (anti-spoofing: "), refused.value
    # The same mail in a stranger's own name is not refused as spoofing: a first-time
    # stranger from a public address is greylisted (4xx, Rspamd's greylist module).
    with outside_mx(stack) as client, pytest.raises(smtplib.SMTPDataError) as deferred:
        client.sendmail(SENDER, [user], message(SENDER, user, f"honest {uuid.uuid4()}"))
    assert deferred.value.smtp_code == 451, deferred.value
    assert b"anti-spoofing" not in deferred.value.smtp_error
