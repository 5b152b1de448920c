"""The client setup page: how a mail program reaches this server, for every signed-in user.

It lists the IMAP, POP3 and SMTP (submission) servers as the stack serves them, from the
same function the autoconfiguration documents use (:func:`roost.web.autoconfig.client_servers`),
so the page, Thunderbird's config-v1.1.xml, Outlook's autodiscover and the Apple profile
cannot disagree; ports switched off in PORTS are not shown. With WEBDAV on it also names
the calendar and contacts server (:func:`roost.web.autoconfig.dav_url`).
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import select

from roost.settings import Settings
from roost.store import work
from roost.store.entities.names import show_email
from roost.store.models import User
from roost.web.admin.common import settings_of, show
from roost.web.auth import Account, current_user
from roost.web.autoconfig import client_servers, dav_url

__all__ = ["add_routes"]

NAMES = {"imap": "IMAP", "pop3": "POP3", "smtp": "SMTP (sending)"}
SECURITY = {
    "SSL": "TLS from the start (SSL/TLS)",
    "STARTTLS": "STARTTLS",
    "plain": "none (the server has no TLS)",
}


def tokens_only(settings: Settings, two_factor: bool) -> bool:
    """Whether mail programs need an app token: the gate's rule (AUTH_REQUIRE_TOKENS, or
    two-factor login without AUTH_TOTP_MAIL_PASSWORDS), stated here to tell the user."""
    return settings.AUTH_REQUIRE_TOKENS or (two_factor and not settings.AUTH_TOTP_MAIL_PASSWORDS)


def add_routes(router: APIRouter, prefix: str) -> None:
    @router.get("/client")
    async def client_setup(
        request: Request,
        account: Account = Depends(current_user),  # noqa: B008
    ) -> Response:
        settings = settings_of(request)
        address = show_email(account.email)
        with work.read(settings) as db:
            two_factor = bool(
                db.execute(select(User.totp_enabled).where(User.email == account.email)).scalar()
            )
        servers = [
            {
                "protocol": NAMES[s.protocol],
                "port": s.port,
                "security": SECURITY[s.security],
            }
            for s in client_servers(settings)
        ]
        dav = dav_url(settings)
        context = {
            "dav": dav,
            "dav_home": f"{dav}{quote(account.email, safe='@')}/" if dav else None,
            "dav_tokens_only": two_factor and not settings.AUTH_TOTP_MAIL_PASSWORDS,
            "host": settings.hostname,
            "address": address,
            "servers": servers,
            "tokens_only": tokens_only(settings, two_factor),
            "tls": settings.tls,
            "apple": "/apple.mobileconfig?emailaddress=" + quote(address, safe="@"),
            "thunderbird": "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress="
            + quote(address, safe="@"),
        }
        return show(request, account, "client.html", context)
