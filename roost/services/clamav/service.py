"""ClamAV for Rspamd's antivirus module (``ANTIVIRUS=clamav``), from Debian's packages.

clamd listens on a Unix socket of group ``_rspamd`` only; Rspamd streams every MIME part
to it and refuses mail that carries a virus (roost/services/rspamd). freshclam, when
``ANTIVIRUS_UPDATES`` is on, keeps ``ANTIVIRUS_DATABASE`` current and tells clamd to reload.
Until the first signatures are there, clamd cannot start: the runner retries it, and
Rspamd answers senders "try again later" rather than let mail through unscanned.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
from collections.abc import Sequence
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
from roost.settings import Settings

__all__ = ["ClamdService", "FreshclamService"]

_TEMPLATES = template_environment(__file__)

USER = "clamav"
RSPAMD_GROUP = "_rspamd"
#: Signature files clamd loads (clamscan(1) "--database"); one is enough to start.
SIGNATURE_SUFFIXES = (".cvd", ".cld", ".cud", ".hdb", ".hsb", ".ndb", ".ldb", ".cdb", ".yara")


def _binary(name: str, package: str) -> str:
    path = shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise ServiceConfigError(f"{name} is not installed; install the Debian package {package}")
    return path


def _account() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        raise ServiceConfigError(
            f"user {USER!r} does not exist; install the Debian package clamav-daemon"
        ) from None


@dataclass
class ClamdService(Service):
    name: str = field(init=False, default="clamav")
    after: Sequence[str] = field(init=False, default=("freshclam",))

    @classmethod
    def enabled(cls, settings: Settings) -> bool:
        return settings.ANTIVIRUS == "clamav"

    @property
    def conf(self) -> Path:
        return self.etc / "clamd.conf"

    def context(self) -> dict[str, Any]:
        settings = self.layout.settings
        return {
            "database": settings.ANTIVIRUS_DATABASE,
            "socket": self.layout.clamd_socket,
            "rspamd_group": RSPAMD_GROUP,
            # Base64 in MIME makes a part up to a third larger than its content.
            "stream_max": max(settings.MESSAGE_SIZE_LIMIT, 25 * 1024 * 1024),
        }

    def render(self) -> None:
        settings = self.layout.settings
        account = _account()
        try:
            rspamd_gid = grp.getgrnam(RSPAMD_GROUP).gr_gid
        except KeyError:
            raise ServiceConfigError(
                f"group {RSPAMD_GROUP!r} does not exist; install the Debian package rspamd"
            ) from None
        database = settings.ANTIVIRUS_DATABASE
        if not settings.ANTIVIRUS_UPDATES and not _has_signatures(database):
            raise ServiceConfigError(
                f"ANTIVIRUS_DATABASE {database} holds no ClamAV signatures and "
                "ANTIVIRUS_UPDATES is false: run freshclam once, or set ANTIVIRUS_UPDATES=true"
            )
        database.mkdir(parents=True, exist_ok=True)
        os.chown(database, account.pw_uid, account.pw_gid)
        run = self.layout.clamd_socket.parent
        run.mkdir(parents=True, exist_ok=True)
        os.chown(run, account.pw_uid, rspamd_gid)
        # Set-group-ID: the socket clamd makes in it belongs to Rspamd's group.
        run.chmod(0o2750)
        self.layout.clamd_socket.unlink(missing_ok=True)
        write_file(self.conf, _TEMPLATES.get_template("clamd.conf.j2").render(self.context()))

    def command(self) -> list[str]:
        return [_binary("clamd", "clamav-daemon"), f"--config-file={self.conf}"]

    def readiness(self) -> Readiness:
        return Readiness(unix_sockets=(self.layout.clamd_socket,))


@dataclass
class FreshclamService(Service):
    name: str = field(init=False, default="freshclam")

    @classmethod
    def enabled(cls, settings: Settings) -> bool:
        return settings.ANTIVIRUS == "clamav" and settings.ANTIVIRUS_UPDATES

    @property
    def conf(self) -> Path:
        return self.etc / "freshclam.conf"

    def render(self) -> None:
        account = _account()
        database = self.layout.settings.ANTIVIRUS_DATABASE
        database.mkdir(parents=True, exist_ok=True)
        os.chown(database, account.pw_uid, account.pw_gid)
        context = {
            "database": database,
            "clamd_conf": self.layout.service_etc("clamav") / "clamd.conf",
        }
        write_file(self.conf, _TEMPLATES.get_template("freshclam.conf.j2").render(context))

    def command(self) -> list[str]:
        return [
            _binary("freshclam", "clamav-freshclam"),
            "--daemon",
            "--foreground",
            f"--config-file={self.conf}",
        ]


def _has_signatures(database: Path) -> bool:
    return database.is_dir() and any(
        path.suffix in SIGNATURE_SUFFIXES for path in database.iterdir()
    )
