"""Prepare ROOT for a stack: directories, the store, the first admin, the certificate.

``roost up`` runs this before every start and ``roost init`` runs it alone, so it must be
idempotent: it creates what is missing, puts back the owners and modes the daemons rely on,
and leaves everything else alone. It returns messages for the user rather than printing,
so the caller decides where they go.

Owners and modes matter because the daemons drop privileges: Dovecot writes mail as the
``mail`` user, Postfix's daemons run as ``postfix``, and both must be able to traverse
every directory from ``/`` down to theirs. The web application runs as ``_roost-web``
(roost.services.web): when the stack runs it, the SQLite store and the DKIM keys are given
to that group, which is made here on first use.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from roost import tls
from roost.core import dkim
from roost.layout import WEB_USER, Layout
from roost.services.base import ServiceConfigError
from roost.services.web.service import web_account, web_enabled
from roost.settings import Settings
from roost.store.db import Store
from roost.store.entities import user as users
from roost.store.entities.names import ManageError, show_email, user_email
from roost.store.models import User

__all__ = ["BootstrapError", "initialise"]

OVERRIDE_SERVICES = ("postfix", "dovecot", "nginx", "rspamd")


class BootstrapError(RuntimeError):
    """ROOT cannot be prepared; the message names the path and what to change."""


@dataclass(frozen=True)
class Directory:
    path: Path
    mode: int
    user: str = "root"
    #: the group; None means the user's own group
    group: str | None = None


def directories(layout: Layout) -> list[Directory]:
    """Every directory of the stack with its owner and mode, parents first.

    ``data`` holds the store, so it is closed to other users; its group is ``postfix``
    because Postfix's data_directory lives below it and Postfix's unprivileged daemons
    (tlsmgr, verify) must traverse it. ``mail`` is the mail user's alone (Dovecot's
    mail_uid), ``redis`` the redis user's (Redis runs as it). ``queue`` must belong to
    root: Postfix builds its queue inside it. The service modules set the same owners.

    When the stack runs the web application (``web_group``), ``data`` is ``0751``: the web
    must reach the store in it, and may traverse it without listing it or adding anything
    (each entry has its own mode closed to others: the store ``0660 root:_roost-web``,
    Postfix's and Dovecot's directories their daemons'). ``dkim`` is ``2770 root:_roost-web``:
    the web makes, shows and removes keys (admin pages, API), and every file made there
    takes the group (setgid). Under an ACME flavor, ``certs/letsencrypt`` is ``0750
    root:_roost-web``: the web reads port 25's chain there (the TLSA record it suggests);
    the key in it is ``0600`` and certbot's own directories ``0700``, root's alone.
    """
    web = web_group(layout.settings)
    return [
        Directory(layout.root, 0o755),
        Directory(layout.data, 0o751 if web else 0o750, group=_existing_group("postfix")),
        Directory(layout.mail, 0o700, user="mail", group="mail"),
        Directory(layout.queue, 0o755),
        Directory(layout.certs, 0o755),
        Directory(layout.dkim, 0o2770, group=web) if web else Directory(layout.dkim, 0o750),
        *([Directory(layout.acme, 0o750, group=web)] if layout.settings.acme else []),
        Directory(layout.overrides, 0o755),
        *(Directory(layout.overrides / name, 0o755) for name in OVERRIDE_SERVICES),
        Directory(layout.redis_data, 0o750, user=_existing_user("redis")),
        Directory(layout.etc, 0o755),
        Directory(layout.run, 0o755),
        Directory(layout.log, 0o750),
    ]


def initialise(settings: Settings) -> list[str]:
    """Make ROOT ready for ``roost up``; the messages say what was created or changed."""
    layout = Layout(settings)
    messages: list[str] = []
    check_parents(layout.root)
    if not layout.root.exists():
        messages.append(f"created ROOT {layout.root}")
    for directory in directories(layout):
        ensure_directory(directory)
    messages += prepare_store(settings)
    check_store_reachable(settings)
    messages += share_dkim_keys(layout)
    messages += ensure_admin(settings)
    messages += tls.ensure(layout)
    messages += protect_key(layout)
    return messages


def check_parents(root: Path) -> None:
    """Refuse a ROOT the daemons' unprivileged users could not reach.

    A ROOT under /root (mode 0700) would start, then fail at the first delivery with a
    permission error deep in Dovecot's log; saying it now is kinder.
    """
    for parent in [*reversed(root.parents)]:
        try:
            mode = parent.stat().st_mode
        except FileNotFoundError:
            return
        if not mode & stat.S_IXOTH:
            raise BootstrapError(
                f"ROOT={root}: its parent {parent} is not searchable by other users "
                f"(mode {stat.S_IMODE(mode):04o}); Postfix and Dovecot run as their own "
                "users and must traverse it. Choose a ROOT elsewhere (the default is "
                f"/var/lib/roost) or run: chmod o+x {parent}"
            )


def ensure_directory(directory: Directory) -> None:
    """Create the directory if needed and set its mode (and, as root, its owner)."""
    path = directory.path
    if not path.is_dir():
        if path.exists() or path.is_symlink():
            raise BootstrapError(f"{path}: exists and is not a directory")
        path.mkdir(mode=directory.mode, parents=True)
    if os.geteuid() == 0:
        uid, gid = _ids(directory)
        info = path.stat()
        if (info.st_uid, info.st_gid) != (uid, gid):
            os.chown(path, uid, gid)
    if stat.S_IMODE(path.stat().st_mode) != directory.mode:
        os.chmod(path, directory.mode)


def _ids(directory: Directory) -> tuple[int, int]:
    try:
        user = pwd.getpwnam(directory.user)
    except KeyError:
        raise BootstrapError(
            f"{directory.path}: needs the system user {directory.user}, which does not "
            "exist; install the Debian packages (setup.sh does)"
        ) from None
    if directory.group is None:
        return user.pw_uid, user.pw_gid
    try:
        return user.pw_uid, grp.getgrnam(directory.group).gr_gid
    except KeyError:
        raise BootstrapError(
            f"{directory.path}: needs the system group {directory.group}, which does not exist"
        ) from None


def web_group(settings: Settings) -> str | None:
    """``_roost-web`` when the stack runs the web application (its user is made here if
    missing, so the group exists before the files are given to it); else None."""
    if not web_enabled(settings):
        return None
    if os.geteuid() == 0:
        try:
            web_account()
        except ServiceConfigError as exc:
            raise BootstrapError(str(exc)) from None
    return _existing_group(WEB_USER)


def _share_file(path: Path, mode: int, gid: int) -> bool:
    """Give the regular file ``path`` to ``gid`` with ``mode``; True when something changed.

    Opened without following a symbolic link: the directories this runs on are writable by
    the web's group, and root must not be led to change a file elsewhere.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # missing, or a symbolic link (ELOOP)
        return False
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return False
        changed = False
        if os.geteuid() == 0 and info.st_gid != gid:
            os.fchown(fd, -1, gid)
            changed = True
        if stat.S_IMODE(info.st_mode) != mode:
            os.fchmod(fd, mode)
            changed = True
        return changed
    finally:
        os.close(fd)


def _group_id(name: str | None) -> int:
    return grp.getgrnam(name).gr_gid if name else 0


def share_dkim_keys(layout: Layout) -> list[str]:
    """The DKIM key files: ``0640``, of the web's group when it runs (it shows each key's
    record and makes new keys), else of root's.

    A DKIM_PATH elsewhere under ROOT gets the directory ``dkim`` has; one outside ROOT is
    the administrator's, so only a message says what the web needs there.
    """
    web = web_group(layout.settings)
    gid = _group_id(web)
    mode = 0o2770 if web else 0o750
    directories = [layout.dkim]
    template = Path(layout.settings.DKIM_PATH)
    keys = dkim.key_path(layout.settings.DKIM_PATH, layout.root, "example.org", "s").parent
    messages = []
    if "{" not in str(template.parent) and keys != layout.dkim and keys.is_dir():
        if keys.is_relative_to(layout.root):
            ensure_directory(Directory(keys, mode, group=web))
            directories.append(keys)
        elif web and (keys.stat().st_gid != gid or keys.stat().st_mode & 0o070 != 0o070):
            messages.append(
                f"DKIM_PATH: the web runs as {WEB_USER} and cannot make or show keys in {keys}; "
                f"give it the directory: chgrp {WEB_USER} {keys}; chmod 2770 {keys}"
            )
    changed = [
        entry.name
        for directory in directories
        for entry in sorted(directory.iterdir())
        if not entry.name.startswith(".") and _share_file(entry, 0o640, gid)
    ]
    if changed:
        owner = f"group {web}" if web else "root alone"
        messages.append(f"DKIM keys given to {owner} (0640): {', '.join(changed)}")
    return messages


def _existing_user(name: str) -> str:
    """``name`` when that system user exists (Debian's package made it), else root."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        return "root"
    return name


def _existing_group(name: str) -> str | None:
    try:
        grp.getgrnam(name)
    except KeyError:
        return None
    return name


def prepare_store(settings: Settings) -> list[str]:
    """Create or migrate the store's schema; an SQLite file is made readable by root only,
    and by the web's group when the stack runs the web."""
    store = Store.from_settings(settings)
    try:
        before = store.revision()
        store.upgrade()
        after = store.revision()
    finally:
        store.dispose()
    messages = []
    if before is None:
        messages.append(f"created the store {store.url} (schema {after})")
    elif before != after:
        messages.append(f"migrated the store {store.url} from {before} to {after}")
    database = store.engine.url.database
    if store.engine.url.get_backend_name() == "sqlite" and database:
        _share_sqlite(settings, Path(database))
    return messages


def _share_sqlite(settings: Settings, path: Path) -> None:
    """The SQLite file: ``0600`` root's, or ``0660 root:_roost-web`` when the web runs.

    The web never creates a file beside the store, so its directory stays closed to it:
    SQLite, run as root, gives the ``-wal`` and ``-shm`` files it creates the database
    file's owner, group and mode (its unix VFS), and the gate, which starts before the web
    and keeps the store open, has made them; a process that is not the last to close the
    store does not remove them (sqlite.org/wal.html), and the web, which cannot, leaves
    them to root. Files left from before get the same mode and group here.
    """
    web = web_group(settings)
    gid = _group_id(web)
    mode = 0o660 if web else 0o600
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm", f"{path.name}-journal"):
        _share_file(path.with_name(name), mode, gid)


def check_store_reachable(settings: Settings) -> None:
    """Refuse an SQLite store outside ``ROOT/data`` that the web could not reach (ROOT's
    parents are :func:`check_parents`'s, ``ROOT/data`` is :func:`directories`')."""
    url = make_url(settings.database_uri)
    web = web_group(settings)
    if url.get_backend_name() != "sqlite" or not url.database or web is None:
        return
    directory = Path(url.database).parent
    if directory.resolve() == Layout(settings).data.resolve():
        return
    if not _traversable(directory, pwd.getpwnam(WEB_USER).pw_uid, _group_id(web)):
        raise BootstrapError(
            f"SQLITE_DATABASE_FILE: the web runs as {WEB_USER} and cannot reach the store in "
            f"{directory}; let it traverse that directory and its parents "
            f"(chgrp {WEB_USER} DIR; chmod g+x DIR), or keep the store under ROOT/data"
        )


def _traversable(directory: Path, uid: int, gid: int) -> bool:
    """Whether ``uid`` (whose only group that matters is ``gid``) may search ``directory``
    and every directory above it."""
    for step in (directory, *directory.parents):
        info = step.stat()
        if info.st_uid == uid:
            bit = stat.S_IXUSR
        elif info.st_gid == gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True


def ensure_admin(settings: Settings) -> list[str]:
    """The first global admin from INITIAL_ADMIN_*, with Mailu's modes.

    As in Mailu, ``create`` finding the user already there is reported, not fatal: the
    same settings are used at every start. Unlike Mailu, an empty INITIAL_ADMIN_PW creates
    nothing (setup.sh keeps the generated password out of the settings file and creates
    the admin once), and ``ifmissing`` is silent once the admin exists.
    """
    account = settings.INITIAL_ADMIN_ACCOUNT
    if not account:
        return []
    domain, password, mode = (
        settings.INITIAL_ADMIN_DOMAIN,
        settings.INITIAL_ADMIN_PW,
        settings.INITIAL_ADMIN_MODE,
    )
    store = Store.from_settings(settings)
    try:
        with store.session() as session:
            email = user_email(account, domain)
            shown = show_email(email)
            exists = session.get(User, email) is not None
            if not password:
                if exists:
                    return []
                return [
                    f"INITIAL_ADMIN_PW is empty: administrator {shown} not created; "
                    f"create it with `roost admin {account} {domain} -` (reads the password)"
                ]
            if exists and mode == "ifmissing":
                return []
            if exists and mode == "create":
                return [f"INITIAL_ADMIN_MODE=create: user '{shown}' exists, not created"]
            return [f"{users.admin(session, settings, account, domain, password, mode)} {shown}"]
    except ManageError as exc:
        raise BootstrapError(f"INITIAL_ADMIN_ACCOUNT={account}: {exc}") from None
    finally:
        store.dispose()


def protect_key(layout: Layout) -> list[str]:
    """Private keys are for root alone: the daemons read them before dropping privileges."""
    key = layout.key_file
    if not layout.settings.tls or not key.is_file():
        return []
    mode = stat.S_IMODE(key.stat().st_mode)
    if mode == 0o600:
        return []
    os.chmod(key, 0o600)
    return [f"{key}: mode {mode:04o} let other users read the private key; set to 0600"]
