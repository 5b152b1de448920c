"""The web application (sign-in, account and admin pages, API, autoconfig) under uvicorn.

It renders no configuration file: like the gate it reads the runner's settings from its
environment. It runs as the system user ``_roost-web`` (made here on first use) with no
capabilities and ``no_new_privs`` (``setpriv``, :func:`roost.services.base.confined`), so
a flaw in the most exposed Python process gets that user's files, not root's. It may use:

* its socket, ``ROOT/run/web/web.sock``, in a directory ``0750 _roost-web:www-data``, so
  that nginx's workers alone can connect; nginx is then the only source of the client
  address headers the app believes (roost.web.client);
* the gate's sockets for the web (``ROOT/run/gate-web``, ``0750 root:_roost-web``): its
  sign-ins and the reload after a change (roost.gate.server);
* Redis's socket (sessions in db 3, the rate limits it shares with the gate), through
  ``redis``, its one supplementary group (roost.services.redis);
* the SQLite store and the DKIM keys, by its group (``roost init``,
  :mod:`roost.bootstrap.prepare`, gives them to it).

It runs when the web has something to serve: pages (WEB_ADMIN not empty) or the API
(API=true), as Mailu's front proxies its admin; otherwise no process (and no user).
"""

from __future__ import annotations

import grp
import os
import pwd
import sys
from dataclasses import dataclass, field

from roost.layout import NGINX_USER, WEB_USER
from roost.services.base import (
    Readiness,
    Service,
    ServiceConfigError,
    confined,
    ensure_system_user,
    roost_environment,
)
from roost.settings import Settings

__all__ = ["REDIS_GROUP", "USER", "WebService", "web_account", "web_enabled"]

#: Longest Unix socket path (sockaddr_un.sun_path less its terminating NUL).
_SUN_PATH_MAX = 107
#: The system user (and group) the web application runs as.
USER = WEB_USER
#: The web process's only supplementary group: Redis's socket is ``0770 redis:redis``.
REDIS_GROUP = "redis"


def web_enabled(settings: Settings) -> bool:
    """The web runs when it has pages (WEB_ADMIN), an API to serve (API=true) or the
    webmail's single sign-on to answer (WEBMAIL=roundcube)."""
    return bool(settings.WEB_ADMIN) or settings.API or bool(settings.webmail_path)


def web_account() -> pwd.struct_passwd:
    """The web's system user, created with its own group when it is missing."""
    return ensure_system_user(USER, "Roost web application")


def _gid(group: str, package: str) -> int:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ServiceConfigError(
            f"group {group!r} does not exist; install the Debian package {package}"
        ) from None


@dataclass
class WebService(Service):
    name: str = field(init=False, default="web")
    # Sessions live in Redis; every sign-in is the gate's decision.
    after: tuple[str, ...] = field(init=False, default=("redis", "gate"))

    @classmethod
    def enabled(cls, settings: Settings) -> bool:
        return web_enabled(settings)

    def render(self) -> None:
        """The socket directory, ``0750 _roost-web:www-data``, without a stale socket."""
        socket = self.layout.web_socket
        if len(os.fsencode(socket)) > _SUN_PATH_MAX:
            raise ServiceConfigError(
                f"socket path {socket} is longer than {_SUN_PATH_MAX} bytes; use a shorter ROOT"
            )
        account = web_account()
        nginx_gid = _gid(NGINX_USER, "nginx")
        _gid(REDIS_GROUP, "redis-server")
        directory = socket.parent
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o750)
        try:
            # The web makes its socket here; nginx's workers (the group) may open it.
            os.chown(directory, account.pw_uid, nginx_gid)
        except PermissionError:
            raise ServiceConfigError(
                f"{directory}: cannot give it to {USER} and the {NGINX_USER} group; "
                "run Roost as root"
            ) from None
        socket.unlink(missing_ok=True)

    def command(self) -> list[str]:
        # -P: nothing is imported from the directory the runner was started in.
        python = [sys.executable, "-P", "-m", "roost.web"]
        return confined(USER, USER, python, groups=(REDIS_GROUP,))

    def readiness(self) -> Readiness:
        return Readiness(unix_sockets=(self.layout.web_socket,))

    def environment(self) -> dict[str, str]:
        return roost_environment(self.layout.settings)
