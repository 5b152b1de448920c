"""MTA-STS (RFC 8461): postfix-mta-sts-resolver's daemon as Postfix's policy socketmap.

For each destination domain Postfix asks the daemon, which looks up ``_mta-sts.<domain>``,
fetches ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` and answers a policy such as
``secure match=mx.example.com servername=hostname`` for a domain in ``enforce`` mode
(``testing`` too when DEFER_ON_TLS_ERROR, as Mailu's ``strict_testing``). Postfix asks it
after the override map and the gate's DANE check (roost.services.postfix).

The daemon parses what strangers' web and DNS servers send, so it runs as ``nobody`` with
``no_new_privs`` and no capabilities; its socket is in a set-group-ID directory of
Postfix's group, so only Postfix (and root) can open it. Its cache is in memory. It uses
the host's resolver: MTA-STS (RFC 8461) trusts CA-signed certificates, not DNSSEC.

Mailu's ``overrides/postfix/mta-sts-daemon.yml`` replaces the generated configuration;
Roost keeps only its own socket (``path``, ``mode``) in it, which Postfix must reach.
"""

from __future__ import annotations

import grp
import importlib.util
import os
import pwd
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from roost.services.base import Readiness, Service, ServiceConfigError, confined, write_file

__all__ = ["MtaStsService"]

#: The account the daemon runs as, and the group that alone may open its socket.
USER = "nobody"
GROUP = "nogroup"
POSTFIX_GROUP = "postfix"
#: The socket's mode (the daemon chmods it): Postfix's proxymap(8) runs in its group.
SOCKET_MODE = 0o660
#: Mailu's name, in overrides/postfix.
OVERRIDE = "mta-sts-daemon.yml"
#: postfix-mta-sts-resolver's own entry point (its ``mta-sts-daemon`` script).
_DAEMON = "import sys; from postfix_mta_sts_resolver.daemon import main; sys.exit(main())"


def _id(name: str, lookup: Any, package: str) -> int:
    try:
        return int(lookup(name)[2])
    except KeyError:
        raise ServiceConfigError(
            f"{name!r} does not exist on this system; install the Debian package {package}"
        ) from None


@dataclass
class MtaStsService(Service):
    name: str = field(init=False, default="mtasts")

    @property
    def conf(self) -> Path:
        return self.etc / "mta-sts-daemon.yml"

    def config(self) -> dict[str, Any]:
        """The daemon's configuration: Mailu's values, or the user's file with our socket."""
        override = self.layout.overrides / "postfix" / OVERRIDE
        if override.is_file():
            try:
                loaded = yaml.safe_load(override.read_text(encoding="utf-8")) or {}
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
                raise ServiceConfigError(f"{override}: not readable YAML: {exc}") from None
            if not isinstance(loaded, dict):
                raise ServiceConfigError(f"{override}: must be a YAML mapping of settings")
            config: dict[str, Any] = loaded
        else:
            config = {
                "shutdown_timeout": 3,
                "cache": {"type": "internal", "options": {"cache_size": 10000}},
                "default_zone": {
                    "strict_testing": self.layout.settings.DEFER_ON_TLS_ERROR,
                    "timeout": 4,
                },
            }
        config.pop("host", None)
        config.pop("port", None)
        config["path"] = str(self.layout.mta_sts_socket)
        config["mode"] = SOCKET_MODE
        return config

    def render(self) -> None:
        """The configuration, and the socket's directory: the daemon's to write in,
        Postfix's group to enter (set-group-ID, so the socket gets that group)."""
        if importlib.util.find_spec("postfix_mta_sts_resolver") is None:
            raise ServiceConfigError(
                "MTA-STS needs the Python package postfix-mta-sts-resolver; reinstall Roost "
                "with its dependencies (pip install roost)"
            )
        uid = _id(USER, pwd.getpwnam, "base-passwd")
        _id(GROUP, grp.getgrnam, "base-passwd")
        postfix_gid = _id(POSTFIX_GROUP, grp.getgrnam, "postfix")
        text = "# Written by roost/services/mtasts at every start; do not edit.\n"
        text += yaml.safe_dump(self.config(), sort_keys=True)
        write_file(self.conf, text)
        socket = self.layout.mta_sts_socket
        socket.parent.mkdir(parents=True, exist_ok=True)
        os.chown(socket.parent, uid, postfix_gid)
        socket.parent.chmod(0o2750)
        socket.unlink(missing_ok=True)

    def command(self) -> list[str]:
        return confined(USER, GROUP, [sys.executable, "-I", "-c", _DAEMON, "-c", str(self.conf)])

    def readiness(self) -> Readiness:
        return Readiness(unix_sockets=(self.layout.mta_sts_socket,))
