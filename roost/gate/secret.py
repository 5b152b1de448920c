"""The per-stack secret Dovecot's Lua client proves itself with on the gate's TCP port.

Dovecot's ``dovecot.http.client`` speaks TCP only, and any local process can connect to a
TCP port; the gate therefore answers there only requests that carry this secret in the
``X-Roost-Secret`` header. It is written afresh at every ``roost up``, before any daemon
starts, into a file only root and the dovecot group can read (Dovecot's auth-worker
processes, which run the Lua passdb/userdb, are root in Dovecot 2.3), created with its
final mode so that it is never readable by anyone else, not even for an instant.
"""

from __future__ import annotations

import contextlib
import grp
import hmac
import os
import secrets
from pathlib import Path

__all__ = ["SECRET_HEADER", "matches", "read_secret", "write_secret"]

#: The request header that carries the secret (lower case, as the HTTP parser keys it).
SECRET_HEADER = "x-roost-secret"
#: The group of Dovecot's processes, the only ones besides root that may read the secret.
DOVECOT_GROUP = "dovecot"
#: 32 random bytes, hex: no character needs escaping in a header or a Lua string.
_SECRET_BYTES = 32


def _group_id(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return -1


def write_secret(path: Path, group: str = DOVECOT_GROUP) -> str:
    """Write a new secret to ``path`` (``0640 root:<group>``, directory ``0750``) and return it.

    The temporary file is opened with its final mode, given its group and filled before it
    replaces the old one, so the secret is never in a file with wider permissions.
    """
    value = secrets.token_hex(_SECRET_BYTES)
    gid = _group_id(group) if os.geteuid() == 0 else -1
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o750)
    if gid >= 0:
        os.chown(path.parent, 0, gid)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
    try:
        os.fchmod(fd, 0o640)  # whatever the umask
        if gid >= 0:
            os.fchown(fd, 0, gid)
        os.write(fd, (value + "\n").encode("ascii"))
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return value


def read_secret(path: Path) -> str | None:
    """The secret in ``path``, or None when there is no usable one."""
    try:
        value = path.read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return value if len(value) == 2 * _SECRET_BYTES else None


def matches(offered: str, secret: str) -> bool:
    """Constant-time comparison, so the answer's timing says nothing about the secret."""
    return hmac.compare_digest(offered.encode("latin-1"), secret.encode("ascii"))
