"""SCAN_MACROS: Roost's olefy server, which Rspamd asks about every Office attachment.

Debian 12 packages no oletools, so it comes from PyPI with Roost itself (pyproject's
dependencies). The server (:mod:`roost.services.oletools.server`) listens on a Unix
socket that only Rspamd's group and root can open, and parses nothing itself: its worker
processes run olevba and mraptor on each document. All of it runs as ``nobody`` with
``no_new_privs`` and no capabilities, since every byte it parses comes from strangers.
Rspamd's side (which parts go there, the symbols, the reject) is in roost/services/rspamd.
"""

from __future__ import annotations

import grp
import os
import pwd
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from roost.services.base import Readiness, Service, ServiceConfigError, confined
from roost.settings import Settings

__all__ = ["OletoolsService"]

#: The account the scanner runs as: it owns nothing, so a parser bug owns nothing.
USER = "nobody"
GROUP = "nogroup"
#: Rspamd's workers run with this group; they alone (and root) may open the socket.
RSPAMD_GROUP = "_rspamd"


def _lookup(name: str, lookup: Callable[[str], Any], package: str) -> int:
    """The uid or gid of an account (field 2 of a passwd or group entry)."""
    try:
        entry = lookup(name)
    except KeyError:
        raise ServiceConfigError(
            f"{name!r} does not exist on this system; install the Debian package {package}"
        ) from None
    return int(entry[2])


@dataclass
class OletoolsService(Service):
    name: str = field(init=False, default="oletools")

    @classmethod
    def enabled(cls, settings: Settings) -> bool:
        return settings.SCAN_MACROS

    def render(self) -> None:
        """The socket's directory: the scanner's to write in, Rspamd's group to enter.

        Set-group-ID, so the socket the scanner makes there (as ``nobody``, who cannot
        chgrp it) belongs to Rspamd's group; ``0660`` comes from the server's umask.
        """
        try:
            import oletools.olevba  # noqa: F401
        except ImportError:
            raise ServiceConfigError(
                "SCAN_MACROS needs the Python package oletools; reinstall Roost with its "
                "dependencies (pip install roost)"
            ) from None
        uid = _lookup(USER, pwd.getpwnam, "base-passwd")
        rspamd_gid = _lookup(RSPAMD_GROUP, grp.getgrnam, "rspamd")
        _lookup(GROUP, grp.getgrnam, "base-passwd")
        socket = self.layout.oletools_socket
        run = socket.parent
        run.mkdir(parents=True, exist_ok=True)
        os.chown(run, uid, rspamd_gid)
        run.chmod(0o2750)
        socket.unlink(missing_ok=True)

    def command(self) -> list[str]:
        server = "roost.services.oletools.server"
        socket = f"--socket={self.layout.oletools_socket}"
        return confined(USER, GROUP, [sys.executable, "-I", "-m", server, socket])

    def readiness(self) -> Readiness:
        return Readiness(unix_sockets=(self.layout.oletools_socket,))
