"""Redis: rate-limit state for the gate (and, later, web sessions and Rspamd).

Roost starts its own Redis with its own configuration, listening on a Unix socket under
ROOT only, so stacks never share data and nothing listens on TCP. It runs as the Debian
``redis`` user: it holds no secrets the gate needs to protect from it, and a Redis bug
should not hand out root.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roost.services.base import (
    Readiness,
    Service,
    ServiceConfigError,
    template_environment,
    write_file,
)

__all__ = ["RedisService"]

_TEMPLATES = template_environment(__file__)

REDIS_SERVER = "redis-server"
# setpriv (util-linux) switches user without a login session, so the runner's signals
# and exit status pass straight through to redis-server.
SETPRIV = "setpriv"
USER = "redis"
# Only the owner (redis) and root (the gate) may connect; other clients that need it
# later (Rspamd) will get a shared group instead of a wider mode.
SOCKET_MODE = "700"


@dataclass
class RedisService(Service):
    """Renders redis.conf and prepares the directories for the ``redis`` user."""

    name: str = field(init=False, default="redis")

    @property
    def conf(self) -> Path:
        return self.etc / "redis.conf"

    def _account(self) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(USER)
        except KeyError:
            raise ServiceConfigError(
                f"user {USER!r} does not exist; install the Debian package redis-server"
            ) from None

    def context(self) -> dict[str, Any]:
        return {
            "socket": self.layout.redis_socket,
            "socket_mode": SOCKET_MODE,
            "data": self.layout.redis_data,
        }

    def render(self) -> None:
        """Write redis.conf; give the data and socket directories to the redis user.

        Redis must create its socket and write its data directory after dropping to
        ``redis``; the configuration itself stays root's, readable by all.
        """
        account = self._account()
        for directory in (self.layout.redis_data, self.layout.redis_socket.parent):
            directory.mkdir(parents=True, exist_ok=True)
            try:
                os.chown(directory, account.pw_uid, account.pw_gid)
            except PermissionError:
                raise ServiceConfigError(
                    f"{directory}: cannot give it to the {USER} user; run Roost as root"
                ) from None
            directory.chmod(0o750)
        write_file(self.conf, _TEMPLATES.get_template("redis.conf.j2").render(self.context()))

    def command(self) -> list[str]:
        return [
            SETPRIV,
            f"--reuid={USER}",
            f"--regid={USER}",
            "--init-groups",
            "--",
            REDIS_SERVER,
            str(self.conf),
        ]

    def readiness(self) -> Readiness:
        return Readiness(unix_sockets=(self.layout.redis_socket,))
