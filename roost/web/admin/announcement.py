"""The announcement: one message from POSTMASTER@DOMAIN to every enabled user.

Mailu's admin hands such a message to its IMAP server over LMTP; Roost gives it to the
stack's own Postfix instead, so it takes the path of every other message: recipient
checks, header cleaning, queueing and retry when Dovecot is busy, LMTP delivery and the
Sieve rules (a user's filters see it like any mail).

Postfix's listener on ``INTERNAL:10025`` trusts mail from ``127.0.0.1`` (its
``mynetworks``: loopback and RELAYNETS; docs/ARCHITECTURE.md, "Data flow"), which is
what lets a local program send as one of our domains there without logging in. nginx's
port-25 connections come from loopback too but carry XCLIENT with the real client's
address, so outside mail never gets that trust. The web daemon connects from
``127.0.0.1`` explicitly: another loopback source address would be an outside sender.
No new trusted path is made.

Each user gets a message of their own (To: is theirs, nobody learns the other
addresses), sent in batches over one SMTP connection per batch (RFC 5321 allows many
transactions per session), off the event loop. The subject is one line without control
characters and the message is built by :mod:`email` with the SMTP policy, which refuses
a line break in a header, so no header can be smuggled in.
"""

from __future__ import annotations

import asyncio
import smtplib
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import select

from roost.layout import POSTFIX_FRONT_PORT, Layout
from roost.settings import Settings
from roost.store import work
from roost.store.entities.names import ManageError, domain_name, show_email
from roost.store.models import User
from roost.web.admin.common import form_of, redirect, say, settings_of, show
from roost.web.auth import Account, require_role

__all__ = ["BATCH", "Report", "add_routes", "check_body", "check_subject", "send_all"]

admin_only = require_role("admin")

#: Messages per SMTP connection: short sessions, so one slow answer delays few messages.
BATCH = 50
SUBJECT_MAX = 200
BODY_MAX = 100_000
#: Seconds to wait for Postfix's answers.
TIMEOUT = 30
#: Failures named in the notice afterwards (the count covers them all).
SHOWN_FAILURES = 20


def check_subject(text: str) -> str:
    """One line of printable text: no CR, LF or any other control or format character."""
    subject = text.strip()
    if not subject:
        raise ManageError("subject: give one")
    if len(subject) > SUBJECT_MAX:
        raise ManageError(f"subject: at most {SUBJECT_MAX} characters")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in subject):
        raise ManageError("subject: one line of text, without control characters")
    return subject


def check_body(text: str) -> str:
    """The text with line ends made uniform; tabs and line breaks are its only controls."""
    body = text.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    if not body.strip():
        raise ManageError("message: write something")
    if len(body) > BODY_MAX:
        raise ManageError(f"message: at most {BODY_MAX} characters")
    if any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in body):
        raise ManageError("message: control characters are not allowed")
    return body + "\n"


def sender_of(settings: Settings) -> str:
    """POSTMASTER@DOMAIN with the domain in its stored (ASCII) form."""
    return f"{settings.POSTMASTER}@{domain_name(settings.DOMAIN)}"


def build_message(settings: Settings, sender: str, to: str, subject: str, body: str) -> bytes:
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
    sent: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


def _connect(settings: Settings) -> smtplib.SMTP:
    host = Layout(settings).internal_address
    client = smtplib.SMTP(
        host,
        POSTFIX_FRONT_PORT,
        local_hostname=settings.hostname,
        timeout=TIMEOUT,
        source_address=("127.0.0.1", 0),
    )
    client.ehlo()
    return client


def _batches(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def send_all(settings: Settings, recipients: Sequence[str], subject: str, body: str) -> Report:
    """Send one message per recipient, BATCH per connection; a failure costs only its own
    message, or the rest of its batch when the connection itself fails."""
    report = Report()
    sender = sender_of(settings)
    for batch in _batches(recipients, BATCH):
        try:
            client = _connect(settings)
        except (OSError, smtplib.SMTPException) as exc:
            report.failed.extend((r, f"cannot reach Postfix: {exc}") for r in batch)
            continue
        try:
            for index, recipient in enumerate(batch):
                data = build_message(settings, sender, recipient, subject, body)
                try:
                    client.sendmail(sender, [recipient], data)
                    report.sent += 1
                except smtplib.SMTPRecipientsRefused as exc:
                    code, why = exc.recipients[recipient]
                    report.failed.append((recipient, f"{code} {why.decode(errors='replace')}"))
                except smtplib.SMTPResponseException as exc:
                    text = exc.smtp_error.decode(errors="replace")
                    report.failed.append((recipient, f"{exc.smtp_code} {text}"))
                    client.rset()
                except (OSError, smtplib.SMTPException) as exc:
                    report.failed.extend((r, f"connection lost: {exc}") for r in batch[index:])
                    break
        finally:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()
    return report


def enabled_users(settings: Settings) -> list[str]:
    with work.read(settings) as db:
        rows = db.execute(
            select(User.email)
            .where(User.enabled.is_(True))
            .order_by(User.domain_name, User.localpart)
        )
        return [row.email for row in rows]


def add_routes(router: APIRouter, prefix: str) -> None:
    @router.get("/announcement")
    async def announcement_form(
        request: Request,
        account: Account = Depends(admin_only),  # noqa: B008
    ) -> Response:
        settings = settings_of(request)
        context = {"form": {}, "sender": sender_of(settings)}
        return show(request, account, "announcement.html", context)

    @router.post("/announcement")
    async def announcement_send(
        request: Request,
        account: Account = Depends(admin_only),  # noqa: B008
    ) -> Response:
        settings = settings_of(request)
        form = await form_of(request)
        try:
            subject = check_subject(form.get("subject", ""))
            body = check_body(form.get("body", ""))
        except ManageError as exc:
            context = {"form": form, "sender": sender_of(settings), "error": str(exc)}
            return show(request, account, "announcement.html", context, status_code=400)
        recipients = await asyncio.to_thread(enabled_users, settings)
        report = await asyncio.to_thread(send_all, settings, recipients, subject, body)
        # Post/redirect/get: reloading the page that follows cannot send it twice.
        say(request, summary(report, len(recipients)))
        return redirect(f"{prefix}/announcement")


def summary(report: Report, total: int) -> str:
    """The notice after sending: the count, and the first failures with Postfix's answer."""
    line = f"Announcement sent to {report.sent} of {total} enabled users."
    if report.failed:
        shown = "; ".join(f"{show_email(r)}: {why}" for r, why in report.failed[:SHOWN_FAILURES])
        more = len(report.failed) - SHOWN_FAILURES
        tail = f"; and {more} more." if more > 0 else "."
        line += f" {len(report.failed)} failed: {shown}{tail}"
    return line
