"""Unbound: the DNSSEC-validating resolver that DANE needs (DNS_RESOLVER=unbound).

Postfix's DANE support trusts only DNS answers that a validating resolver marked
authentic (the AD bit; https://www.postfix.org/TLS_README.html#client_tls_dane), and the
host's resolver is often one that does not validate, or strips the bit. So Roost runs its
own Unbound, a full recursive resolver that validates from the root's key, listening on
the stack's internal loopback address only. The host's /etc/resolv.conf is never touched:
Postfix's delivery agents run chrooted in the queue directory and read the chroot's
etc/resolv.conf (roost.services.postfix), the gate asks this address directly.

A user's ``overrides/unbound/*.conf`` files are included at the end (each starts with a
clause, say ``server:`` or ``forward-zone:``), e.g. to forward to an upstream resolver.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from roost.layout import DNS_PORT
from roost.services.base import (
    Readiness,
    Service,
    ServiceConfigError,
    template_environment,
    write_file,
)
from roost.settings import Settings

__all__ = ["ROOT_HINTS", "ROOT_KEY", "UnboundService"]

_TEMPLATES = template_environment(__file__)

UNBOUND = "unbound"
CHECKCONF = "unbound-checkconf"
#: Debian's dns-root-data: the root servers and the root zone's trust anchor (DS).
ROOT_HINTS = Path("/usr/share/dns/root.hints")
ROOT_KEY = Path("/usr/share/dns/root.key")


def _program(name: str) -> str:
    found = shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        raise ServiceConfigError(f"{name} is not installed; install the Debian package unbound")
    return found


@dataclass
class UnboundService(Service):
    name: str = field(init=False, default="unbound")

    @classmethod
    def enabled(cls, settings: Settings) -> bool:
        return settings.DNS_RESOLVER == "unbound"

    @property
    def conf(self) -> Path:
        return self.etc / "unbound.conf"

    def render(self) -> None:
        """Write unbound.conf with the user's includes and let unbound-checkconf judge it."""
        for needed in (ROOT_HINTS, ROOT_KEY):
            if not needed.is_file():
                raise ServiceConfigError(
                    f"{needed} is missing; install the Debian package dns-root-data"
                )
        includes = sorted(self.overrides.glob("*.conf")) if self.overrides.is_dir() else []
        address = self.layout.internal_address
        text = _TEMPLATES.get_template("unbound.conf.j2").render(
            address=address,
            port=DNS_PORT,
            # Recursion over IPv6 too when the stack has IPv6 (inet_protocols, Postfix).
            ipv6=bool(self.layout.settings.BIND_ADDRESS6),
            directory=self.etc,
            root_hints=ROOT_HINTS,
            root_key=ROOT_KEY,
            overrides=self.overrides,
            includes=includes,
        )
        write_file(self.conf, text)
        result = subprocess.run(
            [_program(CHECKCONF), str(self.conf)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            problem = (result.stderr or result.stdout).strip() or f"exit {result.returncode}"
            raise ServiceConfigError(f"unbound-checkconf {self.conf}: {problem}")

    def command(self) -> list[str]:
        # -d: stay in the foreground; -p: no pid file (the runner knows the pid).
        return [_program(UNBOUND), "-d", "-p", "-c", str(self.conf)]

    def readiness(self) -> Readiness:
        return Readiness(tcp=((self.layout.internal_address, DNS_PORT),))
