"""Run the gate: load the index, listen on every socket, serve until SIGTERM/SIGINT.

Started by the runner as ``python -m roost gate`` (ARCHITECTURE "Processes", order 2:
after Redis, before the daemons that ask it). It reads the store once before it listens:
a gate that cannot read the store exits with the reason instead of answering "unknown
recipient" to Postfix, and the runner restarts it with back-off. "gate ready" is logged
once every socket accepts connections.

Sockets (``roost.layout``):

* ``run/gate/socketmap.sock`` — Postfix. The directory is ``0750 root:postfix`` and the
  socket ``0660 root:postfix``, so only Postfix (and root) can query the directory of
  users; the control socket beside it is ``0600``.
* ``INTERNAL:10080`` — HTTP for nginx and Dovecot.
* ``run/gate/control.sock`` — reload requests.
* ``run/gate-dict/dict.sock`` — Dovecot's dict lookups (before scripts, quota usage). The
  directory is ``0750 root:mail`` and the socket ``0660 root:mail``: Dovecot's mail
  processes run as the mail user, and nobody else needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import signal
import sys
from pathlib import Path

from roost.gate.auth import Gate
from roost.gate.control import request_reload, start_control_server
from roost.gate.dictproxy import start_dict_server
from roost.gate.homes import MailHomes
from roost.gate.http import start_http_server
from roost.gate.index import Index
from roost.gate.limiter import AuthLimiter
from roost.gate.routes import MailboxDict, QuotaUsageWriter, Routes
from roost.gate.socketmap import SocketmapProtocol, Socketmaps
from roost.layout import GATE_HTTP_PORT, Layout
from roost.settings import Settings
from roost.store.db import Store

__all__ = ["run", "serve"]

log = logging.getLogger("roost.gate")

#: The group of the Postfix daemons, which alone may query the socketmap.
POSTFIX_GROUP = "postfix"
#: The group of Dovecot's mail processes (mail_gid), which alone may open the dict socket.
MAIL_GROUP = "mail"
#: Longest path a Unix socket can have on Linux (``sun_path`` is 108 bytes with its NUL).
_SUN_PATH_MAX = 107


def _group_id(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def _postfix_gid() -> int | None:
    return _group_id(POSTFIX_GROUP)


def _give_to_mail_group(path: Path) -> None:
    gid = _group_id(MAIL_GROUP)
    if gid is None:
        return
    try:
        os.chown(path, -1, gid)
    except PermissionError:
        log.warning("cannot give %s to group %s; Dovecot may not reach the dict", path, MAIL_GROUP)


def _prepare_dict_socket(layout: Layout) -> None:
    """Create ``run/gate-dict`` as 0750 root:mail and clear a dead gate's socket."""
    path = layout.gate_dict
    if len(os.fsencode(path)) > _SUN_PATH_MAX:
        raise RuntimeError(
            f"socket path {path} is longer than {_SUN_PATH_MAX} bytes; use a shorter ROOT"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o750)
    _give_to_mail_group(path.parent)
    path.unlink(missing_ok=True)


def _prepare_socket_dir(layout: Layout) -> None:
    """Create ``run/gate`` as 0750 root:postfix and clear stale sockets from a dead gate."""
    for path in (layout.gate_socketmap, layout.gate_control):
        if len(os.fsencode(path)) > _SUN_PATH_MAX:
            raise RuntimeError(
                f"socket path {path} is longer than {_SUN_PATH_MAX} bytes; use a shorter ROOT"
            )
    directory = layout.gate_socketmap.parent
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o750)
    gid = _postfix_gid()
    if gid is not None:
        try:
            os.chown(directory, -1, gid)
        except PermissionError:
            log.warning(
                "cannot give %s to group %s; Postfix may not reach the socketmap",
                directory,
                POSTFIX_GROUP,
            )
    if request_reload(layout, timeout=2.0) is not None:
        raise RuntimeError(f"another gate is already serving {layout.gate_control}")
    for path in (layout.gate_socketmap, layout.gate_control):
        path.unlink(missing_ok=True)


def _restrict_socketmap(path: Path) -> None:
    path.chmod(0o660)
    gid = _postfix_gid()
    if gid is not None:
        try:
            os.chown(path, -1, gid)
        except PermissionError:
            log.warning("cannot give %s to group %s", path, POSTFIX_GROUP)


async def run(
    settings: Settings,
    *,
    store: Store | None = None,
    http_port: int = GATE_HTTP_PORT,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set (the process's signals set it under :func:`serve`).

    ``store``, ``http_port``, ``stop`` and ``ready`` let tests run a gate inside their own
    event loop; the defaults are what the real service uses.
    """
    layout = Layout(settings)
    stop = stop or asyncio.Event()
    own_store = store is None
    store = store or Store.from_settings(settings)
    index = Index(store)
    limiter = AuthLimiter(settings, layout.redis_socket)
    gate = Gate(settings, index, limiter)
    usage = QuotaUsageWriter(store)
    servers: list[asyncio.Server] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        generation = await index.load()
        _prepare_socket_dir(layout)
        _prepare_dict_socket(layout)
        loop = asyncio.get_running_loop()
        maps = Socketmaps(index, settings, limiter)
        socketmap = await loop.create_unix_server(
            lambda: SocketmapProtocol(maps.answer), path=str(layout.gate_socketmap)
        )
        servers.append(socketmap)
        _restrict_socketmap(layout.gate_socketmap)
        http = await start_http_server(
            Routes(gate, index, limiter, MailHomes(layout)), layout.internal_address, http_port
        )
        assert http.server is not None
        servers.append(http.server)
        servers.append(await start_control_server(index, layout.gate_control))
        servers.append(await start_dict_server(MailboxDict(index, usage), layout.gate_dict))
        layout.gate_dict.chmod(0o660)
        _give_to_mail_group(layout.gate_dict)
        tasks += [loop.create_task(index.watch()), loop.create_task(usage.run())]
        log.info(
            "gate ready: socketmap %s, http %s:%d, control %s, dict %s (store generation %d, %s)",
            layout.gate_socketmap,
            layout.internal_address,
            http_port,
            layout.gate_control,
            layout.gate_dict,
            generation,
            ", ".join(f"{n} {k}" for k, n in index.directory.counts().items()),
        )
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("gate stopping")
    finally:
        for server in servers:
            server.close()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Usage reported just before the stop is still written.
        await usage.flush()
        await gate.close()
        await limiter.close()
        if servers:
            for path in (layout.gate_socketmap, layout.gate_control, layout.gate_dict):
                path.unlink(missing_ok=True)
        if own_store:
            store.dispose()


def serve(settings: Settings) -> None:
    """Run the gate in the foreground until SIGTERM or SIGINT (blocking)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.LOG_LEVEL)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run(settings, stop=stop)

    asyncio.run(main())
