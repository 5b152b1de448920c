"""Web sign-ins ask the gate: the one login decision, its rate limits and its log lines.

The web application never checks a password itself. It asks the gate over the gate's
HTTP socket (the one nginx's mail module uses, ``0660 root:www-data``) with the headers of
nginx's auth_http protocol (https://nginx.org/en/docs/mail/ngx_mail_auth_http_module.html)
and ``Auth-Protocol: web``, so a web sign-in spends and respects the same Redis budgets as
IMAP or SMTP (an address refused on IMAP is refused here), and its failures write the same
``Login attempt for: <user>/web/<port> from: <ip>/<port>: failed: badauth: <6hex>`` line
fail2ban already watches. App tokens do not open the web (the gate refuses them for
``web``), as in Mailu, where the sign-in form takes the account password only.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx

__all__ = ["GateAnswer", "GateClient", "GateUnavailable", "Verdict", "WebLogin"]

log = logging.getLogger("roost.web")


class Verdict(enum.Enum):
    OK = "ok"
    BAD = "bad"
    RATE_LIMITED = "rate_limited"


class GateUnavailable(RuntimeError):
    """The gate did not answer: nobody signs in (there is no second decision)."""


@dataclass(frozen=True, slots=True)
class WebLogin:
    """One sign-in attempt as nginx would describe it."""

    user: str
    password: str
    client_ip: str
    client_port: int = 0
    #: the server port the browser used (443, or 80 under notls), for the log line
    port: int = 443
    ssl: bool = True
    #: ``web`` (the account password only) or ``api`` (app tokens only)
    protocol: str = "web"


@dataclass(frozen=True, slots=True)
class GateAnswer:
    """The gate's verdict; when OK, the account as the gate names it, and what the web
    must still ask for before the account is signed in (``Auth-2FA``: ``required`` or
    ``enrol``; None when the password is enough)."""

    verdict: Verdict
    user: str | None = None
    second_factor: str | None = None

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK


class GateClient:
    """Asks the gate's ``GET /auth/email`` over its Unix socket."""

    TIMEOUT = 10.0

    def __init__(self, socket_path: Path) -> None:
        self._socket = socket_path

    async def check(self, login: WebLogin, extra: Mapping[str, str] | None = None) -> GateAnswer:
        """Ask the gate; raise :class:`GateUnavailable` when it does not answer.

        ``extra`` adds headers: the second step's report (:mod:`roost.web.sso.twofactor`).
        """
        headers = {
            "Auth-Method": "plain",
            # Percent-encoded as nginx does; the gate decodes both (UTF-8 passwords).
            "Auth-User": quote(login.user, safe=""),
            "Auth-Pass": quote(login.password, safe=""),
            "Auth-Protocol": login.protocol,
            "Auth-Port": str(login.port),
            "Auth-SSL": "on" if login.ssl else "off",
            "Client-IP": login.client_ip,
            "Client-Port": str(login.client_port),
            **(extra or {}),
        }
        transport = httpx.AsyncHTTPTransport(uds=str(self._socket))
        try:
            async with httpx.AsyncClient(transport=transport, timeout=self.TIMEOUT) as client:
                response = await client.get("http://gate/auth/email", headers=headers)
        except httpx.HTTPError as exc:
            raise GateUnavailable(f"the gate did not answer: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise GateUnavailable(f"the gate refused the request ({response.status_code})")
        status = response.headers.get("auth-status", "")
        if status == "OK":
            return GateAnswer(
                Verdict.OK,
                response.headers.get("auth-user") or login.user,
                response.headers.get("auth-2fa") or None,
            )
        if "rate-limit" in status:
            return GateAnswer(Verdict.RATE_LIMITED)
        return GateAnswer(Verdict.BAD)
