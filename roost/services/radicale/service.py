"""Radicale (``WEBDAV=radicale``): CalDAV and CardDAV at ``/webdav/``, as Mailu's webdav.

Radicale comes from PyPI with Roost itself (pyproject's dependencies): Debian 12's is
older, and Roost's own Python must import it to serve it on a Unix socket
(:mod:`roost.services.radicale.server`), which Radicale's built-in server cannot do. The
socket's directory is ``0750 _radicale:www-data``: Radicale believes the user nginx names
in ``X-Remote-User`` after the gate's login decision (nginx's ``webdav.conf.j2``), so
nothing else on the host may reach it. It runs as the system user ``_radicale``, made
here on first use, with no capabilities and ``no_new_privs``; the collections live in
``ROOT/dav``, ``0700`` of that user.
"""

from __future__ import annotations

import grp
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roost.layout import NGINX_USER
from roost.services.base import (
    Readiness,
    Service,
    ServiceConfigError,
    confined,
    ensure_system_user,
    template_environment,
    write_file,
)
from roost.settings import Settings
from roost.settings.model import WEBDAV_PATH

__all__ = ["SCRIPT_NAME", "USER", "RadicaleService", "webdav_enabled"]

_TEMPLATES = template_environment(__file__)

#: The system user Radicale runs as; it owns ``ROOT/dav`` and nothing else.
USER = "_radicale"
#: Where nginx serves Radicale.
SCRIPT_NAME = WEBDAV_PATH


def webdav_enabled(settings: Settings) -> bool:
    return bool(settings.webdav_path)


@dataclass
class RadicaleService(Service):
    name: str = field(init=False, default="radicale")

    @classmethod
    def enabled(cls, settings: Settings) -> bool:
        return webdav_enabled(settings)

    @property
    def conf(self) -> Path:
        return self.etc / "config"

    def context(self) -> dict[str, Any]:
        settings = self.layout.settings
        return {
            "socket": self.layout.radicale_socket,
            "script_name": SCRIPT_NAME,
            "storage": self.layout.dav,
            # The largest upload nginx lets through (its client_max_body_size) and more.
            "max_content_length": max(settings.MESSAGE_SIZE_LIMIT, 100_000_000),
            "log_level": settings.LOG_LEVEL.lower(),
        }

    def render(self) -> None:
        account = ensure_system_user(USER, "Roost CalDAV/CardDAV (Radicale)")
        try:
            nginx_gid = grp.getgrnam(NGINX_USER).gr_gid
        except KeyError:
            raise ServiceConfigError(
                f"group {NGINX_USER!r} does not exist; install the Debian package nginx"
            ) from None
        storage = self.layout.dav
        storage.mkdir(parents=True, exist_ok=True)
        os.chown(storage, account.pw_uid, account.pw_gid)
        storage.chmod(0o700)
        socket = self.layout.radicale_socket
        run = socket.parent
        run.mkdir(parents=True, exist_ok=True)
        # Radicale makes its socket here; nginx's workers (the group) may open it, no one else.
        os.chown(run, account.pw_uid, nginx_gid)
        run.chmod(0o750)
        socket.unlink(missing_ok=True)
        write_file(self.conf, _TEMPLATES.get_template("config.j2").render(self.context()))

    def command(self) -> list[str]:
        server = "roost.services.radicale.server"
        arguments = [f"--config={self.conf}", f"--socket={self.layout.radicale_socket}"]
        return confined(USER, USER, [sys.executable, "-I", "-m", server, *arguments])

    def readiness(self) -> Readiness:
        return Readiness(unix_sockets=(self.layout.radicale_socket,))
