"""Dovecot's userdb as a file the gate writes at each index load, so a delivery asks nobody.

Every LMTP delivery and every login makes Dovecot look the user up (does it exist, its
``quota_rule``). Asking the gate over HTTP each time cost a round trip per message, and
Dovecot's auth cache cannot hold only the userdb's answers: in Dovecot 2.3 the cache serves
the passdb too, and a cached Lua passdb answer (``nopassword``) would let any password in,
while the empty ``cache_key=`` that should keep the passdb out crashes its auth process.

So the gate writes the answers where Dovecot reads them without asking: a passwd-file
(https://doc.dovecot.org/2.3/configuration_manual/authentication/passwd_file/), first in
Dovecot's userdb list, written whenever the index loads a new store state (the CLI, the
web, the API and the generation poll all make it load) and replaced whole by a rename.
Dovecot looks at the file's mtime and size at most once a second and reads it again when
either changed; every file the gate writes gets an mtime one second past the one before
at least, so two writes within a second are never taken for one.

A user is in the file once their home exists (one scan of ``ROOT/mail`` per write): the
first lookup of a new user still goes to the gate's ``/dovecot/userdb/``, which makes the
home (:mod:`roost.gate.homes`) and then asks for the file to be written again. A user who
is not in the file (new, or an address Dovecot's format cannot hold) falls through to the
Lua userdb, which answers as before; a deleted user is gone from the file at the load that
follows the deletion.

Format: ``<user>:::::::userdb_quota_rule=*:bytes=<n>`` (``user:password:uid:gid:gecos:home:
shell:extra fields``); empty fields take dovecot.conf's mail_uid, mail_gid and mail_home.
Dovecot 2.3.19 takes an extra field as a userdb field only with its ``userdb_`` prefix,
even in a userdb-only passwd-file (seen with ``doveadm user``).
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

from roost.core.directory import Directory, UserEntry

__all__ = ["UserdbFile", "userdb_lines"]

log = logging.getLogger("roost.gate")

#: Seconds the gate waits after a new home before writing the file again (homes come in
#: bursts: a first delivery to many new users).
REWRITE_DELAY = 1.0
#: Dovecot's auth process, which reads the file, runs in this group.
DOVECOT_GROUP = "dovecot"


def _to_dovecot(path: Path) -> None:
    """Give ``path`` to Dovecot's group (``0640``/``0750`` files are then its to read)."""
    # No Dovecot here (tests), or not root: the mode still keeps the file private.
    with contextlib.suppress(KeyError, PermissionError):
        os.chown(path, -1, grp.getgrnam(DOVECOT_GROUP).gr_gid)


def _fits(email: str) -> bool:
    """Whether passwd-file can hold the address: no field separator, no blank, printable."""
    return email.isprintable() and not any(c in email for c in ": \t#")


def userdb_lines(users: Iterable[UserEntry], homes: set[str]) -> str:
    """The file's text: one line per user whose home exists and whose address fits."""
    lines = [
        f"{user.email}:::::::userdb_quota_rule=*:bytes={user.quota_bytes}\n"
        for user in users
        if user.email in homes and _fits(user.email)
    ]
    return "".join(sorted(lines))


class UserdbFile:
    """Writes the passwd-file at each index load and after a new home was made."""

    def __init__(self, path: Path, mail_root: Path, directory: Directory | None = None) -> None:
        self._path = path
        self._mail_root = mail_root
        self._directory = directory or Directory()
        self._last_mtime = 0
        #: What the file holds, as last written: a load that changes no user (an alias, a
        #: domain setting) leaves the file alone, and Dovecot has nothing to read again.
        self._written: str | None = None
        #: The users in it.
        self._listed: frozenset[str] = frozenset()
        self._pending: asyncio.TimerHandle | None = None
        self._rewriting: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def loaded(self, directory: Directory) -> None:
        """``Index.after_load``: write the file for the new Directory before lookups go on."""
        self._directory = directory
        await self.write()

    def home_made(self, email: str) -> None:
        """The gate's userdb answered for ``email`` (and made the home): write the file
        again soon, with that user in it, unless the file cannot hold them."""
        if email in self._listed or not _fits(email):
            return
        if self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(REWRITE_DELAY, self._rewrite)

    def _rewrite(self) -> None:
        self._pending = None
        self._rewriting = asyncio.get_running_loop().create_task(self.write())

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._rewriting is not None:
            self._rewriting.cancel()

    async def write(self) -> None:
        async with self._lock:
            directory = self._directory
            try:
                await asyncio.get_running_loop().run_in_executor(None, self._write, directory)
            except OSError as exc:
                # Dovecot then answers from the file it has, and the Lua userdb for the rest.
                log.warning("cannot write Dovecot's userdb file %s: %s", self._path, exc)

    def _homes(self) -> set[str]:
        try:
            with os.scandir(self._mail_root) as entries:
                return {entry.name for entry in entries if entry.is_dir(follow_symlinks=False)}
        except FileNotFoundError:
            return set()

    def _write(self, directory: Directory) -> None:
        text = userdb_lines(directory.users.values(), self._homes())
        if text == self._written and self._path.is_file():
            return
        if not self._path.parent.is_dir():
            self._path.parent.mkdir(mode=0o750, parents=True)
            _to_dovecot(self._path.parent)
        tmp = self._path.with_name(self._path.name + ".new")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        _to_dovecot(tmp)
        # Dovecot compares whole seconds: each file gets a later one than the one before.
        mtime = max(int(time.time()), self._last_mtime + 1)
        os.utime(tmp, (mtime, mtime))
        os.replace(tmp, self._path)
        self._last_mtime = mtime
        self._written = text
        self._listed = frozenset(line.partition(":")[0] for line in text.splitlines())
