"""The gate as a supervised service: Roost's own daemon, started like the others.

It has no configuration file to render: it reads the same settings as the runner, handed
over in its environment, so the gate and the daemons it answers can never disagree about
ROOT, the bind address or a limit. It is ready when its faces answer: the socketmap
socket Postfix uses, the HTTP socket nginx uses and the HTTP port Dovecot uses.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from roost.gate.secret import write_secret
from roost.layout import GATE_HTTP_PORT
from roost.services.base import Readiness, Service, roost_environment


@dataclass
class GateService(Service):
    name: str = field(init=False, default="gate")
    after: tuple[str, ...] = field(init=False, default=("redis",))

    def render(self) -> None:
        """A new secret for Dovecot's requests, and the directory for its sockets.

        The secret is written here, before any daemon starts, so that Dovecot's Lua script
        and the gate read the same one; a gate restarted by the runner keeps it.
        """
        self.layout.gate_socketmap.parent.mkdir(parents=True, exist_ok=True)
        write_secret(self.layout.gate_http_secret)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "roost", "gate"]

    def readiness(self) -> Readiness:
        return Readiness(
            unix_sockets=(self.layout.gate_socketmap, self.layout.gate_http_socket),
            tcp=((self.layout.internal_address, GATE_HTTP_PORT),),
        )

    def environment(self) -> dict[str, str]:
        return roost_environment(self.layout.settings)
