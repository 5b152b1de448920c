"""The merged log: every child's output, line by line behind its name, on the runner's stdout.

Each child's stdout and stderr are one pipe the runner made (:func:`open_pipe`); the
runner reads it in blocks and writes whole lines, each behind the child's prefix
(``postfix | ...``), to its own stdout, which is the journal under systemd.

What this costs the runner is per *wake-up* (a poll, a read(2), a write(2), the Python
around them), not per line: the per-line work (cutting lines, the prefix, invalid UTF-8
replaced, trailing carriage returns dropped) is a handful of operations on the whole block,
done in C by ``bytes`` and ``str`` methods. So the runner wakes up for its children's
output at most about once per :data:`HOLD` while they write: a pipe that becomes readable
is read at once (a quiet daemon's line goes out without delay), and is then *held*: left
alone until a tick :data:`HOLD` later, common to every held pipe, reads all of them and
writes what they gave in one write(2). A pipe goes back to waiting in epoll only once a
read finds it empty. A busy daemon's lines therefore come in blocks, at most :data:`HOLD`
late, and lines of different daemons within one tick are grouped by daemon. The pipe holds
up to :data:`PIPE_SIZE` meanwhile (F_SETPIPE_SZ, fcntl(2)); a writer finding it full
waits, as it would for any slow log reader.

A line longer than :data:`CHUNK` is cut into pieces of that size, so a child that never
ends its line cannot make the runner hold an unbounded buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
from collections.abc import Callable
from typing import BinaryIO

__all__ = ["CHUNK", "HOLD", "Pipe", "Relay", "open_pipe", "to_stream"]

#: how long the runner leaves a pipe alone after reading from it, in seconds
HOLD = 0.02
#: ... and while its children write more than BUSY lines/s in all
HOLD_BUSY = 0.25
BUSY = 200
#: the pipe's capacity while the runner holds off: 1 MiB is 20 MiB/s of log lines
PIPE_SIZE = 1 << 20
#: the pipes are read into one buffer of this size: os.read would allocate (mmap) a new
#: one of the size asked for at every read, which costs more than the read
READ_SIZE = 1 << 18
CHUNK = 65536
_CARRIAGE_RETURNS = re.compile(b"\r+\n")


def open_pipe() -> tuple[int, int]:
    """A pipe (read end, write end) for a child's output; neither end is inherited by
    other children (O_CLOEXEC), the read end does not block."""
    read, write = os.pipe2(os.O_CLOEXEC)
    os.set_blocking(read, False)
    with contextlib.suppress(OSError):  # not on this kernel, or over pipe-max-size
        fcntl.fcntl(read, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    return read, write


def to_stream(stream: BinaryIO) -> Callable[[bytes], None]:
    """A sink writing each block to ``stream`` at once (one write(2) for a block larger
    than its buffer); gives up quietly when nobody reads any more."""

    def write(block: bytes) -> None:
        try:
            stream.write(block)
            stream.flush()
        except (BrokenPipeError, ValueError):
            pass  # nobody reads our output any more; keep supervising

    return write


class Relay:
    """The merged output, and the pipes that feed it.

    A pipe that becomes readable is read at once; from then on it is *held*: read again,
    with every other held pipe, at a common tick, and it goes back to waiting (epoll) only
    once a read finds it empty. Ticks come :data:`HOLD` apart, or :data:`HOLD_BUSY` while
    the last one found the children writing :data:`BUSY` lines a second or more. Each read
    pass ends with one write of everything it gathered; the runner's own lines are written
    at once, after what was gathered before them.
    """

    def __init__(self, sink: Callable[[bytes], None]) -> None:
        self._sink = sink
        self._pending = bytearray()
        self._lines = 0
        self._held: dict[Pipe, None] = {}  # insertion-ordered set
        self._tick: asyncio.TimerHandle | None = None
        self._since = 0.0
        self.buffer = memoryview(bytearray(READ_SIZE))

    def open(self, fd: int, prefix: str, seen: Callable[[bytes], None] | None = None) -> Pipe:
        """Relay the lines of the pipe ``fd`` (its read end, which the Pipe closes)."""
        return Pipe(self, fd, prefix.encode(), seen)

    def add(self, block: bytes) -> None:
        self._pending += block
        self._lines += block.count(b"\n")

    def line(self, text: str) -> None:
        self._pending += text.encode("utf-8", "replace") + b"\n"
        self.flush()

    def flush(self) -> None:
        if self._pending:
            block = bytes(self._pending)
            self._pending.clear()
            self._sink(block)

    def hold(self, pipe: Pipe) -> None:
        self._held[pipe] = None
        if self._tick is None:
            self._schedule(HOLD)

    def release(self, pipe: Pipe) -> None:
        self._held.pop(pipe, None)

    def _schedule(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self._since = loop.time()
        self._tick = loop.call_later(delay, self._read_held)

    def _read_held(self) -> None:
        held = list(self._held)
        self._held.clear()
        lines = self._lines
        for pipe in held:
            pipe.read()
        self.flush()
        self._tick = None
        if self._held:
            rate = (self._lines - lines) / (asyncio.get_running_loop().time() - self._since)
            self._schedule(HOLD_BUSY if rate >= BUSY else HOLD)


class Pipe:
    """Reads one child's output pipe until every writer has closed it (``done``)."""

    def __init__(
        self, relay: Relay, fd: int, prefix: bytes, seen: Callable[[bytes], None] | None
    ) -> None:
        self._relay = relay
        self._buffer = relay.buffer
        self._fd = fd
        self._prefix = prefix
        self._between = b"\n" + prefix
        #: told every block of lines as read (without prefixes), for a child's last lines
        self._seen = seen
        self._rest = b""
        self._loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self._loop.create_future()
        self._loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        self._loop.remove_reader(self._fd)
        self.read()
        self._relay.flush()

    def read(self) -> None:
        """Read what the pipe holds; then hold it, wait for it, or close it at its end."""
        if self.done.done():
            return
        data = b""
        while len(data) in (0, READ_SIZE):
            try:
                data = self._buffer[: os.readv(self._fd, [self._buffer])].tobytes()
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                self.close()
                return
            self._feed(data)
        if data:
            self._relay.hold(self)
        else:
            self._loop.add_reader(self._fd, self._readable)

    def _feed(self, data: bytes) -> None:
        if self._rest:
            data = self._rest + data
        end = data.rfind(b"\n") + 1
        self._rest = data[end:]
        whole = data[:end]
        while len(self._rest) >= CHUNK:
            whole += self._rest[:CHUNK] + b"\n"
            self._rest = self._rest[CHUNK:]
        if whole:
            self._emit(whole)

    def _emit(self, whole: bytes) -> None:
        """``whole``: complete lines, each ending in a newline."""
        if not whole.isascii():  # the merged log is UTF-8: anything else is replaced
            whole = whole.decode("utf-8", "replace").encode()
        if b"\r" in whole:
            whole = _CARRIAGE_RETURNS.sub(b"\n", whole)
        if self._seen is not None:
            self._seen(whole)
        self._relay.add(self._prefix + whole[:-1].replace(b"\n", self._between) + b"\n")

    def close(self) -> None:
        """Stop reading: the end of the output, or the runner is stopping; the last
        unfinished line goes out as it is."""
        if self.done.done():
            return
        self._relay.release(self)
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        if self._rest:
            self._emit(self._rest + b"\n")
            self._rest = b""
        self.done.set_result(None)
