"""The web application (sign-in, account and admin pages, API, autoconfig) under uvicorn.

It renders no configuration file: like the gate it reads the runner's settings from its
environment. It listens only on ``ROOT/run/web/web.sock``, in a directory
``0750 root:www-data``, so that root and nginx's workers alone can connect; nginx is then
the only source of the client address headers the app believes (roost.web.client).
It runs when the web has something to serve: pages (WEB_ADMIN not empty) or the API
(API=true), as Mailu's front proxies its admin; otherwise no process is started.
"""

from __future__ import annotations

import grp
import os
import sys
from dataclasses import dataclass, field

from roost.layout import NGINX_USER
from roost.services.base import Readiness, Service, ServiceConfigError, roost_environment
from roost.settings import Settings

__all__ = ["WebService", "web_enabled"]

#: Longest Unix socket path (sockaddr_un.sun_path less its terminating NUL).
_SUN_PATH_MAX = 107


def web_enabled(settings: Settings) -> bool:
    """The web runs when it has pages (WEB_ADMIN), an API to serve (API=true) or the
    webmail's single sign-on to answer (WEBMAIL=roundcube)."""
    return bool(settings.WEB_ADMIN) or settings.API or bool(settings.webmail_path)


@dataclass
class WebService(Service):
    name: str = field(init=False, default="web")
    # Sessions live in Redis; every sign-in is the gate's decision.
    after: tuple[str, ...] = field(init=False, default=("redis", "gate"))

    @classmethod
    def enabled(cls, settings: Settings) -> bool:
        return web_enabled(settings)

    def render(self) -> None:
        """The socket directory, ``0750 root:www-data``, without a stale socket."""
        socket = self.layout.web_socket
        if len(os.fsencode(socket)) > _SUN_PATH_MAX:
            raise ServiceConfigError(
                f"socket path {socket} is longer than {_SUN_PATH_MAX} bytes; use a shorter ROOT"
            )
        directory = socket.parent
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o750)
        try:
            gid = grp.getgrnam(NGINX_USER).gr_gid
        except KeyError:
            raise ServiceConfigError(
                f"group {NGINX_USER!r} does not exist; install the Debian package nginx"
            ) from None
        try:
            os.chown(directory, 0, gid)
        except PermissionError:
            raise ServiceConfigError(
                f"{directory}: cannot give it to the {NGINX_USER} group; run Roost as root"
            ) from None
        socket.unlink(missing_ok=True)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "roost.web"]

    def readiness(self) -> Readiness:
        return Readiness(unix_sockets=(self.layout.web_socket,))

    def environment(self) -> dict[str, str]:
        return roost_environment(self.layout.settings)
