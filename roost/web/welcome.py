"""The welcome message: WELCOME_SUBJECT and WELCOME_BODY from POSTMASTER@DOMAIN to a new
user, when WELCOME is true.

As Mailu (https://mailu.io/master/configuration.html, "Mail settings"): it is sent when a
user is created on the admin pages, by sign-up and by PROXY_AUTH_CREATE; not for users the
API, ``roost user``, a domain registration or config-import make. Every one of those
paths calls :func:`send_welcome` once the store has committed the user (and the gate has
reloaded, so Postfix knows the address). It goes through the stack's Postfix like the
announcement (:mod:`roost.mailout`), so it is queued and retried if Dovecot is busy.

A message that cannot be handed to Postfix is logged and costs nothing else: the user
exists and the page answers as usual.
"""

from __future__ import annotations

import asyncio
import logging

from roost import mailout
from roost.settings import Settings

__all__ = ["TIMEOUT", "send_welcome", "send_welcome_now", "welcome_message"]

log = logging.getLogger("roost.web")

#: Seconds to wait for Postfix: the page that created the user waits for it.
TIMEOUT = 10


def welcome_message(settings: Settings, email: str) -> bytes:
    """The welcome message to ``email`` (stored form: an IDN domain in punycode)."""
    return mailout.build_message(
        settings,
        mailout.sender_of(settings),
        email,
        settings.WELCOME_SUBJECT,
        _body(settings),
    )


def _body(settings: Settings) -> str:
    return settings.WELCOME_BODY + "\n"


def send_welcome_now(settings: Settings, email: str) -> bool:
    """Hand the welcome message for ``email`` to Postfix; whether it took it. Never
    raises: a failure is logged."""
    try:
        report = mailout.send_all(
            settings, [email], settings.WELCOME_SUBJECT, _body(settings), timeout=TIMEOUT
        )
    except Exception:  # a bug here must not undo or fail the user's creation
        log.exception("Welcome message to %s: not sent", email)
        return False
    for recipient, why in report.failed:
        log.warning("Welcome message to %s: not sent: %s", recipient, why)
    if report.sent:
        log.info("Welcome message to %s: sent", email)
    return report.sent == 1


async def send_welcome(settings: Settings, email: str) -> None:
    """Welcome the user ``email``, created and committed just now, if WELCOME is true.
    Sending runs in a worker thread, so the event loop does not wait on Postfix."""
    if not settings.WELCOME:
        return
    await asyncio.to_thread(send_welcome_now, settings, email)
