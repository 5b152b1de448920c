"""Where every file, socket and internal port of one Roost stack lives.

Everything is under ROOT, so that several stacks with different ROOTs and bind addresses run
side by side on one host. Hops between Roost's own processes use Unix sockets where both ends
support them; where a daemon can only reach a TCP address (nginx mail's backend, Dovecot's
Lua HTTP client) they use ``internal_address``: a loopback address, never a public one.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from roost.settings import Settings

# Internal TCP ports on ``internal_address``; none of them is reachable from outside.
POSTFIX_FRONT_PORT = 10025  # Postfix smtpd behind nginx's port 25 (XCLIENT from nginx)
GATE_HTTP_PORT = 10080  # the gate's HTTP side: nginx auth_http, Dovecot Lua
#: The system user that owns every mailbox (Dovecot's mail_uid/mail_gid).
MAIL_OWNER = "mail"


@dataclass(frozen=True)
class Layout:
    settings: Settings

    @property
    def root(self) -> Path:
        return self.settings.ROOT

    # -- persistent data ------------------------------------------------------------------
    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def mail(self) -> Path:
        return self.root / "mail"

    def mail_home(self, email: str) -> Path:
        """A user's home and Maildir: Dovecot's ``mail_home`` with %u = the address."""
        return self.mail / email

    @property
    def queue(self) -> Path:
        return self.root / "queue"

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def dkim(self) -> Path:
        return self.root / "dkim"

    @property
    def overrides(self) -> Path:
        return self.root / "overrides"

    @property
    def redis_data(self) -> Path:
        return self.root / "redis"

    @property
    def cert_file(self) -> Path:
        return self.certs / self.settings.TLS_CERT_FILENAME

    @property
    def key_file(self) -> Path:
        return self.certs / self.settings.TLS_KEYPAIR_FILENAME

    # -- generated, rebuilt at every start ---------------------------------------------------
    @property
    def etc(self) -> Path:
        """Rendered daemon configuration: ``etc/<service>/...``."""
        return self.root / "etc"

    def service_etc(self, service: str) -> Path:
        return self.etc / service

    @property
    def run(self) -> Path:
        """Sockets and pid files."""
        return self.root / "run"

    @property
    def gate_socketmap(self) -> Path:
        """Postfix socketmap lookups (``socketmap:unix:...:<map>``)."""
        return self.run / "gate" / "socketmap.sock"

    @property
    def gate_control(self) -> Path:
        """Reload requests from the CLI and the web app after they change the store."""
        return self.run / "gate" / "control.sock"

    @property
    def gate_dict(self) -> Path:
        """Dovecot's dict lookups (``proxy:...``): the Sieve before script, quota usage.

        In a directory of its own: Dovecot's mail processes (the mail user) open it, and
        must not reach the socketmap beside the others.
        """
        return self.run / "gate-dict" / "dict.sock"

    @property
    def redis_socket(self) -> Path:
        return self.run / "redis" / "redis.sock"

    @property
    def dovecot_run(self) -> Path:
        """Dovecot's base_dir: its auth and LMTP sockets."""
        return self.run / "dovecot"

    @property
    def lmtp_socket(self) -> Path:
        return self.dovecot_run / "lmtp"

    @property
    def dovecot_auth_socket(self) -> Path:
        """SASL for Postfix submission (``smtpd_sasl_type = dovecot``)."""
        return self.dovecot_run / "auth-client"

    @property
    def runner_status(self) -> Path:
        """Written by ``roost up``, read by ``roost status``."""
        return self.run / "status.json"

    @property
    def log(self) -> Path:
        return self.root / "log"

    # -- addresses --------------------------------------------------------------------------
    @property
    def internal_address(self) -> str:
        """The loopback address internal TCP hops use.

        A stack bound to a loopback address (as every test stack is) keeps its internal
        hops on that same address, so stacks never collide; otherwise 127.0.0.1.
        """
        bind = ipaddress.ip_address(self.settings.BIND_ADDRESS4)
        return str(bind) if bind.is_loopback else "127.0.0.1"

    @property
    def gate_http_url(self) -> str:
        return f"http://{self.internal_address}:{GATE_HTTP_PORT}"

    def listen_addresses(self) -> list[str]:
        """Addresses the public listeners bind, IPv6 in brackets-free form."""
        addresses = [self.settings.BIND_ADDRESS4]
        if self.settings.BIND_ADDRESS6:
            addresses.append(self.settings.BIND_ADDRESS6)
        return addresses
