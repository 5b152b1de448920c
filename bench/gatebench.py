"""What the gate benchmarks share: a store of many users, and the real gate with its Redis.

The gate and Redis are started from Roost's own service classes, with the commands,
configuration and environment ``roost up`` would give them, so a benchmark measures the
gate as it runs in a stack, not a copy set up by hand.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis
from sqlalchemy import insert

from roost.core.passwords import hash_password
from roost.gate.secret import SECRET_HEADER
from roost.layout import GATE_HTTP_PORT, Layout
from roost.services.base import Service, roost_environment
from roost.services.gate import GateService
from roost.services.redis import RedisService
from roost.settings import load_settings
from roost.store import models
from roost.store.db import Store

__all__ = [
    "SIZES",
    "BenchGate",
    "bench_address",
    "cpu_seconds",
    "populate_users",
    "wait_for_socket",
    "wait_for_tcp",
]


#: The directory sizes the gate benchmarks compare (issue 13: the large one within 2x of
#: the small one): (label, domains, users).
SIZES = (("small", 10, 100), ("large", 10_000, 100_000))


def bench_address(host: int) -> str:
    """An address of ROOST_E2E_NET (default 127.0.201) for one benchmark's listeners, so
    benchmarks and test stacks run beside each other on one machine do not collide."""
    return f"{os.environ.get('ROOST_E2E_NET', '127.0.201')}.{host}"


def populate_users(store: Store, domains: int, users: int, password: str) -> list[str]:
    """``users`` users spread over ``domains`` domains, all with ``password``; their
    addresses, in an order that visits every domain before any comes again."""
    hashed = hash_password(password)  # one Argon2 hash serves every row
    names = [f"domain{n}.test" for n in range(domains)]
    addresses = []
    with store.session() as session:
        session.execute(insert(models.Domain), [{"name": name} for name in names])
        rows = []
        for n in range(users):
            domain = names[n % domains]
            local = f"user{n}"
            addresses.append(f"{local}@{domain}")
            rows.append(
                {
                    "email": f"{local}@{domain}",
                    "localpart": local,
                    "domain_name": domain,
                    "password": hashed,
                }
            )
            if len(rows) == 10_000:
                session.execute(insert(models.User), rows)
                rows = []
        if rows:
            session.execute(insert(models.User), rows)
    return addresses


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (proc(5), fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_socket(path: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with socket.socket(socket.AF_UNIX) as probe:
                probe.connect(str(path))
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} never answered") from None
            time.sleep(0.1)


def wait_for_tcp(
    host: str, port: int, process: subprocess.Popen[bytes], timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{host}:{port} never answered") from None
            time.sleep(0.1)


class BenchGate:
    """A ROOT under ``base`` with a migrated store; :meth:`start` runs Redis and the gate."""

    def __init__(self, base: Path, bind: str, profile: Path | None = None, **settings: str) -> None:
        env = {
            "ROOT": str(base / "root"),
            "BIND_ADDRESS4": bind,
            "DOMAIN": "domain0.test",
            "HOSTNAMES": "mail.domain0.test",
            "SECRET_KEY": secrets.token_hex(16),
            "LOG_LEVEL": "WARNING",
            "RECIPIENT_DELIMITER": "+",
            **settings,
        }
        self.settings = load_settings(environ=env)
        self.layout = Layout(self.settings)
        self._processes: list[subprocess.Popen[bytes]] = []
        #: where cProfile writes the gate's profile when it stops (None: no profiler)
        self.profile = profile

    def store(self) -> Store:
        store = Store.from_settings(self.settings)
        store.upgrade()
        return store

    @property
    def pid(self) -> int:
        """The gate's process id."""
        return self._processes[-1].pid

    @property
    def redis_pid(self) -> int:
        return self._processes[0].pid

    def redis_stats(self) -> tuple[int, int]:
        """Scripts Redis ran by SHA (EVALSHA, one per login) and socket reads it made so
        far (INFO): their ratio says how many logins share a round trip."""
        client = redis.Redis(unix_socket_path=str(self.layout.redis_socket))
        try:
            info = client.info("all")
        finally:
            client.close()
        scripts = info.get("cmdstat_evalsha", {}).get("calls", 0)
        return int(scripts), int(info["total_reads_processed"])

    def _run(
        self, service: Service, env: dict[str, str], profile: Path | None = None
    ) -> subprocess.Popen[bytes]:
        service.render()
        command = service.command()
        if profile is not None:  # python -m roost gate -> python -m cProfile -o FILE -m roost gate
            command[1:1] = ["-m", "cProfile", "-o", str(profile)]
        process = subprocess.Popen(command, env={**os.environ, **env})
        self._processes.append(process)
        return process

    def start(self) -> None:
        redis = self._run(RedisService(self.layout), {})
        wait_for_socket(self.layout.redis_socket, redis)
        gate = self._run(GateService(self.layout), roost_environment(self.settings), self.profile)
        wait_for_socket(self.layout.gate_socketmap, gate, timeout=600)
        wait_for_tcp(self.layout.internal_address, GATE_HTTP_PORT, gate)

    def warm(self, users: list[str], password: str, secret: str) -> None:
        """Log each user in once, so the load that follows finds their passwords cached."""
        connection = http.client.HTTPConnection(self.layout.internal_address, GATE_HTTP_PORT)
        for user in users:
            connection.request(
                "GET",
                "/auth/email",
                headers={
                    "Auth-Method": "plain",
                    "Auth-User": user,
                    "Auth-Pass": password,
                    "Auth-Protocol": "imap",
                    "Auth-Port": "993",
                    "Auth-SSL": "on",
                    "Client-Ip": "192.0.2.10",
                    "Client-Port": "50000",
                    SECRET_HEADER: secret,
                },
            )
            response = connection.getresponse()
            response.read()
            if response.getheader("Auth-Status") != "OK":
                raise RuntimeError(f"{user} could not log in: {response.getheader('Auth-Status')}")
        connection.close()

    def rate_limits(self) -> str:
        """Where the gate counts rate limits now (its /health): "redis", or "memory" when
        it fell back, which would make a login benchmark measure the wrong thing."""
        secret = self.layout.gate_http_secret.read_text().strip()
        connection = http.client.HTTPConnection(self.layout.internal_address, GATE_HTTP_PORT)
        try:
            connection.request("GET", "/health", headers={SECRET_HEADER: secret})
            return str(json.loads(connection.getresponse().read())["rate_limits"])
        finally:
            connection.close()

    def stop(self) -> None:
        for process in reversed(self._processes):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
