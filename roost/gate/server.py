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
* ``run/gate-http/http.sock`` — HTTP for nginx's ``auth_http``. The directory is ``0750
  root:www-data`` and the socket ``0660 root:www-data``: nginx's workers (``user
  www-data``) make the auth_http requests, and nobody else may ask.
* ``INTERNAL:10080`` — HTTP for Dovecot's Lua passdb/userdb, whose HTTP client speaks TCP
  only: any local process can connect, so every request must carry the stack's secret
  (``run/gate-secret/dovecot-http.secret``, ``0640 root:dovecot``), else it gets a 403.
* ``run/gate/control.sock`` — reload requests and the held senders (``roost hold``).
* ``run/gate-web/http.sock`` and ``run/gate-web/control.sock`` — the web application's
  (when the stack runs it): the HTTP routes of ``http.sock`` for its sign-ins, and a
  control socket that takes ``reload`` only. The directory is ``0750 root:_roost-web`` and
  the sockets ``0660 root:_roost-web``: the web runs as that user, in no other group of
  these sockets, and nobody else may ask here.
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
import resource
import signal
from pathlib import Path

import uvloop

from roost.gate.auth import Gate
from roost.gate.control import request_reload, start_control_server
from roost.gate.counters import RequestCounters
from roost.gate.dictproxy import start_dict_server
from roost.gate.holds import SenderHolds
from roost.gate.homes import MailHomes
from roost.gate.http import HttpServer
from roost.gate.index import Index
from roost.gate.limiter import AuthLimiter
from roost.gate.privileges import drop_capabilities
from roost.gate.routes import MailboxDict, QuotaUsageWriter, Routes
from roost.gate.rspamdpublish import RspamdPublisher
from roost.gate.secret import read_secret, write_secret
from roost.gate.socketmap import SocketmapProtocol, Socketmaps
from roost.gate.userdbfile import UserdbFile
from roost.gate.webmail import WebmailTokens
from roost.layout import GATE_HTTP_PORT, NGINX_USER, WEB_USER, Layout
from roost.process import log_to_stderr
from roost.services.web.service import web_enabled
from roost.settings import Settings
from roost.store.db import Store

__all__ = ["new_event_loop", "run", "serve"]

log = logging.getLogger("roost.gate")

#: The group of the Postfix daemons, which alone may query the socketmap.
POSTFIX_GROUP = "postfix"
#: The group of Dovecot's mail processes (mail_gid), which alone may open the dict socket.
MAIL_GROUP = "mail"
#: The group of nginx's workers, which alone may open the HTTP socket (auth_http).
NGINX_GROUP = NGINX_USER
#: Longest path a Unix socket can have on Linux (``sun_path`` is 108 bytes with its NUL).
_SUN_PATH_MAX = 107


def _group_id(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def _postfix_gid() -> int | None:
    return _group_id(POSTFIX_GROUP)


def _give_to_group(path: Path, group: str, who: str) -> None:
    gid = _group_id(group)
    if gid is None:
        log.warning("no group %s: %s cannot reach %s", group, who, path)
        return
    try:
        os.chown(path, -1, gid)
    except PermissionError:
        log.warning("cannot give %s to group %s; %s may not reach it", path, group, who)


def _prepare_private_socket(path: Path, group: str, who: str) -> None:
    """Create the socket's own directory as ``0750 root:<group>``; clear a dead gate's socket."""
    if len(os.fsencode(path)) > _SUN_PATH_MAX:
        raise RuntimeError(
            f"socket path {path} is longer than {_SUN_PATH_MAX} bytes; use a shorter ROOT"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o750)
    _give_to_group(path.parent, group, who)
    path.unlink(missing_ok=True)


def _web_group(settings: Settings) -> str | None:
    """The web's group when the stack runs the web and its user exists (the web service
    made it before the gate starts); None: no sockets for the web."""
    if not web_enabled(settings) or _group_id(WEB_USER) is None:
        return None
    return WEB_USER


def _prepare_dict_socket(layout: Layout) -> None:
    """Create ``run/gate-dict`` as 0750 root:mail and clear a dead gate's socket."""
    _prepare_private_socket(layout.gate_dict, MAIL_GROUP, "Dovecot's mail processes")


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard one; return the new soft limit.

    systemd starts services with a soft limit of 1,024 (its default LimitNOFILE=1024:524288)
    so that old select()-based programs keep working; asyncio uses epoll and has no use for
    the low limit, which a local flood of idle connections would otherwise exhaust.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
            return soft
        return target
    return soft


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
    rspamd = RspamdPublisher(settings, layout.rspamd_redis_socket)
    index.after_load.append(rspamd.loaded)
    userdb_file = UserdbFile(layout.gate_userdb, layout.mail)
    index.after_load.append(userdb_file.loaded)
    limiter = AuthLimiter(settings, layout.redis_socket)
    webmail = (
        WebmailTokens.for_socket(settings, str(layout.redis_socket))
        if settings.webmail_path
        else None
    )
    gate = Gate(settings, index, limiter, webmail=webmail)
    holds = SenderHolds(
        settings,
        index,
        verdicts_socket=layout.rspamd_redis_socket,
        state_socket=layout.redis_socket,
    )
    usage = QuotaUsageWriter(store)
    servers: list[asyncio.Server] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        generation = await index.load()
        _prepare_socket_dir(layout)
        _prepare_dict_socket(layout)
        loop = asyncio.get_running_loop()
        counters = RequestCounters()
        maps = Socketmaps(index, settings, limiter, holds, counters)
        socketmap = await loop.create_unix_server(
            lambda: SocketmapProtocol(maps.answer), path=str(layout.gate_socketmap)
        )
        servers.append(socketmap)
        _restrict_socketmap(layout.gate_socketmap)
        secret = read_secret(layout.gate_http_secret) or write_secret(layout.gate_http_secret)
        routes = Routes(
            gate, index, limiter, MailHomes(layout), counters, after_userdb=userdb_file.home_made
        )
        _prepare_private_socket(layout.gate_http_socket, NGINX_GROUP, "nginx")
        http_unix = HttpServer(routes)
        servers.append(await http_unix.start_unix(layout.gate_http_socket))
        layout.gate_http_socket.chmod(0o660)
        _give_to_group(layout.gate_http_socket, NGINX_GROUP, "nginx")
        http_tcp = HttpServer(routes, secret=secret)
        servers.append(await http_tcp.start(layout.internal_address, http_port))
        servers.append(await start_control_server(index, layout.gate_control, holds))
        web_group = _web_group(settings)
        if web_group is not None:
            _prepare_private_socket(layout.gate_web_http_socket, web_group, "the web")
            layout.gate_web_control.unlink(missing_ok=True)
            servers.append(await HttpServer(routes).start_unix(layout.gate_web_http_socket))
            # No holds: this control socket answers reload and nothing else.
            servers.append(await start_control_server(index, layout.gate_web_control))
            for path in (layout.gate_web_http_socket, layout.gate_web_control):
                path.chmod(0o660)
                _give_to_group(path, web_group, "the web")
        mailbox_dict = MailboxDict(index, usage)
        servers.append(await start_dict_server(mailbox_dict, layout.gate_dict, counters))
        layout.gate_dict.chmod(0o660)
        _give_to_group(layout.gate_dict, MAIL_GROUP, "Dovecot's mail processes")
        tasks += [loop.create_task(index.watch()), loop.create_task(usage.run())]
        tasks += [loop.create_task(rspamd.watch()), loop.create_task(holds.run())]
        log.info(
            "gate ready: socketmap %s, http %s and %s:%d, control %s, dict %s "
            "(store generation %d, %s)",
            layout.gate_socketmap,
            layout.gate_http_socket,
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
        userdb_file.close()
        await gate.close()
        await limiter.close()
        if webmail is not None:
            await webmail.close()
        await rspamd.close()
        await holds.close()
        if servers:
            for path in (
                layout.gate_socketmap,
                layout.gate_control,
                layout.gate_dict,
                layout.gate_http_socket,
                layout.gate_web_http_socket,
                layout.gate_web_control,
            ):
                path.unlink(missing_ok=True)
        if own_store:
            store.dispose()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The gate's event loop: uvloop's (libuv), which spends less CPU per request than
    asyncio's own on the gate's hot paths (docs/performance.md "Warm logins")."""
    return uvloop.new_event_loop()


def serve(settings: Settings) -> None:
    """Run the gate in the foreground until SIGTERM or SIGINT (blocking)."""
    log_to_stderr(settings.LOG_LEVEL, names=False)
    log.info("open-file limit %d", raise_open_file_limit())
    # Before the event loop starts any thread: capabilities are per thread, and threads
    # inherit those of the thread that creates them.
    if drop_capabilities():
        log.info("capabilities dropped to chown, dac_override and dac_read_search")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run(settings, stop=stop)

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main())
