"""Postfix socketmap server: the maps Postfix queries for every recipient and sender.

Protocol, socketmap_table(5): the client sends the netstring ``<name> <key>`` (netstrings:
``<length>:<bytes>,``, D. J. Bernstein); the server answers one netstring per request,
``OK <value>``, ``NOTFOUND `` (note the space), ``TEMP <reason>``, ``TIMEOUT <reason>`` or
``PERM <reason>``. Postfix keeps the connection open and sends many requests over it, and may
pipeline several requests into one write or split one across several.

Every recipient Postfix accepts costs several lookups (domain, alias, mailbox, transport), so
this is the gate's hottest path. It is an :class:`asyncio.Protocol` parsing netstrings by hand
from the bytes the loop hands over, which avoids the StreamReader's per-read task wake-ups.
Answers come from the in-memory :class:`~roost.core.directory.Directory`; only the
message rate limit (``senderrate``) waits, on Redis, and its answers are written in the
order the requests came, behind any that are ready earlier.

Failure policy, chosen so mail is never lost: a lookup that cannot be answered for a reason
on our side is ``TEMP`` (Postfix defers and retries, as Mailu's podop does); a
key that cannot name anything (two ``@``, a quoted local part, bytes that are not UTF-8) is
``NOTFOUND``, as Mailu answers 404 for it since #3252; a request that breaks the framing is
answered ``PERM`` and the connection closed, because nothing after it can be trusted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence

from roost.core.address import forbidden_char
from roost.core.directory import Directory, TransportError
from roost.core.srs import SRS, srs_key
from roost.gate.dane import DaneCheck
from roost.gate.holds import SenderHolds
from roost.gate.index import Index
from roost.gate.limiter import AuthLimiter
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
#: Maps whose answer depends on the day as well as the index (SRS stamps): never cached.
_UNCACHED_MAPS = frozenset({b"sendermap", b"recipientmap", b"senderaccess"})

#: Access maps that Postfix asks about the null sender (as ``<>``): the others never see it.
_NULL_SENDER_MAPS = frozenset({b"senderaccess", b"localsender", b"mailfromrate"})

#: Postfix access(5) answers: the text after the code reaches the client.
MAILBOX_DISABLED = "550 5.2.1 Mailbox disabled"
#: Mailu's answer over MESSAGE_RATELIMIT (its core/admin internal/views/postfix.py), word for
#: word.
SENDING_TOO_FAST = "450 4.2.1 You are sending too many emails too fast."
#: The same for mail Dovecot sends, but permanent: on a temporary failure Pigeonhole aborts
#: the whole delivery (LMTP 451), so a stranger could hold up a user's incoming mail by
#: setting off their auto-reply; on a permanent one it logs the failed action and keeps the
#: message in the mailbox (Sieve's implicit keep, RFC 5228 section 2.10.6).
SENDING_TOO_FAST_KEPT = "550 5.7.1 You are sending too many emails too fast."
#: A held login's message (``roost/gate/holds.py``): Postfix accepts it into the hold queue
#: (access(5) HOLD); the text is only logged.
HELD = "HOLD sender held: most of its mail was scored as spam (roost hold list)"
#: ``senderaccess`` (port 25): an unauthenticated client claims one of our domains. Mailu
#: answers a bare REJECT; Postfix prefixes the address ("554 5.7.1 <a@b>: Sender address
#: rejected: ..."), access(5).
LOCAL_SENDER_REJECTED = "REJECT Senders of this domain must log in to send"
#: ``localsender`` (the listener for mail Dovecot sends): a sender that is not ours.
FOREIGN_SENDER_REJECTED = "553 5.7.1 Sender address is not one of this server's addresses"
#: access(5) DUNNO: the key is known but decides nothing, and Postfix tries no shorter key.
DUNNO = "DUNNO"
#: The key Postfix looks up for the null sender (postconf(5) smtpd_null_access_lookup_key).
NULL_SENDER = "<>"

Reply = bytes | Awaitable[bytes]


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

    def __init__(
        self,
        index: Index,
        settings: Settings,
        limiter: AuthLimiter,
        holds: SenderHolds | None = None,
    ) -> None:
        self._index = index
        self._holds = holds
        self._delimiter = settings.RECIPIENT_DELIMITER
        self._wildcard = tuple(settings.WILDCARD_SENDERS)
        self._rate_exempt = tuple(settings.MESSAGE_RATELIMIT_EXEMPTION)
        self._srs = SRS(srs_key(settings.SECRET_KEY), settings.DOMAIN)
        self._limiter = limiter
        self._dane = DaneCheck(settings)
        self._cache: dict[bytes, bytes] = {}
        self._cached_for: Directory | None = None
        # The maps Postfix names in ``socketmap:unix:PATH:<name>``.
        self._handlers: dict[bytes, Callable[[Directory, str], str | None]] = {
            b"domain": self._domain,
            b"mailbox": self._mailbox,
            b"alias": self._alias,
            b"transport": self._transport,
            b"senderlogin": self._senderlogin,
            b"recipientaccess": self._recipientaccess,
            b"sendermap": self._sendermap,
            b"recipientmap": self._recipientmap,
            b"senderaccess": self._senderaccess,
            b"localsender": self._localsender,
        }
        # Maps that wait on something other than the index.
        self._async_handlers: dict[bytes, Callable[[Directory, str], Awaitable[str | None]]] = {
            b"senderrate": self._senderrate,
            b"mailfromrate": self._mailfromrate,
            b"dane": self._dane_policy,
        }

    # -- the maps: Mailu's podop maps (core/admin/mailu/internal/views/postfix.py) ----------

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

    def _recipientaccess(self, directory: Directory, key: str) -> str | None:
        """``check_recipient_access``: refuse recipients that reach only disabled users."""
        return MAILBOX_DISABLED if directory.recipient_disabled(key, self._delimiter) else None

    def _sendermap(self, directory: Directory, key: str) -> str | None:
        """``sender_canonical_maps``: SRS for every envelope sender of a foreign domain.

        As Mailu: senders of our domains and alternatives keep their address; every
        other one is rewritten to ``SRS0=...@DOMAIN``, so mail we pass on (forwards,
        aliases to outside addresses) still passes SPF at the next hop. Postfix also asks
        for ``@domain`` and bare local parts; those have no local part to encode.
        """
        domain = key.rpartition("@")[2]
        if "@" not in key or directory.is_local_domain(domain):
            return None
        return self._srs.forward(key)

    def _recipientmap(self, directory: Directory, key: str) -> str | None:
        """``recipient_canonical_maps``: a bounce to one of our SRS addresses goes back to
        the original sender; a forged or expired one is left alone (and so unknown)."""
        local, at, domain = key.rpartition("@")
        if not at or local[:4].lower() not in ("srs0", "srs1"):
            return None
        if domain.lower() != self._srs.domain and not directory.is_local_domain(domain):
            return None
        original = self._srs.reverse(key)
        if original is None or _malformed(original):
            return None
        return original

    def _senderaccess(self, directory: Directory, key: str) -> str | None:
        """``check_sender_access`` on port 25: no one unauthenticated sends as one of ours.

        Mailu's ``/internal/postfix/sender/access``: REJECT for any sender whose domain is
        one of our domains or alternatives, whatever the local part (a bare domain too:
        Postfix asks for it after the address, so a quoted local part, which names no
        address, is still caught). Relayed domains are not ours to police: their mail comes
        from their own servers. The null sender (``<>``, bounces) is never refused, and
        neither is a valid SRS address of ours, which only we can have made (a forward
        that comes back, RFC 5321 section 3.9). RELAYNETS and loopback pass before this map
        (``permit_mynetworks``), and authenticated submission never asks it.
        """
        if key == NULL_SENDER:
            return None
        local, at, domain = key.rpartition("@")
        if at and not local:
            return None  # Postfix's "user@" key: nothing to say about a bare local part
        if not directory.is_local_domain(domain):
            return None
        if at and local[:4].lower() in ("srs0", "srs1") and self._srs.reverse(key):
            return None
        return LOCAL_SENDER_REJECTED

    def _localsender(self, directory: Directory, key: str) -> str | None:
        """``check_sender_access`` as the relay decision of the listener for mail Dovecot
        sends (Sieve redirect, vacation, notify): OK (relay anywhere, as a user may) when
        the sender is one of our addresses or the null sender, else a refusal.

        Every key is answered, so Postfix never falls back to the domain or ``user@``
        part of an address we refused.
        """
        if key == NULL_SENDER or _rate_key(directory, key, self._delimiter) is not None:
            return "OK"
        return FOREIGN_SENDER_REJECTED

    async def _senderrate(self, directory: Directory, key: str) -> str | None:
        """``check_sasl_access``: MESSAGE_RATELIMIT per login (Mailu's ``senderrate``).

        Each lookup is one message against the login's moving window; unknown logins and
        MESSAGE_RATELIMIT_EXEMPTION are not limited. The login is counted under its
        canonical address, so logging in as user@alternative or in capitals does not open
        a second budget. A held login's message goes to the hold queue, uncounted.
        """
        user = directory.user(key)
        if user is None:
            return None
        if self._held(user.email):
            return HELD
        return await self._charge(directory, user.email, "senderrate")

    async def _mailfromrate(self, directory: Directory, key: str) -> str | None:
        """``check_sender_access`` at DATA on the listener for mail Dovecot sends.

        Sieve redirects, notifications and vacation replies leave with the user's own
        address as envelope sender (dovecot.conf), so each message is charged to that
        user's MESSAGE_RATELIMIT, the budget their submissions use. An alias address is
        charged under its own name; the null sender (a Sieve reject's MDN, RFC 5429)
        under one shared budget. Allowed messages answer DUNNO, so that Postfix does not
        look up (and charge) the domain of the same sender again. Over the limit the answer
        is permanent (SENDING_TOO_FAST_KEPT): the message stays in the user's mailbox. A
        held user's message goes to the hold queue, as its submissions do.
        """
        if key == NULL_SENDER:
            charged: str | None = NULL_SENDER
        else:
            charged = _rate_key(directory, key, self._delimiter)
        if charged is None:
            return None
        if self._held(charged):
            return HELD
        refused = await self._charge(directory, charged, "mailfromrate", SENDING_TOO_FAST_KEPT)
        return refused or DUNNO

    async def _dane_policy(self, directory: Directory, key: str) -> str | None:
        """``smtp_tls_policy_maps``: the DANE level for a domain with signed TLSA records,
        asked before the MTA-STS resolver (roost/gate/dane.py); answers follow DNS, not
        the index, so they are never cached here (the resolver caches)."""
        return await self._dane.policy(key)

    def _held(self, account: str) -> bool:
        return self._holds is not None and self._holds.is_held(account)

    async def _charge(
        self, directory: Directory, account: str, name: str, refusal: str = SENDING_TOO_FAST
    ) -> str | None:
        """Count one message for ``account``; ``refusal`` when it is over the limit."""
        exempt = {directory.mailbox(login) or login for login in self._rate_exempt}
        if account in exempt:
            return None
        if await self._limiter.message_allowed(account):
            return None
        log.info("socketmap %s: %s is over MESSAGE_RATELIMIT", name, account)
        return refusal

    # -- dispatch ----------------------------------------------------------------------------

    def answer(self, payload: bytes) -> Reply:
        """The framed reply to one request payload, or an awaitable of it; never raises.

        Only the maps in ``_async_handlers`` give an awaitable; every other answer is ready.
        """
        directory = self._index.directory
        if directory is not self._cached_for:
            self._cache = {}
            self._cached_for = directory
        cached = self._cache.get(payload)
        if cached is not None:
            return cached
        name = payload.partition(b" ")[0]
        if name in self._async_handlers:  # never cached: each lookup counts
            return self._answer_later(directory, payload)
        reply = self._compute(directory, payload)
        if (
            reply not in _UNCACHED
            and name not in _UNCACHED_MAPS
            and len(payload) <= self.CACHE_KEY_MAX
        ):
            if len(self._cache) >= self.CACHE_SIZE:
                self._cache = {}
            self._cache[payload] = reply
        return reply

    def _parse(self, payload: bytes) -> tuple[bytes, str] | bytes:
        """``(map name, key)`` of a request, or the framed reply that ends it here."""
        name, space, raw_key = payload.partition(b" ")
        if not space:
            return PERM_NO_SPACE
        if name not in self._handlers and name not in self._async_handlers:
            log.info("socketmap: no such map %r", name)
            return TEMP_NO_SUCH_MAP
        try:
            key = raw_key.decode("utf-8")
        except UnicodeDecodeError:
            log.info("socketmap %s: key is not UTF-8: %r", name.decode(), raw_key)
            return NOTFOUND
        if _malformed(key) and not (key == NULL_SENDER and name in _NULL_SENDER_MAPS):
            # Such a key names nobody; the maps must not answer for it at all (a sender
            # with a NUL or a comma would otherwise still match WILDCARD_SENDERS).
            log.info("socketmap %s: malformed key %r", name.decode(), key)
            return NOTFOUND
        return name, key

    def _compute(self, directory: Directory, payload: bytes) -> bytes:
        parsed = self._parse(payload)
        if isinstance(parsed, bytes):
            return parsed
        name, key = parsed
        try:
            value = self._handlers[name](directory, key)
        except TransportError as exc:
            # A relay target that cannot be turned into a transport is an operator's error;
            # deferring keeps the mail queued until it is fixed (podop's TEMP for Mailu's 400).
            log.warning("socketmap transport %r: %s; deferring", key, exc)
            return TEMP_BAD_RELAY
        except Exception:
            log.exception("socketmap %s: lookup of %r failed", name.decode(), key)
            return TEMP_INTERNAL
        return _framed(value)

    async def _answer_later(self, directory: Directory, payload: bytes) -> bytes:
        parsed = self._parse(payload)
        if isinstance(parsed, bytes):
            return parsed
        name, key = parsed
        try:
            value = await self._async_handlers[name](directory, key)
        except Exception:
            log.exception("socketmap %s: lookup of %r failed", name.decode(), key)
            return TEMP_INTERNAL
        return _framed(value)


def _framed(value: str | None) -> bytes:
    if value is None:
        return NOTFOUND
    return netstring(b"OK " + value.encode("utf-8"))


def _rate_key(directory: Directory, address: str, delimiter: str) -> str | None:
    """The account a message from ``address`` is charged to: the canonical address of the
    user it names (detail and alternative domains included), else of the alias, else None
    (not one of our addresses)."""
    if "@" not in address:
        return None
    user = directory.user_of(address, delimiter)
    if user is not None:
        return user.email
    if directory.resolve(address, delimiter):
        local, _, domain = address.rpartition("@")
        return f"{local.lower()}@{directory.canonical_domain(domain)}"
    return None


def _malformed(key: str) -> bool:
    """A key no address or domain can have (Mailu answers 404 for these since #3252)."""
    return not key or key.startswith('"') or key.count("@") > 1 or forbidden_char(key) is not None


class SocketmapProtocol(asyncio.Protocol):
    """One Postfix connection; parses netstrings from whatever chunks arrive.

    Replies go out in request order. While none has to wait they are written at once; once
    one is an awaitable (a rate-limit lookup), it and everything after it go through a
    chain of write tasks, one per chunk of requests, each waiting for the one before.
    """

    __slots__ = ("_answer", "_closing", "_pending", "_tail", "_transport")

    def __init__(self, answer: Callable[[bytes], Reply]) -> None:
        self._answer = answer
        self._pending = b""
        self._transport: asyncio.Transport | None = None
        #: The last write task still running, if any: later replies queue behind it.
        self._tail: asyncio.Task[None] | None = None
        #: Set after a framing error: nothing more is read from this connection.
        self._closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._pending = b""

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if self._pending:
            data = self._pending + data
            self._pending = b""
        answer = self._answer
        size = len(data)
        pos = 0
        replies: list[Reply] = []
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
        if failure:
            log.info(
                "socketmap: closing a connection after a bad request: %s",
                failure.split(b":", 1)[1][:-1].decode(),
            )
            replies.append(failure)
            self._pending = b""
            self._closing = True
        if not replies:
            return
        if self._tail is None and all(isinstance(reply, bytes) for reply in replies):
            transport = self._transport
            if transport is not None:
                ready: list[bytes] = replies  # type: ignore[assignment]
                transport.write(ready[0] if len(ready) == 1 else b"".join(ready))
                if failure:
                    transport.close()
            return
        self._tail = asyncio.ensure_future(
            self._write_in_order(self._tail, replies, close=bool(failure))
        )

    async def _write_in_order(
        self, previous: asyncio.Task[None] | None, replies: Sequence[Reply], close: bool
    ) -> None:
        """Write ``replies`` once those before them are out, awaiting the ones not ready;
        ``close``: the last one answers a framing error, so the connection ends after it."""
        done: list[bytes] = []
        try:
            if previous is not None:
                await previous
            for reply in replies:
                done.append(reply if isinstance(reply, bytes) else await reply)
        except asyncio.CancelledError:
            _discard(replies[len(done) :])
            raise
        transport = self._transport
        if transport is not None:
            transport.write(b"".join(done))
            if close:
                transport.close()
        if self._tail is asyncio.current_task():
            self._tail = None


def _discard(replies: Sequence[Reply]) -> None:
    """Close answers that will never be awaited (the gate is stopping), quietly."""
    for reply in replies:
        if isinstance(reply, Coroutine):
            reply.close()
