"""Fetched accounts as a supervised process (FETCHMAIL_ENABLED).

Mailu runs a Python loop beside fetchmail; so does Roost: ``roost up`` supervises
``python -m roost.fetcher``, which every FETCHMAIL_DELAY seconds runs Debian's
``fetchmail`` once per account (:mod:`roost.services.fetchmail.rc` writes its run
control). The loop listens nowhere, so it is ready once started; it waits for Dovecot
(LMTP) and Postfix (accounts to scan), where it delivers.

fetchmail parses what remote servers send, so it does not run as root: it runs as
Postfix's unprivileged account, with no other groups, no capabilities and
``no_new_privs`` (setpriv(1)). That account, and root, are the only ones Dovecot's LMTP
socket lets in (``0600 postfix``), and fetchmail must deliver there. Its home,
``ROOT/fetchmail``, is its own (``0700``) and holds each account's UID memory.
"""

from __future__ import annotations

import os
import pwd
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from roost.services.base import Service, ServiceConfigError, roost_environment
from roost.settings import Settings

__all__ = ["RUN_AS", "FetchmailService", "find_fetchmail", "run_as"]

#: The account fetchmail runs as (see the module's doc).
RUN_AS = "postfix"
_SYSTEM_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"


def find_fetchmail() -> str:
    found = shutil.which("fetchmail", path=_SYSTEM_PATH)
    if found is None:
        raise ServiceConfigError(
            "FETCHMAIL_ENABLED needs fetchmail; install the Debian package fetchmail"
        )
    return found


def run_as() -> list[str]:
    """The command prefix that runs what follows as :data:`RUN_AS`, without privileges."""
    setpriv = shutil.which("setpriv", path=_SYSTEM_PATH)
    if setpriv is None:
        raise ServiceConfigError("setpriv is not installed; install the Debian package util-linux")
    return [
        setpriv,
        f"--reuid={RUN_AS}",
        f"--regid={RUN_AS}",
        "--clear-groups",
        "--no-new-privs",
        "--bounding-set=-all",
        "--inh-caps=-all",
        "--",
    ]


def _owner() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(RUN_AS)
    except KeyError:
        raise ServiceConfigError(
            f"the account {RUN_AS!r} does not exist; install the Debian package postfix"
        ) from None


@dataclass
class FetchmailService(Service):
    name: str = field(init=False, default="fetchmail")
    after: Sequence[str] = field(init=False, default=("dovecot", "postfix"))

    @classmethod
    def enabled(cls, settings: Settings) -> bool:
        return settings.FETCHMAIL_ENABLED

    def render(self) -> None:
        """fetchmail's home, its alone; nothing else to write (the run control is made
        per account and run, on fetchmail's standard input)."""
        find_fetchmail()
        run_as()
        owner = _owner()
        home = self.layout.fetchmail_home
        home.mkdir(parents=True, exist_ok=True)
        os.chown(home, owner.pw_uid, owner.pw_gid)
        home.chmod(0o700)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "roost.fetcher"]

    def environment(self) -> dict[str, str]:
        return roost_environment(self.layout.settings)
