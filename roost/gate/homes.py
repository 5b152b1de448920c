"""Each user's home, made before Dovecot first needs it (as pam_mkhomedir does for logins).

The home is the user's Maildir (``ROOT/mail/<email>``, Dovecot's ``mail_home``). Dovecot
creates it only when it first stores mail, but at a first delivery it opens the home's duplicate
database (``.dovecot.lda-dupes``, used by Sieve ``duplicate`` and ``vacation``) before that,
fails, and logs an error; the first message's tracking is then lost. The userdb lookup is
the first thing Dovecot asks about a user, so the gate makes the home right there.

The gate runs as root and the address comes from the store, so the path is made safe by
construction (:func:`roost.layout.home_path`): whatever the address holds ('/', '..', a
symlink left in the mail directory), a home outside ``ROOT/mail`` is refused, never created
or chowned.
"""

from __future__ import annotations

import logging
import os
import pwd

from roost.layout import MAIL_OWNER, Layout

__all__ = ["MailHomes"]

log = logging.getLogger("roost.gate")


class MailHomes:
    def __init__(self, layout: Layout) -> None:
        self._layout = layout
        self._made: set[str] = set()
        owner = pwd.getpwnam(MAIL_OWNER)
        self._uid, self._gid = owner.pw_uid, owner.pw_gid

    def ensure(self, email: str) -> None:
        """Create ``email``'s home, owned by the mail user, unless it is there already.

        Raises :class:`~roost.layout.UnsafeHome` for an address whose home would lie
        outside the mail directory; nothing is created then.
        """
        if email in self._made:
            return
        home = self._layout.mail_home(email)
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
