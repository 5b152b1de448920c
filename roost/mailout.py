"""Mail Roost sends itself (the web's announcement and welcome message, the gate's notice
of a held sender): from POSTMASTER@DOMAIN, handed to the stack's own Postfix.

Mailu's admin hands such messages to its IMAP server over LMTP; Roost gives them to
Postfix instead, so they take the path of every other message: recipient checks, header
cleaning, queueing and retry when Dovecot is busy, LMTP delivery and the Sieve rules (a
user's filters see them like any mail).

Postfix's listener on ``INTERNAL:10025`` trusts mail from ``127.0.0.1`` (its
``mynetworks``: loopback and RELAYNETS; docs/ARCHITECTURE.md, "Data flow"), which is
what lets a local program send as one of our domains there without logging in. nginx's
port-25 connections come from loopback too but carry XCLIENT with the real client's
address, so outside mail never gets that trust. Roost's processes connect from
``127.0.0.1`` explicitly: another loopback source address would be an outside sender.
No new trusted path is made.

Each recipient gets a message of their own (To: is theirs, nobody learns the other
addresses), sent in batches over one SMTP connection per batch (RFC 5321 allows many
transactions per session). The message is built by :mod:`email` with the SMTP policy,
which refuses a line break in a header, so no header can be smuggled in.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid

from roost.layout import POSTFIX_FRONT_PORT, Layout
from roost.settings import Settings
from roost.store.entities.names import domain_name

__all__ = ["BATCH", "TIMEOUT", "Report", "build_message", "send_all", "sender_of"]

#: Messages per SMTP connection: short sessions, so one slow answer delays few messages.
BATCH = 50
#: Seconds to wait for Postfix's answers.
TIMEOUT = 30


def sender_of(settings: Settings) -> str:
    """POSTMASTER@DOMAIN with the domain in its stored (ASCII) form."""
    return f"{settings.POSTMASTER}@{domain_name(settings.DOMAIN)}"


def build_message(settings: Settings, sender: str, to: str, subject: str, body: str) -> bytes:
    """A plain-text message from ``sender`` to ``to``, with a Date and a Message-ID of
    this host."""
    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=settings.hostname)
    message.set_content(body)
    return message.as_bytes()


@dataclass
class Report:
    """Messages Postfix accepted, and each refused recipient with the reason."""

    sent: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


def _connect(settings: Settings, timeout: float) -> smtplib.SMTP:
    host = Layout(settings).internal_address
    client = smtplib.SMTP(
        host,
        POSTFIX_FRONT_PORT,
        local_hostname=settings.hostname,
        timeout=timeout,
        source_address=("127.0.0.1", 0),
    )
    client.ehlo()
    return client


def _text(answer: bytes | str) -> str:
    return answer.decode(errors="replace") if isinstance(answer, bytes) else answer


def _batches(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def send_all(
    settings: Settings,
    recipients: Sequence[str],
    subject: str,
    body: str,
    report: Report | None = None,
    *,
    batch: int = BATCH,
    timeout: float = TIMEOUT,
) -> Report:
    """Send one message per recipient, ``batch`` per connection; a failure costs only its
    own message, or the rest of its batch when the connection itself fails. ``report`` is
    updated as it goes, so another thread can show the progress."""
    report = Report() if report is None else report
    sender = sender_of(settings)
    for group in _batches(recipients, batch):
        try:
            client = _connect(settings, timeout)
        except (OSError, smtplib.SMTPException) as exc:
            report.failed.extend((r, f"cannot reach Postfix: {exc}") for r in group)
            continue
        try:
            for index, recipient in enumerate(group):
                data = build_message(settings, sender, recipient, subject, body)
                try:
                    client.sendmail(sender, [recipient], data)
                    report.sent += 1
                except smtplib.SMTPRecipientsRefused as exc:
                    code, why = exc.recipients[recipient]
                    report.failed.append((recipient, f"{code} {_text(why)}"))
                except smtplib.SMTPResponseException as exc:
                    text = _text(exc.smtp_error)
                    # smtplib has reset the transaction (RSET) before raising.
                    report.failed.append((recipient, f"{exc.smtp_code} {text}"))
                except (OSError, smtplib.SMTPException) as exc:
                    report.failed.extend((r, f"connection lost: {exc}") for r in group[index:])
                    break
        finally:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()
    return report
