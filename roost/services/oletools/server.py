"""Roost's olefy server: Rspamd's ``oletools`` scanner asks it about Office documents.

Rspamd's ``external_services`` module (``lua_scanners/oletools.lua``) speaks the "olefy"
protocol: it connects, sends ``OLEFY/1.0``, a ``Method: oletools`` line, an
``Rspamd-ID:`` line, an empty line and the attachment, then shuts its side down. The
answer is olevba's JSON list (:mod:`roost.services.oletools.scan`) followed by the stop
word ``\\t\\n\\n\\t``, after which the server closes the connection.

The server itself never parses a document: it keeps :data:`WORKERS` worker processes
(:mod:`roost.services.oletools.worker`) and gives each document to an idle one, with
:data:`SCAN_TIMEOUT` to answer. A worker that overruns or dies is killed and replaced and
the document gets an error reply, so Rspamd sets ``OLETOOLS_FAIL`` and the mail waits
(4xx) rather than pass unscanned. Every answer, good or bad, is one JSON list: nothing a
client sends ends the server.

Run as ``python -m roost.services.oletools.server --socket PATH`` (roost/services/oletools
starts it as an unprivileged user); the socket is made ``0660`` in a directory that gives
it Rspamd's group.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import struct
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from roost.services.oletools.scan import error_reply

__all__ = [
    "MAX_DOCUMENT",
    "SCAN_TIMEOUT",
    "STOP_WORD",
    "OlefyServer",
    "ScanFailed",
    "WorkerPool",
    "main",
    "parse_request",
]

log = logging.getLogger("roost.oletools")

#: Rspamd's rule sends parts up to 3 MiB (``max_size``); a little room beyond that.
MAX_DOCUMENT = 3 * 1024 * 1024 + 64 * 1024
MAX_HEADER = 4096
#: Seconds one document may take in a worker; Rspamd's own timeout is 60 s.
SCAN_TIMEOUT = 20.0
#: Seconds a client has to send its request.
READ_TIMEOUT = 30.0
#: Worker processes: one document each at a time (two cores on a small host).
WORKERS = 2
#: Clients served at once; others get an error reply at once (Rspamd retries).
MAX_CLIENTS = 32
#: What ends a reply for Rspamd (it reads until it sees this or a short read).
STOP_WORD = b"\t\n\n\t"
_LENGTH = struct.Struct(">I")


class ScanFailed(Exception):
    """A worker did not answer in time or died; the document gets an error reply."""


class BadRequest(ValueError):
    """The client did not speak olefy."""


class _Silent(Exception):
    """A connection that closed without sending a byte: the runner's readiness probe."""


def parse_request(header: bytes) -> dict[str, str]:
    """The request's header lines (after ``OLEFY/1.0``) as a dict; BadRequest if not olefy."""
    try:
        text = header.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest("the header is not ASCII") from None
    lines = text.split("\n")
    if lines[0].strip() != "OLEFY/1.0":
        raise BadRequest("not an OLEFY/1.0 request")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise BadRequest(f"header line without a colon: {line[:40]!r}")
        fields[name.strip().lower()] = value.strip()
    method = fields.get("method", "oletools")
    if method != "oletools":
        raise BadRequest(f"unknown method {method[:40]!r}")
    return fields


class _Worker:
    """One worker process and its pipes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def ask(self, document: bytes) -> bytes:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(_LENGTH.pack(len(document)) + document)
        await stdin.drain()
        (length,) = _LENGTH.unpack(await stdout.readexactly(_LENGTH.size))
        return await stdout.readexactly(length)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()


class WorkerPool:
    """Worker processes handed out one document at a time."""

    def __init__(self, command: Sequence[str], size: int = WORKERS, timeout: float = SCAN_TIMEOUT):
        self.command = list(command)
        self.size = size
        self.timeout = timeout
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._all: set[_Worker] = set()

    async def _spawn(self) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            *self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        worker = _Worker(process)
        self._all.add(worker)
        return worker

    async def start(self) -> None:
        for _ in range(self.size):
            self._idle.put_nowait(await self._spawn())

    async def scan(self, document: bytes) -> list[Any]:
        """The reply items for one document; ScanFailed when the worker could not say."""
        worker = await self._idle.get()
        healthy = False
        try:
            raw = await asyncio.wait_for(worker.ask(document), self.timeout)
            reply = json.loads(raw)
            if not isinstance(reply, list):
                raise ScanFailed("the worker's reply is not a list")
            healthy = True
            return reply
        except (TimeoutError, asyncio.IncompleteReadError, OSError, ValueError) as exc:
            raise ScanFailed(f"{type(exc).__name__}: {exc}") from None
        finally:
            if not healthy:
                # Its state is unknown (overrun, dead, or cancelled mid-frame): replace it.
                worker.kill()
                self._all.discard(worker)
                await _reap(worker)
                worker = await self._spawn()
            self._idle.put_nowait(worker)

    async def close(self) -> None:
        for worker in list(self._all):
            if worker.process.stdin is not None:
                worker.process.stdin.close()
        for worker in list(self._all):
            try:
                await asyncio.wait_for(worker.process.wait(), 5)
            except TimeoutError:
                worker.kill()
                await worker.process.wait()
        self._all.clear()


async def _reap(worker: _Worker) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(worker.process.wait(), 5)


class OlefyServer:
    """The Unix-socket server: reads olefy requests, answers with the pool's verdicts."""

    def __init__(self, pool: WorkerPool, max_clients: int = MAX_CLIENTS) -> None:
        self.pool = pool
        self._slots = asyncio.Semaphore(max_clients)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            reply = await self._answer(reader)
            writer.write(json.dumps(reply).encode("utf-8") + STOP_WORD)
            await writer.drain()
        except _Silent:
            pass
        except (ConnectionError, OSError):
            pass  # the client went away; nothing to tell it
        except Exception:
            log.exception("unexpected error while answering a client")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> list[Any]:
        if self._slots.locked():
            return error_reply("Busy", "too many clients at once")
        async with self._slots:
            try:
                fields, document = await asyncio.wait_for(_read_request(reader), READ_TIMEOUT)
            except BadRequest as exc:
                log.warning("refused a request: %s", exc)
                return error_reply("BadRequest", str(exc))
            except TimeoutError:
                return error_reply("Timeout", "the request did not arrive in time")
            ident = fields.get("rspamd-id", "-")[:64]
            try:
                reply = await self.pool.scan(document)
            except ScanFailed as exc:
                log.warning("%s: %d bytes not scanned: %s", ident, len(document), exc)
                return error_reply("ScanFailed", str(exc))
            log.info("%s: %d bytes: %s", ident, len(document), _summary(reply))
            return reply


async def _read_request(reader: asyncio.StreamReader) -> tuple[dict[str, str], bytes]:
    try:
        header = await reader.readuntil(b"\n\n")
    except asyncio.LimitOverrunError:
        raise BadRequest("the header is too long") from None
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise _Silent from None
        raise BadRequest("the connection ended inside the header") from None
    fields = parse_request(header)
    document = await reader.read(MAX_DOCUMENT + 1)
    while len(document) <= MAX_DOCUMENT:
        more = await reader.read(MAX_DOCUMENT + 1 - len(document))
        if not more:
            break
        document += more
    if len(document) > MAX_DOCUMENT:
        # Read the rest and drop it (within the read timeout): closing a socket with
        # unread data resets it, and the client would never see why.
        while await reader.read(65536):
            pass
        raise BadRequest(f"the document is larger than {MAX_DOCUMENT} bytes")
    return fields, document


def _summary(reply: list[Any]) -> str:
    """One log word per document: what Rspamd will make of it."""
    for item in reply:
        if isinstance(item, dict) and item.get("type") == "error":
            return f"error {item.get('error')}"
        if isinstance(item, dict) and isinstance(item.get("analysis"), list):
            keywords = [str(entry.get("keyword")) for entry in item["analysis"][:6]]
            return "macros: " + (", ".join(keywords) or "nothing suspicious")
    return "no macros"


def worker_command() -> list[str]:
    """The worker: this interpreter, isolated from the environment and the directory."""
    return [sys.executable, "-I", "-m", "roost.services.oletools.worker"]


async def serve(socket_path: Path, workers: int = WORKERS) -> None:
    """Serve on ``socket_path`` until SIGTERM or SIGINT."""
    pool = WorkerPool(worker_command(), size=workers)
    await pool.start()
    server = OlefyServer(pool)
    socket_path.unlink(missing_ok=True)
    # 0660: the directory's set-group-ID bit gives the socket Rspamd's group.
    old_umask = os.umask(0o117)
    try:
        listener = await asyncio.start_unix_server(
            server.handle, path=str(socket_path), limit=MAX_HEADER
        )
    finally:
        os.umask(old_umask)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("olefy server on %s with %d workers", socket_path, workers)
    async with listener:
        await stop.wait()
    socket_path.unlink(missing_ok=True)
    await pool.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--workers", type=int, default=WORKERS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args.socket, args.workers))


if __name__ == "__main__":
    main()
