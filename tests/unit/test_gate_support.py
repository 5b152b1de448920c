"""Shared harness for the gate's tests: a real Redis, a real SQLite store, a running gate.

Imported by the ``test_gate_*`` modules (this module holds no tests of its own). The gate
runs in a thread with its own event loop, exactly as ``roost.gate.server.run`` serves in
production, and the tests talk to it the way the daemons do: netstrings over the Unix
socket (Postfix), HTTP with auth_http headers (nginx, Dovecot), a line on the control socket
(the CLI). Servers listen on 127.0.4.x only.
"""

from __future__ import annotations

import asyncio
import http.client
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis

from roost.core.passwords import hash_password, hash_token
from roost.gate.secret import read_secret
from roost.gate.server import new_event_loop, run
from roost.layout import Layout
from roost.settings import Settings
from roost.store.db import Store
from roost.store.models import Alias, Alternative, Domain, Relay, Token, User

DOMAIN = "example.test"
ALTERNATIVE = "alt.example.test"


def redis_available() -> bool:
    return shutil.which("redis-server") is not None


@contextmanager
def redis_server(socket_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A throw-away redis-server listening only on ``socket_path``."""
    if not redis_available():
        pytest.skip("redis-server is not installed")
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--unixsocket",
            str(socket_path),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(socket_path.parent),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not socket_path.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.01)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def make_settings(root: Path, address: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ROOT": root,
        "DOMAIN": DOMAIN,
        "BIND_ADDRESS4": address,
        "RECIPIENT_DELIMITER": "+",
        "WILDCARD_SENDERS": ("wild@example.test",),
        "SECRET_KEY": "gate-test-secret",
        "AUTH_RATELIMIT_IP": "5/hour",
        "AUTH_RATELIMIT_USER": "3/day",
    }
    values.update(overrides)
    return Settings(**values)


@cache
def password_hash(password: str) -> str:
    """Argon2id hashes cost ~0.25 s here; each distinct password is hashed once per run."""
    return hash_password(password)


def open_store(settings: Settings) -> Store:
    store = Store.from_settings(settings)
    store.upgrade()
    return store


def add_domain(store: Store, name: str, alternatives: tuple[str, ...] = ()) -> None:
    with store.session() as session:
        session.add(Domain(name=name))
        for alt in alternatives:
            session.add(Alternative(name=alt, domain_name=name))


def add_user(store: Store, email: str, password: str, **columns: Any) -> str:
    local, _, domain = email.partition("@")
    with store.session() as session:
        session.add(
            User(
                email=email,
                localpart=local,
                domain_name=domain,
                password=columns.pop("password_hash", None) or password_hash(password),
                **columns,
            )
        )
    return email


def add_alias(store: Store, email: str, destination: list[str], wildcard: bool = False) -> None:
    local, _, domain = email.partition("@")
    with store.session() as session:
        session.add(
            Alias(
                email=email,
                localpart=local,
                domain_name=domain,
                destination=destination,
                wildcard=wildcard,
            )
        )


def add_relay(store: Store, name: str, smtp: str) -> None:
    with store.session() as session:
        session.add(Relay(name=name, smtp=smtp))


def add_token(store: Store, email: str, raw: str, ip: list[str] | None = None) -> None:
    with store.session() as session:
        session.add(Token(user_email=email, password=hash_token(raw), ip=ip or []))


def populate(store: Store) -> None:
    """The directory most gate tests answer from."""
    add_domain(store, DOMAIN, (ALTERNATIVE,))
    add_domain(store, "other.test")
    add_user(store, f"joe@{DOMAIN}", "joe-secret")
    add_user(
        store,
        f"fwd@{DOMAIN}",
        "fwd-secret",
        forward_enabled=True,
        forward_destination=["far@remote.test"],
        forward_keep=False,
    )
    add_user(store, f"off@{DOMAIN}", "off-secret", enabled=False)
    add_user(store, f"noimap@{DOMAIN}", "noimap-secret", enable_imap=False)
    add_user(store, f"nopop@{DOMAIN}", "nopop-secret", enable_pop=False)
    add_user(store, f"quota@{DOMAIN}", "quota-secret", quota_bytes=0)
    add_alias(store, f"team@{DOMAIN}", [f"joe@{DOMAIN}", f"fwd@{DOMAIN}"])
    add_alias(store, "%@other.test", [f"joe@{DOMAIN}"], wildcard=True)
    add_relay(store, "relayed.test", "mx.relayed.test:2525")
    add_relay(store, "broken.test", "mx:[bad")


@dataclass
class GateHarness:
    """A gate serving in a background thread, and clients for its three sockets."""

    settings: Settings
    store: Store
    http_port: int
    loop: asyncio.AbstractEventLoop | None = None
    stop_event: asyncio.Event | None = None
    thread: threading.Thread | None = None
    error: BaseException | None = None
    _ready: threading.Event = field(default_factory=threading.Event)

    @property
    def layout(self) -> Layout:
        return Layout(self.settings)

    @property
    def address(self) -> str:
        return self.layout.internal_address

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        def main() -> None:
            async def serve() -> None:
                self.loop = asyncio.get_running_loop()
                self.stop_event = asyncio.Event()
                ready = asyncio.Event()
                task = asyncio.create_task(
                    run(
                        self.settings,
                        store=self.store,
                        http_port=self.http_port,
                        stop=self.stop_event,
                        ready=ready,
                    )
                )
                waiter = asyncio.create_task(ready.wait())
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if not task.done():
                    self._ready.set()
                await task  # a start-up failure raises here, before the test is told

            try:
                with asyncio.Runner(loop_factory=new_event_loop) as runner:  # the gate's own
                    runner.run(serve())
            except BaseException as exc:  # surfaced to the test thread
                self.error = exc
            finally:
                self._ready.set()

        self.thread = threading.Thread(target=main, name="gate", daemon=True)
        self.thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the gate did not become ready")
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        if self.loop is not None and self.stop_event is not None and self.thread is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
            self.thread.join(30)
        if self.error is not None:
            raise self.error

    def call(self, coro: Any, timeout: float = 10) -> Any:
        """Run a coroutine on the gate's loop (e.g. to inspect its limiter)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # -- Postfix -----------------------------------------------------------------------------

    def socketmap_connection(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(str(self.layout.gate_socketmap))
        return sock

    def lookup(self, name: str, key: str | bytes) -> str:
        """One socketmap request on a fresh connection; the decoded reply payload."""
        raw_key = key.encode() if isinstance(key, str) else key
        with self.socketmap_connection() as sock:
            sock.sendall(netstring(name.encode() + b" " + raw_key))
            return read_netstrings(sock, 1)[0].decode()

    # -- nginx and Dovecot -------------------------------------------------------------------

    @property
    def secret(self) -> str:
        value = read_secret(self.layout.gate_http_secret)
        assert value is not None
        return value

    def get(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.address, self.http_port, timeout=10)
        # Dovecot's proof that it is Dovecot (roost.gate.secret); tests of the check itself
        # pass their own value.
        sent = {"X-Roost-Secret": self.secret, **(headers or {})}
        try:
            conn.request("GET", path, headers=sent)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def auth(
        self,
        user: str,
        password: str,
        protocol: str = "imap",
        port: int = 993,
        ip: str = "192.0.2.10",
        method: str = "plain",
        **extra: str,
    ) -> dict[str, str]:
        """An auth_http request as Dovecot's Lua passdb sends it; the answer's headers."""
        headers = {
            "Auth-Method": method,
            "Auth-User": quote(user, safe="@"),
            "Auth-Pass": quote(password, safe=""),
            "Auth-Protocol": protocol,
            "Auth-Port": str(port),
            "Client-Ip": ip,
            "Client-Port": "40000",
            "Auth-Login-Attempt": "1",
        }
        headers.update(extra)
        status, answer, body = self.get("/auth/email", headers)
        assert status == 200, (status, body)
        return answer


def netstring(payload: bytes) -> bytes:
    return b"%d:%s," % (len(payload), payload)


def read_netstrings(sock: socket.socket, count: int) -> list[bytes]:
    """Read exactly ``count`` netstring replies (the test's view of Postfix's reader)."""
    buffer = b""
    out: list[bytes] = []
    while len(out) < count:
        while True:
            colon = buffer.find(b":")
            if colon > 0:
                length = int(buffer[:colon])
                if len(buffer) >= colon + length + 2:
                    assert buffer[colon + 1 + length : colon + 2 + length] == b","
                    out.append(buffer[colon + 1 : colon + 1 + length])
                    buffer = buffer[colon + 2 + length :]
                    break
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed after {len(out)} replies")
            buffer += chunk
    assert not buffer
    return out


@contextmanager
def running_gate(
    root: Path, address: str, *, redis: bool = True, data: bool = True, **overrides: Any
) -> Iterator[GateHarness]:
    """Store (populated) + Redis + gate for ``root``, all torn down afterwards."""
    settings = make_settings(root, address, **overrides)
    store = open_store(settings)
    if data:
        populate(store)
    harness = GateHarness(settings, store, http_port=10080)
    if redis:
        with redis_server(harness.layout.redis_socket):
            harness.start()
            try:
                yield harness
            finally:
                harness.stop()
                store.dispose()
    else:
        harness.start()
        try:
            yield harness
        finally:
            harness.stop()
            store.dispose()


def flush_limits(harness: GateHarness) -> None:
    """Forget every rate-limit counter (Redis db 2 and the in-memory fallback)."""
    client = redis.Redis(unix_socket_path=str(harness.layout.redis_socket), db=2)
    try:
        client.flushdb()
    finally:
        client.close()


def settings_with(settings: Settings, **overrides: Any) -> Settings:
    return replace(settings, **overrides)
