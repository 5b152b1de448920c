"""The gate's control socket: "reload now", asked by whoever just changed the store, and
the held senders (``roost hold``).

Line protocol over the Unix socket ``layout.gate_control`` (``0600 root``), and over
``layout.gate_web_control`` (``0660 root:_roost-web``), where the web application, which
runs as its own user, asks for ``reload`` and nothing else is answered. The client
writes one command and a newline, the gate answers one line, ``ok ...`` or
``error <reason>``:

* ``reload``: the gate rebuilds its index from the store, swaps it in, and answers
  ``ok <generation>`` -- only then, so a CLI command that waits for the answer knows its
  change is what the next Postfix lookup or login sees. The store's generation poll
  catches every change within a second anyway; this makes the CLI's changes immediate
  and lets it report a gate that is not there.
* ``held``: ``ok <JSON list>`` of the held senders (``roost/gate/holds.py``).
* ``release <login>``: lifts the hold; ``ok <JSON>`` of what it was, or ``ok null``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from dataclasses import asdict
from pathlib import Path
from typing import Any

from roost.gate.holds import Held, SenderHolds
from roost.gate.index import Index
from roost.gate.streams import close_quietly
from roost.layout import Layout

__all__ = [
    "GateControlError",
    "held_senders",
    "release_sender",
    "request_reload",
    "start_control_server",
]

log = logging.getLogger("roost.gate")

#: Longest command line accepted.
MAX_LINE = 1024
#: Longest answer read (the list of held senders).
MAX_REPLY = 1 << 22


class GateControlError(RuntimeError):
    """A gate is listening but did not do what was asked; the message says why."""


async def _reload(index: Index) -> str:
    try:
        generation = await index.load()
    except Exception as exc:
        log.warning("reload requested but the store cannot be read: %s", exc)
        return f"error {exc}"
    log.info("index reloaded on request: generation %d", generation)
    return f"ok {generation}"


def _held_json(held: Held | None) -> str:
    return json.dumps(asdict(held) if held is not None else None)


async def _answer(index: Index, holds: SenderHolds | None, command: str) -> str:
    verb, _, argument = command.partition(" ")
    if verb == "reload" and not argument:
        return await _reload(index)
    if verb == "held" and not argument and holds is not None:
        return "ok " + json.dumps([asdict(held) for held in holds.held()])
    if verb == "release" and argument and holds is not None:
        return "ok " + _held_json(await holds.release(argument.strip()))
    return "error unknown command"


async def _serve(
    index: Index,
    holds: SenderHolds | None,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    try:
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                break
            command = line.decode("utf-8", "replace").strip()
            reply = (await _answer(index, holds, command)).replace("\n", " ") + "\n"
            writer.write(reply.encode("utf-8", "replace"))
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        await close_quietly(writer)


async def start_control_server(
    index: Index, path: Path, holds: SenderHolds | None = None
) -> asyncio.Server:
    """Listen on ``path`` (mode 0600: only root may make the gate reload or release)."""
    server = await asyncio.start_unix_server(
        lambda r, w: _serve(index, holds, r, w), path=str(path), limit=MAX_LINE
    )
    path.chmod(0o600)
    return server


def _ask(layout: Layout, command: str, timeout: float, path: Path | None = None) -> str | None:
    """Send one command; the gate's answer line, or None when no gate is running."""
    path = path or layout.gate_control
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        except OSError as exc:
            raise GateControlError(f"cannot reach the gate at {path}: {exc}") from None
        try:
            sock.sendall(command.encode("utf-8") + b"\n")
            reply = b""
            while not reply.endswith(b"\n") and len(reply) < MAX_REPLY:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        except TimeoutError:
            raise GateControlError(
                f"the gate at {path} did not answer within {timeout:g} s"
            ) from None
        except OSError as exc:
            raise GateControlError(f"talking to the gate at {path}: {exc}") from None
    return reply.decode("utf-8", "replace").strip()


def request_reload(layout: Layout, timeout: float = 5.0) -> int | None:
    """Ask the running gate to reload; return the generation it now answers from.

    Returns None when no gate is running (no socket, or nobody listening on it), which is
    normal when the stack is stopped: the gate reads the store when it starts. Raises
    :class:`GateControlError` when a gate is there but fails or does not answer in time.

    Root (the CLI) asks on ``gate_control``; any other process, which can only be the web
    application as its own user, on ``gate_web_control``, the one socket it may open.
    """
    path = layout.gate_control if os.geteuid() == 0 else layout.gate_web_control
    text = _ask(layout, "reload", timeout, path)
    if text is None:
        return None
    if text.startswith("ok ") and text[3:].isdigit():
        return int(text[3:])
    raise GateControlError(f"the gate could not reload: {text or 'no answer'}")


def _ask_running(layout: Layout, command: str, timeout: float) -> Any:
    """The JSON after ``ok`` of a command only a running gate can answer."""
    text = _ask(layout, command, timeout)
    if text is None:
        raise GateControlError(
            f"no gate answers at {layout.gate_control}: is Roost running? (roost up)"
        )
    if not text.startswith("ok "):
        raise GateControlError(f"the gate refused {command.split()[0]!r}: {text or 'no answer'}")
    return json.loads(text[3:])


def held_senders(layout: Layout, timeout: float = 5.0) -> list[Held]:
    """The logins the running gate holds, oldest first."""
    return [Held(**entry) for entry in _ask_running(layout, "held", timeout)]


def release_sender(layout: Layout, login: str, timeout: float = 5.0) -> Held | None:
    """Lift the hold on ``login``; what it was, or None when it was not held."""
    entry = _ask_running(layout, f"release {login}", timeout)
    return Held(**entry) if entry is not None else None
