"""Each user's home, made before Dovecot first needs it (as pam_mkhomedir does for logins).

The home is the user's Maildir (``ROOT/mail/<email>``, Dovecot's ``mail_home``). Dovecot
creates it only when it first stores mail, but at a first delivery it opens the home's duplicate
database (``.dovecot.lda-dupes``, used by Sieve ``duplicate`` and ``vacation``) before that,
fails, and logs an error; the first message's tracking is then lost. The userdb lookup is
the first thing Dovecot asks about a user, so the gate makes the home right there.

The gate runs as root and the address comes from the store, so the path is made safe by
construction (:func:`home_path`): whatever the address holds ('/', '..', a symlink left in
the mail directory), a home outside ``ROOT/mail`` is refused, never created or chowned.
"""

from __future__ import annotations

import logging
import os
import pwd
from pathlib import Path

from roost.layout import MAIL_OWNER, Layout

__all__ = ["MailHomes", "UnsafeHome", "home_path"]

log = logging.getLogger("roost.gate")


class UnsafeHome(ValueError):
    """An address whose home would not be a directory inside the mail directory."""


def home_path(mail_root: Path, email: str) -> Path:
    """``mail_root/<email>``, resolved, and refused unless it lies strictly inside mail_root.

    ``Path("/srv/mail") / "/etc/cron.d/x@example.com"`` is ``/etc/cron.d/x@example.com``: a
    join with an absolute part drops what came before, and ``..`` or a symbolic link can
    climb out as well. The check is on the resolved path, so each of these is caught.
    """
    if not email or "\0" in email:
        raise UnsafeHome(f"no home for the address {email!r}")
    root = Path(os.path.realpath(mail_root))
    home = Path(os.path.realpath(os.path.join(root, email)))
    if home == root or not home.is_relative_to(root):
        raise UnsafeHome(f"the home of {email!r} would be {home}, outside {root}")
    return home


class MailHomes:
    def __init__(self, layout: Layout) -> None:
        self._layout = layout
        self._made: set[str] = set()
        owner = pwd.getpwnam(MAIL_OWNER)
        self._uid, self._gid = owner.pw_uid, owner.pw_gid

    def ensure(self, email: str) -> None:
        """Create ``email``'s home, owned by the mail user, unless it is there already."""
        if email in self._made:
            return
        try:
            home = home_path(self._layout.mail, email)
        except UnsafeHome as exc:
            log.warning("not creating a home: %s", exc)
            return
        try:
            os.mkdir(home, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            # Dovecot still delivers without it; only the duplicate tracking suffers.
            log.warning("cannot create the home %s: %s", home, exc.strerror)
            return
        else:
            os.chown(home, self._uid, self._gid, follow_symlinks=False)
        self._made.add(email)
