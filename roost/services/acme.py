"""certbot's renewals as a supervised process (TLS_FLAVOR letsencrypt, mail-letsencrypt).

Mailu's front container runs certbot in a loop beside nginx; Roost has the runner start
``python -m roost.tls.acme`` (roost.tls.acme.run) once nginx answers, because certbot's
HTTP-01 challenges are served by nginx on port 80. It renders nothing of its own: nginx
serves the challenge directory (roost.services.nginx). It listens nowhere, so it is ready
once started; a crash is restarted like any daemon's and leaves the served pair alone.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from roost.services.base import Service, ServiceConfigError, roost_environment
from roost.settings import Settings

__all__ = ["AcmeService"]


@dataclass
class AcmeService(Service):
    name: str = field(init=False, default="acme")
    after: Sequence[str] = field(init=False, default=("nginx",))

    @classmethod
    def enabled(cls, settings: Settings) -> bool:
        return settings.acme

    def render(self) -> None:
        """The challenge directory nginx serves (``www-data`` reads the token files)."""
        settings = self.layout.settings
        if not settings.port_enabled(80):
            raise ServiceConfigError(
                f"TLS_FLAVOR={settings.TLS_FLAVOR} needs port 80 in PORTS: the CA fetches "
                "its HTTP-01 challenge there (RFC 8555, section 8.3); add 80 to PORTS or "
                "use TLS_FLAVOR=cert"
            )
        webroot = self.layout.acme_webroot
        webroot.mkdir(parents=True, exist_ok=True)
        webroot.chmod(0o755)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "roost.tls.acme"]

    def environment(self) -> dict[str, str]:
        return roost_environment(self.layout.settings)
