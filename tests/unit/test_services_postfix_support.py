"""Stand-ins for the gate and Dovecot, and a Postfix runner, for the daemon smoke tests.

The real gate and Dovecot modules are written in parallel; these speak the same wire
protocols (Postfix socketmap, Dovecot's auth protocol, LMTP, nginx auth_http) from
dicts, so the tests exercise the real Postfix and nginx against exactly the sockets
roost.layout names. This module holds no tests itself.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller, UnixSocketController
from aiosmtpd.lmtp import LMTP

from roost import tls
from roost.layout import Layout
from roost.services.postfix import PostfixService
from roost.settings import Settings

DOMAIN = "example.test"
RELAY_DOMAIN = "relay.test"
USERS = {"alice@example.test": "alice-secret", "bob@example.test": "bob-secret"}
#: A sender of our domain that the stand-in gate's senderaccess map refuses.
FORGED_SENDER = "ceo@example.test"


@contextmanager
def roost_root() -> Iterator[Path]:
    """A ROOT the daemons' unprivileged users can traverse (pytest's tmp_path is 0700)."""
    parent = Path(tempfile.mkdtemp(prefix="roost-test-", dir="/tmp"))
    try:
        os.chmod(parent, 0o755)
        root = parent / "root"
        root.mkdir(mode=0o755)
        yield root
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def make_settings(root: Path, address: str, **values: Any) -> Settings:
    base: dict[str, Any] = {
        "ROOT": root,
        "DOMAIN": DOMAIN,
        "HOSTNAMES": ("mail.example.test", "smtp.example.test"),
        "BIND_ADDRESS4": address,
        "PORTS": (25, 80, 443, 465, 587, 993),
        "RECIPIENT_DELIMITER": "+",
    }
    base.update(values)
    return Settings(**base)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def tcp_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


class BackgroundLoop:
    """An asyncio loop in a thread, for servers the blocking test code talks to."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def netstring(text: str) -> bytes:
    data = text.encode()
    return b"%d:%s," % (len(data), data)


@dataclass
class Gate:
    """The gate's socketmap side, answering from dicts: ``maps[name][key] -> value``."""

    path: Path
    maps: dict[str, dict[str, str]]
    queries: list[tuple[str, str]] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                length = int((await reader.readuntil(b":"))[:-1])
                request = (await reader.readexactly(length + 1))[:-1].decode()
                name, _, key = request.partition(" ")
                self.queries.append((name, key))
                if name not in self.maps:
                    writer.write(netstring("PERM unknown map"))
                    await writer.drain()
                    continue
                # Postfix treats socketmap as a pattern table: transport_maps asks for
                # the full address only, so the gate answers it from the domain part.
                if name == "transport" and "@" in key:
                    key = key.rpartition("@")[2]
                value = self.maps[name].get(key)
                writer.write(netstring("NOTFOUND " if value is None else "OK " + value))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self) -> asyncio.AbstractServer:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        server = await asyncio.start_unix_server(self.handle, path=str(self.path))
        os.chmod(self.path, 0o666)  # Postfix's lookups run as the postfix user
        return server


@dataclass
class DovecotAuth:
    """Dovecot's auth-client socket (the protocol Postfix's ``dovecot`` SASL speaks).

    Protocol: https://doc.dovecot.org/developer_manual/design/auth_protocol/
    """

    path: Path
    passwords: dict[str, str]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nSPID\t1\nCUID\t1\n"
            b"COOKIE\t" + b"0" * 32 + b"\nDONE\n"
        )
        try:
            async for raw in reader:
                fields = raw.decode().rstrip("\n").split("\t")
                if fields[0] != "AUTH":
                    continue
                request_id = fields[1]
                response = next((f[5:] for f in fields if f.startswith("resp=")), None)
                if response is None:
                    writer.write(f"CONT\t{request_id}\t\n".encode())
                    await writer.drain()
                    cont = (await reader.readline()).decode().rstrip("\n").split("\t")
                    response = cont[2] if len(cont) > 2 else ""
                parts = base64.b64decode(response).split(b"\0")
                user, password = parts[1].decode(), parts[2].decode()
                if self.passwords.get(user) == password:
                    writer.write(f"OK\t{request_id}\tuser={user}\n".encode())
                else:
                    writer.write(f"FAIL\t{request_id}\tuser={user}\n".encode())
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def start(self) -> asyncio.AbstractServer:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        server = await asyncio.start_unix_server(self.handle, path=str(self.path))
        os.chmod(self.path, 0o666)
        return server


class Sink:
    """aiosmtpd handler that keeps every message; answers LMTP once per recipient."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "\r\n".join("250 2.0.0 stored" for _ in envelope.rcpt_tos)


class LMTPController(UnixSocketController):
    """Dovecot's LMTP socket, played by aiosmtpd."""

    def factory(self) -> LMTP:
        return LMTP(self.handler, **self.SMTP_kwargs)


@dataclass
class PostfixStack:
    """A rendered, running Postfix with its stand-in gate, Dovecot and remote MX."""

    layout: Layout
    service: PostfixService
    gate: Gate
    mailboxes: Sink
    remote: Sink
    remote_address: tuple[str, int]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def standard_maps(remote: tuple[str, int]) -> dict[str, dict[str, str]]:
    """The test directory: two users, an alias, and a relayed domain."""
    host, port = remote
    return {
        "domain": {DOMAIN: DOMAIN},
        "mailbox": {user: user for user in USERS},
        "alias": {
            **{user: user for user in USERS},
            "team@example.test": "alice@example.test,bob@example.test",
            DOMAIN: DOMAIN,
        },
        "transport": {RELAY_DOMAIN: f"smtp:[{host}]:{port}"},
        "senderlogin": {user: user for user in USERS},
        "recipientaccess": {},
        "sendermap": {},
        "recipientmap": {},
        "senderrate": {},
        # Refused on port 25 whatever the client, unless it is in mynetworks.
        "senderaccess": {FORGED_SENDER: "REJECT Senders of this domain must log in to send"},
        "localsender": {user: "OK" for user in USERS},
        "mailfromrate": {},
        "dane": {},
    }


@contextmanager
def running_postfix(
    root: Path, address: str, remote_address: str, **values: Any
) -> Iterator[PostfixStack]:
    """Render and start Postfix for ``address`` with every peer it talks to."""
    layout = Layout(make_settings(root, address, **values))
    tls.ensure(layout)
    # Like the gate and Dovecot here, Rspamd is not run: an override (as a user would
    # write one) takes the milter out; the e2e tests run the whole chain.
    overrides = layout.overrides / "postfix" / "postfix.cf"
    overrides.parent.mkdir(parents=True, exist_ok=True)
    with overrides.open("a") as lines:
        lines.write("smtpd_milters =\nnon_smtpd_milters =\n")
    service = PostfixService(layout)
    service.render()

    loop = BackgroundLoop()
    mailboxes, remote = Sink(), Sink()
    lmtp = LMTPController(mailboxes, unix_socket=layout.lmtp_socket)
    layout.lmtp_socket.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    lmtp.start()
    os.chmod(layout.lmtp_socket, 0o666)
    smtp = Controller(remote, hostname=remote_address, port=2525)
    smtp.start()
    gate = Gate(layout.gate_socketmap, standard_maps((remote_address, 2525)))
    # The MTA-STS resolver, which knows no policy here (tests/e2e/test_outbound_tls.py).
    mta_sts = Gate(layout.mta_sts_socket, {"postfix": {}})
    servers = [
        loop.run(gate.start()),
        loop.run(mta_sts.start()),
        loop.run(DovecotAuth(layout.dovecot_auth_socket, USERS).start()),
    ]
    log_path = root / "postfix.log"
    process = None
    try:
        with open(log_path, "wb") as log:
            process = subprocess.Popen(service.command(), stdout=log, stderr=subprocess.STDOUT)
        wait_for(
            lambda: tcp_open(*service.readiness().tcp[0]) or process.poll() is not None,
            30,
            "postfix to listen",
        )
        assert process.poll() is None, log_path.read_text()
        yield PostfixStack(
            layout, service, gate, mailboxes, remote, (remote_address, 2525), log_path
        )
    finally:
        if process is not None:
            subprocess.run(service.stop_command(), capture_output=True, timeout=30)
            process.wait(30)
        for server in servers:
            server.close()
        lmtp.stop()
        smtp.stop()
        loop.close()
