"""Dovecot's dict protocol, served on a Unix socket: the server side of ``proxy:<path>:<name>``.

Dovecot reaches a dict through its ``proxy`` driver, which speaks a line protocol to a dict
server (https://doc.dovecot.org/2.3/configuration_manual/dict/; Dovecot
src/lib-dict/dict-client.h, dict-client.c and the server in src/dict/dict-commands.c).
Lines end with LF; fields are separated by tabs and escaped with Dovecot's tab-escaping
(``\\x01`` followed by ``1``, ``t``, ``r`` or ``n`` stands for ``\\x01``, tab, CR and LF).
As Dovecot 2.3.19 speaks it (protocol 3.2, checked against the real client):

* ``H<major>\\t<minor>\\t<value type>\\t<user>\\t<dict name>`` opens the connection; the
  user is empty and comes with each command instead.
* ``L<key>\\t<user>`` looks up one key: ``O<value>``, ``N`` (not found) or ``F<error>``.
* ``B<id>\\t<user>`` begins a transaction; ``S<id>\\t<key>\\t<value>``, ``U<id>\\t<key>``,
  ``A<id>\\t<key>\\t<diff>`` and ``T<id>\\t<secs>\\t<nsecs>`` add to it without a reply;
  ``C<id>`` commits (``O<id>``, ``N<id>`` or ``F<id>\\t<error>``), ``D<id>`` commits
  asynchronously (the same reply prefixed with ``A``), ``R<id>`` rolls back.
* ``I...`` iterates; Roost's dicts cannot be listed, so it is answered ``F``.

Replies are sent in the order of the commands, which every client version accepts.

A connection may hold at most ``MAX_TRANSACTIONS`` unfinished transactions of at most
``MAX_CHANGES`` changes each (Dovecot keeps a few at a time). BEGIN has no reply, so a
transaction over either cap is refused where the protocol can say so: its commit answers
``F<id>`` with the reason, and its changes are not kept. A client that goes on opening
transactions while ``MAX_TRANSACTIONS`` refused ones are open is cut off.

What the keys mean is the backend's business (:class:`DictBackend`); this module is the
framing. A line the server cannot read closes the connection: Dovecot reconnects for its
next command, and nothing it sent after the broken line could be trusted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from roost.gate.counters import RequestCounters
from roost.gate.streams import close_quietly

__all__ = [
    "DictBackend",
    "DictError",
    "start_dict_server",
    "tab_escape",
    "tab_unescape",
]

log = logging.getLogger("roost.gate")

#: The protocol major version this server speaks (Dovecot 2.3's dict clients).
PROTOCOL_MAJOR = "3"
#: Longest command line accepted. Dovecot sends keys and small values (quota counters).
MAX_LINE = 65536
#: Unfinished transactions one connection may hold (see the module's doc).
MAX_TRANSACTIONS = 64
#: Changes one transaction may hold; quota_clone sets two keys per commit.
MAX_CHANGES = 256

_ESCAPES = {"1": "\x01", "t": "\t", "r": "\r", "n": "\n"}
#: The commands that wait for an answer, by the name they are counted under; the others
#: (BEGIN, SET, ...) travel with the commit, in the same round trip.
_COUNTED = {"L": "lookup", "C": "commit", "D": "commit", "I": "iterate"}


class DictError(Exception):
    """A lookup or commit the backend refuses; the message goes back to Dovecot's log."""


class DictBackend(Protocol):
    """What the keys of Roost's dicts mean."""

    def lookup(self, user: str, key: str) -> str | None:
        """The value of ``key`` for ``user``, or None when there is none."""

    def commit(self, user: str, changes: Mapping[str, str | None]) -> None:
        """Apply one transaction's sets (a value) and unsets (None)."""


def tab_escape(text: str) -> str:
    """Dovecot's str_append_tabescaped: \\x01 first, so the escapes stay unambiguous."""
    return (
        text.replace("\x01", "\x011")
        .replace("\t", "\x01t")
        .replace("\r", "\x01r")
        .replace("\n", "\x01n")
    )


def tab_unescape(text: str) -> str:
    """The inverse of :func:`tab_escape`; an unknown escape keeps the escaped character."""
    if "\x01" not in text:
        return text
    parts = text.split("\x01")
    out = [parts[0]]
    for part in parts[1:]:
        if part:
            out.append(_ESCAPES.get(part[0], part[0]) + part[1:])
    return "".join(out)


class _ProtocolViolation(Exception):
    """A line that breaks the protocol: the connection is closed."""


@dataclass
class _Transaction:
    user: str
    changes: dict[str, str | None] = field(default_factory=dict)
    #: Set by a command Roost cannot apply; the commit then fails with it.
    error: str | None = None


class _Connection:
    """The state of one client connection: its dict name and open transactions."""

    def __init__(self, backend: DictBackend, dict_name: str) -> None:
        self.backend = backend
        self.dict_name = dict_name
        self.transactions: dict[str, _Transaction] = {}

    def handle(self, command: str, args: list[str]) -> str | None:
        """Run one command; the reply line (without LF), or None for commands without one."""
        if command == "L":
            return self._lookup(args)
        if command == "I":
            return "F" + tab_escape(f"dict {self.dict_name} cannot be iterated")
        if command == "B":
            self._need(args, 1, "BEGIN")
            self._begin(args[0], args[1] if len(args) > 1 else "")
            return None
        if command in ("S", "U", "A", "T"):
            self._change(command, args)
            return None
        if command in ("C", "D"):
            self._need(args, 1, "COMMIT")
            reply = self._commit(args[0])
            return "A" + reply if command == "D" else reply
        if command == "R":
            self._need(args, 1, "ROLLBACK")
            self.transactions.pop(args[0], None)
            return None
        raise _ProtocolViolation(f"unknown command {command!r}")

    @staticmethod
    def _need(args: list[str], count: int, name: str) -> None:
        if len(args) < count:
            raise _ProtocolViolation(f"{name} needs {count} fields, got {len(args)}")

    def _lookup(self, args: list[str]) -> str:
        self._need(args, 1, "LOOKUP")
        key, user = args[0], args[1] if len(args) > 1 else ""
        try:
            value = self.backend.lookup(user, key)
        except DictError as exc:
            return "F" + tab_escape(str(exc))
        except Exception:
            log.exception("dict %s: lookup of %r for %r failed", self.dict_name, key, user)
            return "F" + tab_escape("internal error in the gate")
        return "N" if value is None else "O" + tab_escape(value)

    def _begin(self, transaction_id: str, user: str) -> None:
        transaction = _Transaction(user)
        self.transactions.pop(transaction_id, None)  # a reused id starts afresh
        if len(self.transactions) >= MAX_TRANSACTIONS:
            refused = sum(1 for t in self.transactions.values() if t.error is not None)
            if refused >= MAX_TRANSACTIONS:
                raise _ProtocolViolation(f"more than {2 * MAX_TRANSACTIONS} open transactions")
            log.warning(
                "dict %s: %d transactions open on one connection; refusing %r",
                self.dict_name,
                len(self.transactions),
                transaction_id,
            )
            transaction.error = f"more than {MAX_TRANSACTIONS} open transactions"
        self.transactions[transaction_id] = transaction

    def _transaction(self, transaction_id: str) -> _Transaction:
        try:
            return self.transactions[transaction_id]
        except KeyError:
            raise _ProtocolViolation(f"transaction {transaction_id!r} was not begun") from None

    def _change(self, command: str, args: list[str]) -> None:
        self._need(args, 1, "a transaction command")
        transaction = self._transaction(args[0])
        if transaction.error is not None:
            return  # refused already: its commit fails, nothing more is kept
        if command in ("S", "U") and len(transaction.changes) >= MAX_CHANGES:
            self._need(args, 2, "a change")
            if args[1] not in transaction.changes:
                transaction.error = f"more than {MAX_CHANGES} changes in one transaction"
                transaction.changes.clear()
                return
        if command == "S":
            self._need(args, 3, "SET")
            transaction.changes[args[1]] = args[2]
        elif command == "U":
            self._need(args, 2, "UNSET")
            transaction.changes[args[1]] = None
        elif command == "A":
            # An increment needs the stored value; no Roost dict keeps counters.
            transaction.error = f"dict {self.dict_name} has no counters to increment"
        # "T" (the transaction's timestamp) changes nothing Roost stores.

    def _commit(self, transaction_id: str) -> str:
        transaction = self.transactions.pop(transaction_id, None)
        if transaction is None:
            raise _ProtocolViolation(f"transaction {transaction_id!r} was not begun")
        error = transaction.error
        if error is None:
            try:
                self.backend.commit(transaction.user, transaction.changes)
            except DictError as exc:
                error = str(exc)
            except Exception:
                log.exception("dict %s: commit for %r failed", self.dict_name, transaction.user)
                error = "internal error in the gate"
        if error is not None:
            return f"F{transaction_id}\t{tab_escape(error)}"
        return f"O{transaction_id}"


def _parse_hello(line: str) -> str:
    """The dict name from the hello line; a version this server does not speak is refused."""
    if not line.startswith("H"):
        raise _ProtocolViolation("the first line is not a hello")
    fields = [tab_unescape(item) for item in line[1:].split("\t")]
    if len(fields) < 5:
        raise _ProtocolViolation("hello with too few fields")
    if fields[0] != PROTOCOL_MAJOR:
        raise _ProtocolViolation(
            f"protocol version {fields[0]}.{fields[1]}; this gate speaks {PROTOCOL_MAJOR}.x"
        )
    return fields[4]


def _counted_as(dict_name: str) -> str:
    """The counter prefix of a dict; a name no Dovecot setting would use counts as ``?``."""
    return f"dict {dict_name}" if dict_name.isidentifier() and len(dict_name) <= 32 else "dict ?"


async def _serve(
    backend: DictBackend,
    counters: RequestCounters,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    connection: _Connection | None = None
    kind = ""
    try:
        while True:
            try:
                raw = await reader.readuntil(b"\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                break
            line = raw[:-1].decode("utf-8", "replace")
            if connection is None:
                connection = _Connection(backend, _parse_hello(line))
                kind = _counted_as(connection.dict_name)
                counters.count(kind + " connection")
                continue
            if not line:
                raise _ProtocolViolation("empty command line")
            counted = _COUNTED.get(line[0])
            if counted is not None:
                counters.count(f"{kind} {counted}")
            args = [tab_unescape(item) for item in line[1:].split("\t")]
            reply = connection.handle(line[0], args)
            if reply is not None:
                writer.write(reply.encode("utf-8") + b"\n")
                await writer.drain()
    except _ProtocolViolation as exc:
        name = connection.dict_name if connection is not None else "?"
        log.warning("dict %s: closing a connection: %s", name, exc)
    except (ConnectionError, OSError):
        pass
    finally:
        await close_quietly(writer)


async def start_dict_server(
    backend: DictBackend, path: Path, counters: RequestCounters | None = None
) -> asyncio.Server:
    """Listen on ``path``; the caller sets who may open it."""
    tally = counters or RequestCounters()
    return await asyncio.start_unix_server(
        lambda reader, writer: _serve(backend, tally, reader, writer),
        path=str(path),
        limit=MAX_LINE,
    )
