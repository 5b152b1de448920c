"""The merged log: every child's output, line by line behind its name, on the runner's stdout.

Each child's stdout and stderr are one pipe the runner made (:func:`open_pipe`); the
runner reads it in blocks and writes whole lines, each behind the child's prefix
(``postfix | ...``), to its own stdout, which is the journal under systemd.

What this costs the runner is mostly per *wake-up* (the event loop's turn, a read(2) per
pipe, a write(2), the Python around them), hardly per line: the per-line work (cutting
lines, the prefix, invalid UTF-8 replaced, trailing carriage returns dropped) is a few
``bytes`` methods over the whole block, done in C. So:

- while the children write little (under :data:`BUSY` lines a second in all, averaged
  over about :data:`SMOOTH`), a pipe is read as soon as it becomes readable (epoll), and
  what it gave is written at once;
- while they write more (a stack under load: about 13 lines per inbound message), a pipe
  that becomes readable is read at once and then *held*: out of epoll, read again with
  every other held pipe at a common tick :data:`HOLD` later, whose lines leave in one
  write(2). A pipe goes back to epoll once a read finds it empty, or the load has passed.
  A tick then gathers hundreds of lines: the runner wakes up a few times a second, not
  for every line. The load has passed when the rate falls under half of :data:`BUSY`.

So a line is at most :data:`HOLD` late, and the lines of different daemons that one tick
gathers are grouped by daemon (each daemon's in its order). The pipe holds up to
:data:`PIPE_SIZE` meanwhile (F_SETPIPE_SZ, fcntl(2)); a writer finding it full waits, as
it would for any slow reader of its log. bench/log_relay.py measures the cost.

A line that has not ended after :data:`CHUNK` bytes is cut there, so a child that never
ends its line cannot make the runner hold an unbounded buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import math
import os
import re
from collections.abc import Callable
from typing import BinaryIO

__all__ = ["BUSY", "CHUNK", "HOLD", "Pipe", "Relay", "open_pipe", "to_stream"]

#: lines a second, of all children together, from which pipes are held ...
BUSY = 20
#: ... and read every HOLD seconds; the rate is averaged over about SMOOTH seconds
HOLD = 0.25
SMOOTH = 1.0
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
    """The merged output, and the pipes that feed it (see the module's description).

    Each read pass ends with one write of everything it gathered; the runner's own lines
    are written at once, after what was gathered before them.
    """

    def __init__(self, sink: Callable[[bytes], None]) -> None:
        self._sink = sink
        self._pending = bytearray()
        self._lines = 0
        self._busy = False
        self._rate = 0.0
        self._last = (0.0, 0)  # when the rate was last updated, and the line count then
        self._held: dict[Pipe, None] = {}  # insertion-ordered set
        self._tick: asyncio.TimerHandle | None = None
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

    def busy(self) -> bool:
        """Whether the children write BUSY lines a second or more (until they write fewer
        than half as many): the rate of lines, averaged exponentially over about SMOOTH."""
        now = asyncio.get_running_loop().time()
        since, counted = self._last
        self._rate = (
            self._rate * math.exp((since - now) / SMOOTH) + (self._lines - counted) / SMOOTH
        )
        self._last = (now, self._lines)
        self._busy = self._rate >= (BUSY / 2 if self._busy else BUSY)
        return self._busy

    def hold(self, pipe: Pipe) -> None:
        self._held[pipe] = None
        if self._tick is None:
            self._tick = asyncio.get_running_loop().call_later(HOLD, self._read_held)

    def release(self, pipe: Pipe) -> None:
        self._held.pop(pipe, None)

    def _read_held(self) -> None:
        held = list(self._held)
        self._held.clear()
        self._tick = None
        for pipe in held:
            pipe.read(again=True)
        self.flush()


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
        self.read(again=False)
        self._relay.flush()

    def read(self, again: bool) -> None:
        """Read what the pipe holds (``again``: at a tick, else as epoll said it could);
        then hold it, leave it to epoll, or close it at its end."""
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
        if data and self._relay.busy():
            if not again:
                self._loop.remove_reader(self._fd)
            self._relay.hold(self)
        elif again:
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
        """Stop reading: the end of the output, or the runner is stopping (what the pipe
        holds still goes out); the last unfinished line goes out as it is."""
        if self.done.done():
            return
        self._relay.release(self)
        self._loop.remove_reader(self._fd)
        with contextlib.suppress(OSError):  # BlockingIOError: nothing more for now
            while size := os.readv(self._fd, [self._buffer]):
                self._feed(self._buffer[:size].tobytes())
        os.close(self._fd)
        if self._rest:
            self._emit(self._rest + b"\n")
            self._rest = b""
        self.done.set_result(None)
