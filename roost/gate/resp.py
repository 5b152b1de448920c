"""A lean, pipelined Redis client for the rate limiter's hot path.

Every password login costs the gate one Redis round trip (:mod:`roost.gate.limiter`).
redis-py's asyncio client spends more CPU on that round trip than the whole login decision:
a pooled connection per concurrent caller, a lock, and two ``asyncio.wait_for`` (each a
task on Python 3.11) around every command. This client keeps one connection and speaks the
Redis serialization protocol (RESP2, "Redis serialization protocol specification" in the
Redis documentation) directly:

* commands are RESP arrays of bulk strings; those issued in one turn of the event loop
  leave in one write, and Redis answers them in order (pipelining, the same document's
  "Pipelining"), so concurrent logins share a round trip;
* replies are parsed by hiredis's C reader and handed to the callers' futures in order;
* one timer per connection, not per command, enforces ``timeout``: when the oldest command
  waits longer, every waiting command fails with TimeoutError and the connection is
  dropped (the next command reconnects), which is what the limiter's fallback needs;
* scripts go by SHA1 (EVALSHA) and are sent in full (EVAL, which also caches them) only
  when Redis answers NOSCRIPT, after a restart or SCRIPT FLUSH (Redis's EVALSHA manual).

Errors are ConnectionError (connection refused or lost), TimeoutError, and
:class:`ReplyError` for an error reply.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import hiredis

__all__ = ["RedisConnection", "ReplyError", "Script"]

Arg = str | bytes | int


class ReplyError(Exception):
    """Redis answered a command with an error reply (``-ERR ...``)."""


def encode(args: tuple[Arg, ...]) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = []
    for arg in args:
        if isinstance(arg, str):
            data = arg.encode("utf-8")
        elif isinstance(arg, int):
            data = b"%d" % arg
        else:
            data = arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"*%d\r\n" % len(args) + b"".join(parts)


class _Protocol(asyncio.Protocol):
    """One connection: writes batched per loop turn, replies matched to waiters in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._loop = loop
        self._timeout = timeout
        self._reader = hiredis.Reader(replyError=ReplyError)
        self._transport: asyncio.Transport | None = None
        self._outgoing: list[bytes] = []
        # (future, deadline) per command sent or about to be, oldest first
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self._transport = cast(asyncio.Transport, transport)

    def send(self, command: bytes) -> asyncio.Future[Any]:
        if self.lost:
            raise ConnectionError("connection to Redis lost")
        future = self._loop.create_future()
        if not self._outgoing:
            self._loop.call_soon(self._flush)
        self._outgoing.append(command)
        self._waiting.append((future, self._loop.time() + self._timeout))
        if self._timer is None:
            self._timer = self._loop.call_at(self._waiting[0][1], self._check)
        return future

    def _flush(self) -> None:
        if self._outgoing and self._transport is not None and not self.lost:
            self._transport.write(b"".join(self._outgoing))
        self._outgoing.clear()

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        waiting = self._waiting
        reader.feed(data)
        while (reply := reader.gets()) is not False:
            if not waiting:
                self._fail(ConnectionError("Redis sent a reply nobody asked for"))
                return
            future = waiting.popleft()[0]
            if future.done():  # its caller was cancelled
                continue
            if isinstance(reply, ReplyError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def _check(self) -> None:
        """The timer: fail everything once the oldest command has waited too long."""
        self._timer = None
        if not self._waiting:
            return
        deadline = self._waiting[0][1]
        if deadline <= self._loop.time():
            self._fail(TimeoutError("Redis did not answer in time"))
        else:
            self._timer = self._loop.call_at(deadline, self._check)

    def _fail(self, exc: Exception) -> None:
        self.lost = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiting:
            future = self._waiting.popleft()[0]
            if not future.done():
                future.set_exception(exc)
        self._outgoing.clear()
        if self._transport is not None:
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def close(self) -> None:
        self.lost = True
        if self._transport is not None:
            self._transport.close()


def _retrieve(task: asyncio.Task[Any]) -> None:
    """A failed connect whose waiters were all cancelled is not an unretrieved error."""
    if not task.cancelled():
        task.exception()


class RedisConnection:
    """One pipelined connection to Redis's Unix socket, made on first use and again after a
    failure; database ``db`` is selected on each connect."""

    def __init__(self, socket_path: Path, db: int, timeout: float) -> None:
        self._path = str(socket_path)
        self._db = db
        self._timeout = timeout
        self._protocol: _Protocol | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._timeout):
            _, protocol = await loop.create_unix_connection(
                lambda: _Protocol(loop, self._timeout), self._path
            )
            if self._db:
                try:
                    await protocol.send(encode(("SELECT", self._db)))
                except BaseException:
                    protocol.close()
                    raise
        return protocol

    async def _connected(self) -> _Protocol:
        """A new connection, made once for every command that asks meanwhile."""
        loop = asyncio.get_running_loop()
        if self._connecting is None or self._loop is not loop:
            self._loop = loop
            self._connecting = loop.create_task(self._connect())
            self._connecting.add_done_callback(_retrieve)
        connecting = self._connecting
        try:
            protocol = await asyncio.shield(connecting)
        finally:
            if self._connecting is connecting and connecting.done():
                self._connecting = None
        self._protocol = protocol
        return protocol

    async def call(self, *args: Arg) -> Any:
        """Send one command; its reply (ReplyError for an error reply)."""
        command = encode(args)
        protocol = self._protocol
        if protocol is None or protocol.lost or self._loop is not asyncio.get_running_loop():
            try:
                protocol = await self._connected()
            except OSError as exc:
                reason = exc or type(exc).__name__
                raise ConnectionError(f"cannot connect to Redis at {self._path}: {reason}") from exc
        return await protocol.send(command)

    async def close(self) -> None:
        if self._protocol is not None and self._loop is asyncio.get_running_loop():
            self._protocol.close()
        self._protocol = None


class Script:
    """A Lua script run with EVALSHA, loaded with EVAL when Redis does not know it."""

    def __init__(self, connection: RedisConnection, source: str) -> None:
        self._connection = connection
        self._source = source
        self._sha = hashlib.sha1(source.encode("utf-8")).hexdigest()  # EVALSHA names scripts so

    async def __call__(self, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        try:
            return await self._connection.call("EVALSHA", self._sha, len(keys), *keys, *args)
        except ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await self._connection.call("EVAL", self._source, len(keys), *keys, *args)
