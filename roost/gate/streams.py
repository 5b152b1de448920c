"""What the gate's stream servers share: quiet closing, and a cap on open connections.

A connection costs the gate a file descriptor and a task. Before these caps, 1,100
connections that never sent a byte held every descriptor of a gate started with systemd's
default soft limit (1,024), and the next real login, Dovecot's or nginx's, waited in the
listen queue until its own timeout. :class:`ConnectionCaps` keeps that from happening:

* a connection is *waiting* until it has sent one complete, accepted request; the daemons
  send theirs within a millisecond of connecting, a flood never does;
* at most ``max_waiting`` connections wait at once, and at most ``max_waiting_per_caller``
  of one caller (a peer address on TCP, a uid on a Unix socket); a new connection over
  either cap closes the oldest waiting one that has sent nothing yet (of that caller
  first; the oldest of all only when every one has sent something), so a flood of idle
  connections pushes out its own and never a daemon's, whose request is already there
  even when a burst of accepts comes before the gate has read it;
* at most ``max_open`` connections in all, not counting those just closed; past it new
  ones are closed at once;
* a waiting connection has ``first_request_timeout`` seconds to send its request.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import socket
import struct
import termios
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["ConnectionCaps", "Limits", "caller_of", "close_quietly"]


async def close_quietly(writer: asyncio.StreamWriter) -> None:
    """Close a connection whose peer may already be gone: that is not an error."""
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


@dataclass(frozen=True)
class Limits:
    """The caps of one listener (see the module's doc)."""

    max_open: int = 512
    max_waiting: int = 128
    max_waiting_per_caller: int = 32
    first_request_timeout: float = 5.0


_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid (Linux socket(7))


def caller_of(writer: asyncio.StreamWriter) -> str:
    """Who is on the other end: ``uid:<n>`` on a Unix socket, the peer address on TCP."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family == socket.AF_UNIX:
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        except OSError:
            return "uid:?"
        return f"uid:{_PEERCRED.unpack(raw)[1]}"
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "?"


def _has_input(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Whether the peer has sent bytes the gate has not handled yet.

    They are either still in the kernel (FIONREAD, socket(7)/tcp(7)) or already in the
    stream's buffer, waiting for the connection's task to run.
    """
    if getattr(reader, "_buffer", b""):
        return True
    sock = writer.get_extra_info("socket")
    if sock is None:
        return False
    pending = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, pending, True)
    except OSError:
        return False
    return pending[0] > 0


class ConnectionCaps:
    """Book-keeping of one listener's connections; see the module's doc."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.open = 0
        # connection id -> (caller, reader, writer), oldest first
        self._waiting: OrderedDict[int, tuple[str, asyncio.StreamReader, asyncio.StreamWriter]] = (
            OrderedDict()
        )
        self._closed: set[int] = set()
        self._waiting_by_caller: dict[str, int] = {}
        self.evicted = 0
        self.refused = 0

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def admit(
        self, key: int, caller: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Count a new connection in; False when it must be closed at once."""
        limits = self.limits
        if self._waiting_by_caller.get(caller, 0) >= limits.max_waiting_per_caller:
            self._evict(caller)
        if len(self._waiting) >= limits.max_waiting:
            self._evict(None)
        if self.open >= limits.max_open:
            self.refused += 1
            return False
        self.open += 1
        self._waiting[key] = (caller, reader, writer)
        self._waiting_by_caller[caller] = self._waiting_by_caller.get(caller, 0) + 1
        return True

    def settled(self, key: int) -> None:
        """The connection sent an accepted request: it no longer counts as waiting."""
        entry = self._waiting.pop(key, None)
        if entry is not None:
            self._uncount(entry[0])

    def release(self, key: int) -> None:
        """The connection is closed."""
        if key in self._closed:
            self._closed.discard(key)  # counted out when it was evicted
            return
        self.settled(key)
        self.open -= 1

    def _uncount(self, caller: str) -> None:
        left = self._waiting_by_caller[caller] - 1
        if left:
            self._waiting_by_caller[caller] = left
        else:
            del self._waiting_by_caller[caller]

    def _evict(self, caller: str | None) -> None:
        """Close the oldest waiting connection (of ``caller``, when given); see the doc."""
        candidates = [
            (key, entry)
            for key, entry in self._waiting.items()
            if caller is None or entry[0] == caller
        ]
        if not candidates:
            return
        key, (owner, _reader, writer) = next(
            (item for item in candidates if not _has_input(item[1][1], item[1][2])),
            candidates[0],
        )
        # Closed now (abort drops what is unsent and closes the socket at once), so it no
        # longer counts; its task sees the closed stream and ends.
        del self._waiting[key]
        self._uncount(owner)
        self._closed.add(key)
        self.open -= 1
        self.evicted += 1
        writer.transport.abort()
