"""Redis: rate-limit state for the gate (and, later, web sessions and Rspamd).

Roost starts its own Redis with its own configuration, listening on a Unix socket under
ROOT only, so stacks never share data and nothing listens on TCP. It runs as the Debian
``redis`` user: it holds no secrets the gate needs to protect from it, and a Redis bug
should not hand out root. Its socket is ``0770 redis:redis`` in a directory ``0750
redis:redis``: root (the gate) and the web application, which runs as ``_roost-web`` with
``redis`` as its one supplementary group (roost.services.web), may connect.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from roost.services.base import (
    Readiness,
    Service,
    ServiceConfigError,
    template_environment,
    write_file,
)

__all__ = ["RedisService", "RspamdRedisService"]

_TEMPLATES = template_environment(__file__)

REDIS_SERVER = "redis-server"
# setpriv (util-linux) switches user without a login session, so the runner's signals
# and exit status pass straight through to redis-server.
SETPRIV = "setpriv"
USER = "redis"
# The owner (redis), its group (the web application's process is in it) and root (the
# gate) may connect; nobody else.
SOCKET_MODE = "770"


@dataclass
class RedisService(Service):
    """Renders redis.conf and prepares the directories for the ``redis`` user.

    This instance holds the gate's rate-limit windows and the web's sessions, which may be
    lost at a restart (no snapshot).
    """

    name: str = field(init=False, default="redis")
    #: the system user the server runs as; it alone (and root) may open the socket
    user: ClassVar[str] = USER
    package: ClassVar[str] = "redis-server"
    #: keep a snapshot on disk across restarts
    persistent: ClassVar[bool] = False
    #: unixsocketperm
    socket_mode: ClassVar[str] = SOCKET_MODE

    @property
    def conf(self) -> Path:
        return self.etc / "redis.conf"

    @property
    def socket(self) -> Path:
        return self.layout.redis_socket

    @property
    def data(self) -> Path:
        return self.layout.redis_data

    def _account(self) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(self.user)
        except KeyError:
            raise ServiceConfigError(
                f"user {self.user!r} does not exist; install the Debian package {self.package}"
            ) from None

    def context(self) -> dict[str, Any]:
        return {
            "socket": self.socket,
            "socket_mode": self.socket_mode,
            "data": self.data,
            "persistent": self.persistent,
        }

    def render(self) -> None:
        """Write redis.conf; give the data and socket directories to the server's user.

        Redis must create its socket and write its data directory after dropping to its
        user; the configuration itself stays root's, readable by all.
        """
        account = self._account()
        for directory in (self.data, self.socket.parent):
            directory.mkdir(parents=True, exist_ok=True)
            try:
                os.chown(directory, account.pw_uid, account.pw_gid)
            except PermissionError:
                raise ServiceConfigError(
                    f"{directory}: cannot give it to the {self.user} user; run Roost as root"
                ) from None
            directory.chmod(0o750)
        write_file(self.conf, _TEMPLATES.get_template("redis.conf.j2").render(self.context()))

    def command(self) -> list[str]:
        return [
            SETPRIV,
            f"--reuid={self.user}",
            f"--regid={self.user}",
            "--init-groups",
            "--",
            REDIS_SERVER,
            str(self.conf),
        ]

    def readiness(self) -> Readiness:
        return Readiness(unix_sockets=(self.socket,))


@dataclass
class RspamdRedisService(RedisService):
    """Rspamd's own Redis (Bayes statistics, greylisting, history, DKIM keys the gate puts
    there): run as ``_rspamd``, so Rspamd and root alone can reach it, and a compromised
    Rspamd cannot read or forge the web's sessions or the gate's rate limits in the
    other instance. Bayes learning is worth keeping, so it snapshots to disk.
    """

    name: str = field(init=False, default="rspamd-redis")
    user: ClassVar[str] = "_rspamd"
    package: ClassVar[str] = "rspamd"
    persistent: ClassVar[bool] = True
    #: Rspamd (the owner) and root (the gate) only: no group of this one is shared.
    socket_mode: ClassVar[str] = "700"

    @property
    def socket(self) -> Path:
        return self.layout.rspamd_redis_socket

    @property
    def data(self) -> Path:
        return self.layout.rspamd_redis_data
