"""Postfix socketmap server: the maps Postfix queries for every recipient and sender.

Protocol, socketmap_table(5): the client sends the netstring ``<name> <key>`` (netstrings:
``<length>:<bytes>,``, D. J. Bernstein); the server answers one netstring per request,
``OK <value>``, ``NOTFOUND `` (note the space), ``TEMP <reason>``, ``TIMEOUT <reason>`` or
``PERM <reason>``. Postfix keeps the connection open and sends many requests over it, and may
pipeline several requests into one write or split one across several.

Every recipient Postfix accepts costs several lookups (domain, alias, mailbox, transport), so
this is the gate's hottest path. It is an :class:`asyncio.Protocol` parsing netstrings by hand
from the bytes the loop hands over, which avoids the StreamReader's per-read task wake-ups.
Answers come from the in-memory :class:`~roost.core.directory.Directory`; nothing here
waits on I/O.

Failure policy, chosen so mail is never lost: a lookup that cannot be answered for a reason
on our side is ``TEMP`` (Postfix defers and retries, reference §1.5 podop does the same); a
key that cannot name anything (two ``@``, a quoted local part, bytes that are not UTF-8) is
``NOTFOUND``, as Mailu answers 404 for it since #3252; a request that breaks the framing is
answered ``PERM`` and the connection closed, because nothing after it can be trusted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from roost.core.address import forbidden_char
from roost.core.directory import Directory, TransportError
from roost.gate.index import Index
from roost.settings import Settings

__all__ = ["MAX_REQUEST", "SocketmapProtocol", "Socketmaps", "netstring"]

log = logging.getLogger("roost.gate")

#: Largest request accepted, in bytes (podop's limit; socketmap_table(5) requests are a map
#: name and one address, far below it).
MAX_REQUEST = 65535
_MAX_DIGITS = len(str(MAX_REQUEST))

def netstring(payload: bytes) -> bytes:
    """Frame ``payload`` as a netstring."""
    return b"%d:%s," % (len(payload), payload)


NOTFOUND = netstring(b"NOTFOUND ")
TEMP_NO_SUCH_MAP = netstring(b"TEMP no such map")
TEMP_INTERNAL = netstring(b"TEMP internal error")
TEMP_BAD_RELAY = netstring(b"TEMP relay target cannot be used")
PERM_NO_SPACE = netstring(b"PERM request is not '<map> <key>'")
PERM_TOO_LARGE = netstring(b"PERM request too large")
PERM_MALFORMED = netstring(b"PERM malformed netstring")
# Answers that say something about our state rather than the key: never cached.
_UNCACHED = frozenset({TEMP_INTERNAL, TEMP_BAD_RELAY})


class Socketmaps:
    """Turns one request payload into one framed answer, from the index's current Directory.

    Answers are cached per request payload for as long as the same Directory object is in
    place: the maps are pure functions of the index, Postfix repeats the same few keys
    (domains, frequent senders) constantly, and a dict hit is far cheaper than parsing an
    address. The cache is bounded, and dropped whenever the index swaps in a new Directory.
    A side effect: a malformed key is logged once per index, not once per repetition.
    """

    #: Most cached answers; beyond it the cache starts over (a flood of distinct keys).
    CACHE_SIZE = 20000
    #: Longest request cached; addresses are far shorter (RFC 5321 §4.5.3.1.3: 256).
    CACHE_KEY_MAX = 512

    def __init__(self, index: Index, settings: Settings) -> None:
        self._index = index
        self._delimiter = settings.RECIPIENT_DELIMITER
        self._wildcard = tuple(settings.WILDCARD_SENDERS)
        self._cache: dict[bytes, bytes] = {}
        self._cached_for: Directory | None = None
        # The maps Postfix names in ``socketmap:unix:PATH:<name>``.
        self._handlers: dict[bytes, Callable[[Directory, str], str | None]] = {
            b"domain": self._domain,
            b"mailbox": self._mailbox,
            b"alias": self._alias,
            b"transport": self._transport,
            b"senderlogin": self._senderlogin,
        }

    # -- the maps (reference §1.3, §7.1.3, §7.1.4, §7.2) -----------------------------------

    @staticmethod
    def _domain(directory: Directory, key: str) -> str | None:
        return key if directory.has_domain(key) else None

    @staticmethod
    def _mailbox(directory: Directory, key: str) -> str | None:
        return directory.mailbox(key)

    def _alias(self, directory: Directory, key: str) -> str | None:
        targets = directory.resolve(key, self._delimiter)
        return ",".join(targets) if targets else None

    @staticmethod
    def _transport(directory: Directory, key: str) -> str | None:
        return directory.transport(key)

    def _senderlogin(self, directory: Directory, key: str) -> str | None:
        logins = directory.sender_logins(key, self._delimiter, self._wildcard)
        return ",".join(logins) if logins else None

    # -- dispatch ----------------------------------------------------------------------------

    def answer(self, payload: bytes) -> bytes:
        """The framed reply to one request payload; never raises."""
        directory = self._index.directory
        if directory is not self._cached_for:
            self._cache = {}
            self._cached_for = directory
        cached = self._cache.get(payload)
        if cached is not None:
            return cached
        reply = self._compute(directory, payload)
        if reply not in _UNCACHED and len(payload) <= self.CACHE_KEY_MAX:
            if len(self._cache) >= self.CACHE_SIZE:
                self._cache = {}
            self._cache[payload] = reply
        return reply

    def _compute(self, directory: Directory, payload: bytes) -> bytes:
        name, space, raw_key = payload.partition(b" ")
        if not space:
            return PERM_NO_SPACE
        handler = self._handlers.get(name)
        if handler is None:
            log.info("socketmap: no such map %r", name)
            return TEMP_NO_SUCH_MAP
        try:
            key = raw_key.decode("utf-8")
        except UnicodeDecodeError:
            log.info("socketmap %s: key is not UTF-8: %r", name.decode(), raw_key)
            return NOTFOUND
        if _malformed(key):
            # Such a key names nobody; the maps must not answer for it at all (a sender
            # with a NUL or a comma would otherwise still match WILDCARD_SENDERS).
            log.info("socketmap %s: malformed key %r", name.decode(), key)
            return NOTFOUND
        try:
            value = handler(directory, key)
        except TransportError as exc:
            # A relay target that cannot be turned into a transport is an operator's error;
            # deferring keeps the mail queued until it is fixed (podop's TEMP for Mailu's 400).
            log.warning("socketmap transport %r: %s; deferring", key, exc)
            return TEMP_BAD_RELAY
        except Exception:
            log.exception("socketmap %s: lookup of %r failed", name.decode(), key)
            return TEMP_INTERNAL
        if value is None:
            return NOTFOUND
        return netstring(b"OK " + value.encode("utf-8"))


def _malformed(key: str) -> bool:
    """A key no address or domain can have (Mailu answers 404 for these since #3252)."""
    return (
        not key
        or key.startswith('"')
        or key.count("@") > 1
        or forbidden_char(key) is not None
    )


class SocketmapProtocol(asyncio.Protocol):
    """One Postfix connection; parses netstrings from whatever chunks arrive."""

    __slots__ = ("_answer", "_pending", "_transport")

    def __init__(self, answer: Callable[[bytes], bytes]) -> None:
        self._answer = answer
        self._pending = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._pending = b""

    def data_received(self, data: bytes) -> None:
        if self._pending:
            data = self._pending + data
            self._pending = b""
        answer = self._answer
        size = len(data)
        pos = 0
        replies: list[bytes] = []
        failure = b""
        while pos < size:
            colon = data.find(b":", pos, pos + _MAX_DIGITS + 1)
            if colon < 0:
                if size - pos > _MAX_DIGITS:
                    # Six digits and still no colon: a length beyond the limit, or garbage.
                    digits = data[pos : pos + _MAX_DIGITS + 1]
                    failure = PERM_TOO_LARGE if digits.isdigit() else PERM_MALFORMED
                    break
                if not data[pos:size].isdigit():
                    failure = PERM_MALFORMED
                    break
                self._pending = data[pos:]
                break
            digits = data[pos:colon]
            if not digits.isdigit():  # also refuses an empty length
                failure = PERM_MALFORMED
                break
            length = int(digits)
            if length > MAX_REQUEST:
                failure = PERM_TOO_LARGE
                break
            end = colon + 1 + length
            if end >= size:
                self._pending = data[pos:]
                break
            if data[end] != 0x2C:  # ","
                failure = PERM_MALFORMED
                break
            replies.append(answer(data[colon + 1 : end]))
            pos = end + 1
        transport = self._transport
        if transport is None:
            return
        if failure:
            log.info("socketmap: closing a connection after a bad request: %s",
                     failure.split(b":", 1)[1][:-1].decode())
            replies.append(failure)
            transport.write(b"".join(replies))
            self._pending = b""
            transport.close()
            return
        if replies:
            transport.write(replies[0] if len(replies) == 1 else b"".join(replies))
