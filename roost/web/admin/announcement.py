"""The announcement: one message from POSTMASTER@DOMAIN to every enabled user.

It goes through the stack's own Postfix like the welcome message
(:mod:`roost.mailout`: why, and why Postfix trusts it).

Each user gets a message of their own (To: is theirs, nobody learns the other
addresses), sent in batches over one SMTP connection per batch (RFC 5321 allows many
transactions per session). Sending runs in a thread of the web daemon (one process), so
the request does not wait for 10,000 messages (about 4 ms each through Postfix, longer than
nginx waits for an answer); the page shows the progress and then the count, and refuses a
second announcement while one is being sent. The subject is one line without control
characters and the message is built by :mod:`email` with the SMTP policy, which refuses
a line break in a header, so no header can be smuggled in.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import select

from roost import mailout
from roost.mailout import Report, sender_of
from roost.settings import Settings
from roost.store import work
from roost.store.entities.names import ManageError, show_email
from roost.store.models import User
from roost.web.admin.common import form_of, redirect, settings_of, show
from roost.web.auth import Account, require_role

__all__ = ["BATCH", "Job", "Report", "add_routes", "check_body", "check_subject", "send_all"]

admin_only = require_role("admin")
log = logging.getLogger(__name__)

#: Messages per SMTP connection: short sessions, so one slow answer delays few messages.
BATCH = 50
SUBJECT_MAX = 200
BODY_MAX = 100_000
#: Failures named on the page afterwards (the count covers them all).
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


@dataclass
class Job:
    """The announcement being sent, or the last one sent, by this web daemon."""

    subject: str
    total: int
    by: str
    report: Report = field(default_factory=Report)
    done: bool = False
    error: str = ""

    @property
    def count(self) -> int:
        return self.report.sent + len(self.report.failed)


def current_job(request: Request) -> Job | None:
    job = getattr(request.app.state, "announcement", None)
    return job if isinstance(job, Job) else None


def _run(settings: Settings, job: Job, recipients: Sequence[str], body: str) -> None:
    try:
        send_all(settings, recipients, job.subject, body, job.report)
    except Exception as exc:  # a bug must still end the job, and be shown
        log.exception("announcement %r: sending stopped", job.subject)
        job.error = f"sending stopped: {exc}"
    finally:
        job.done = True
        log.info(
            "announcement %r by %s: sent to %d of %d users, %d failed",
            job.subject,
            job.by,
            job.report.sent,
            job.total,
            len(job.report.failed),
        )


def send_all(
    settings: Settings,
    recipients: Sequence[str],
    subject: str,
    body: str,
    report: Report | None = None,
) -> Report:
    """Send the announcement to ``recipients``, BATCH per SMTP connection."""
    return mailout.send_all(settings, recipients, subject, body, report, batch=BATCH)


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
        return _page(request, account, {})

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
            return _page(request, account, form, str(exc), 400)
        recipients = await asyncio.to_thread(enabled_users, settings)
        # No await between this check and the start: the event loop makes it atomic.
        running = current_job(request)
        if running is not None and not running.done:
            problem = f"The announcement “{running.subject}” is still being sent; wait for it."
            return _page(request, account, form, problem, 409)
        job = Job(subject, len(recipients), account.email)
        request.app.state.announcement = job
        log.info("announcement %r by %s: sending to %d users", subject, account.email, job.total)
        worker = threading.Thread(
            target=_run, args=(settings, job, recipients, body), name="announcement", daemon=True
        )
        worker.start()
        # Post/redirect/get: reloading the page that follows cannot send it twice.
        return redirect(f"{prefix}/announcement")


def _page(
    request: Request,
    account: Account,
    form: dict[str, str],
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    job = current_job(request)
    context = {
        "form": form,
        "sender": sender_of(settings_of(request)),
        "error": error,
        "job": job,
        "result": summary(job) if job is not None and job.done else None,
        "failed": [(show_email(r), why) for r, why in job.report.failed[:SHOWN_FAILURES]]
        if job is not None
        else [],
    }
    return show(request, account, "announcement.html", context, status_code=status_code)


def summary(job: Job) -> str:
    """The line after sending: the count of messages Postfix accepted, and of failures."""
    line = f"Announcement “{job.subject}” sent to {job.report.sent} of {job.total} enabled users."
    if job.report.failed:
        line += f" {len(job.report.failed)} failed."
    if job.error:
        line += f" {job.error}."
    return line
