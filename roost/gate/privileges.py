"""What the gate keeps of root once its sockets are open: three capabilities, nothing else.

The gate starts as root to create its sockets in root-owned directories and give them to
the groups of the daemons that use them. After that it needs only:

* ``CAP_DAC_OVERRIDE`` and ``CAP_DAC_READ_SEARCH`` — to create a user's home inside
  ``ROOT/mail`` (``0700 mail:mail``) and to reach Redis's socket (``run/redis``,
  ``0750 redis:redis``), neither of which belongs to root;
* ``CAP_CHOWN`` — to give a new home to the mail user, and a re-written secret file to
  the dovecot group.

Every other capability (binding ports, changing user ids, signalling or tracing other
processes, mounting, loading modules, raw sockets, ...) is removed from the permitted,
effective, inheritable and bounding sets, and ``no_new_privs`` is set, so neither the gate
nor anything it could be made to run gets them back (capabilities(7), prctl(2)). The uid
stays 0: the store, the sockets it unlinks at exit and its own files are root's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from pathlib import Path

__all__ = ["KEPT", "drop_capabilities"]

log = logging.getLogger("roost.gate")

# Capability numbers (linux/capability.h).
CAP_CHOWN = 0
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2
KEPT = (CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH)

_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _last_capability() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return 40  # CAP_CHECKPOINT_RESTORE, the last one in Linux 5.9 to 6.x


def drop_capabilities(keep: tuple[int, ...] = KEPT) -> bool:
    """Keep only ``keep`` (the gate's :data:`KEPT`; ``()`` for none); True when done, False
    when not root (nothing to drop)."""
    if os.geteuid() != 0:
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    for cap in range(_last_capability() + 1):
        # The bounding set first: dropping from it needs CAP_SETPCAP, about to go.
        if cap not in keep and libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"prctl(PR_CAPBSET_DROP, {cap})")
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    mask = sum(1 << cap for cap in keep)
    header = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)(_Data(mask, mask, 0), _Data(0, 0, 0))
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    return True
