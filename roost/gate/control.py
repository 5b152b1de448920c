"""The gate's control socket: "reload now", asked by whoever just changed the store.

Line protocol over the Unix socket ``layout.gate_control``: the client writes ``reload``
and a newline; the gate rebuilds its index from the store, swaps it in, and answers
``ok <generation>`` — only then, so a CLI command that waits for the answer knows its
change is what the next Postfix lookup or login sees. A failure answers ``error <reason>``.
The store's generation poll catches every change within a second anyway; this makes the
CLI's changes immediate and lets it report a gate that is not there.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

from roost.gate.index import Index
from roost.gate.streams import close_quietly
from roost.layout import Layout

__all__ = ["GateControlError", "request_reload", "start_control_server"]

log = logging.getLogger("roost.gate")

#: Longest command line accepted.
MAX_LINE = 256


class GateControlError(RuntimeError):
    """A gate is listening but did not do what was asked; the message says why."""


async def _serve(index: Index, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                break
            command = line.strip()
            if command == b"reload":
                try:
                    generation = await index.load()
                except Exception as exc:
                    log.warning("reload requested but the store cannot be read: %s", exc)
                    reply = f"error {exc}".replace("\n", " ") + "\n"
                else:
                    log.info("index reloaded on request: generation %d", generation)
                    reply = f"ok {generation}\n"
            else:
                reply = "error unknown command\n"
            writer.write(reply.encode("utf-8", "replace"))
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        await close_quietly(writer)


async def start_control_server(index: Index, path: Path) -> asyncio.Server:
    """Listen on ``path`` (mode 0600: only root may make the gate reload)."""
    server = await asyncio.start_unix_server(
        lambda r, w: _serve(index, r, w), path=str(path), limit=MAX_LINE
    )
    path.chmod(0o600)
    return server


def request_reload(layout: Layout, timeout: float = 5.0) -> int | None:
    """Ask the running gate to reload; return the generation it now answers from.

    Returns None when no gate is running (no socket, or nobody listening on it), which is
    normal when the stack is stopped: the gate reads the store when it starts. Raises
    :class:`GateControlError` when a gate is there but fails or does not answer in time.
    """
    path = layout.gate_control
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        except OSError as exc:
            raise GateControlError(f"cannot reach the gate at {path}: {exc}") from None
        try:
            sock.sendall(b"reload\n")
            reply = b""
            while not reply.endswith(b"\n") and len(reply) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        except TimeoutError:
            raise GateControlError(
                f"the gate at {path} did not answer within {timeout:g} s"
            ) from None
        except OSError as exc:
            raise GateControlError(f"talking to the gate at {path}: {exc}") from None
    text = reply.decode("utf-8", "replace").strip()
    if text.startswith("ok ") and text[3:].isdigit():
        return int(text[3:])
    raise GateControlError(f"the gate could not reload: {text or 'no answer'}")
