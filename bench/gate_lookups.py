"""Benchmark: the gate's Postfix socketmap lookups against the protocol floor.

Builds a store with 10,000 users and 10,000 aliases (some wildcard) in 100 domains, starts
the real gate (`roost gate`) on it, and next to it a trivial socketmap server that answers
every key with a constant: the floor, the most any server could do with this client. The same
client then drives both with 1, 10 and 100 concurrent connections on the mailbox, alias and
senderlogin maps, and the report prints lookups per second, p50/p99 latency, and the gate's
throughput as a ratio of the floor measured in the same run.

The gate memoises answers per index generation (Postfix repeats keys constantly), so the
rows above measure mostly that; the "alias, distinct keys" rows send keys never seen before
(an address extension makes each unique), so every lookup parses and resolves for real.

Targets (issue 2): at least 50% of the floor with 1 client, 25% with 10, p99 under 2 ms at 10.

    .venv/bin/python bench/gate_lookups.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatebench import bench_address, populate_users, wait_for_socket
from sqlalchemy import insert

from roost.layout import Layout
from roost.settings import load_settings
from roost.store import models
from roost.store.db import Store

DOMAINS = 100
USERS = 10_000
ALIASES = 10_000
BIND = bench_address(2)


def netstring(data: bytes) -> bytes:
    return b"%d:%s," % (len(data), data)


FLOOR_SERVER = r"""
import asyncio, os, sys

class Constant(asyncio.Protocol):
    # Answers every complete netstring with the same OK reply: the protocol floor.
    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        self.buffer += data
        replies = []
        while True:
            colon = self.buffer.find(b":")
            if colon < 0:
                break
            size = int(self.buffer[:colon])
            end = colon + 1 + size
            if len(self.buffer) < end + 1:
                break
            self.buffer = self.buffer[end + 1:]
            replies.append(b"20:OK user@example.test,")
        if replies:
            self.transport.write(b"".join(replies))

async def main(path):
    loop = asyncio.get_running_loop()
    server = await loop.create_unix_server(Constant, path)
    print("ready", flush=True)
    await server.serve_forever()

asyncio.run(main(sys.argv[1]))
"""


def populate(store: Store) -> tuple[list[str], list[str], list[str]]:
    """Fill the store; return sample keys for the mailbox, alias and senderlogin maps."""
    rng = random.Random(42)
    users = populate_users(store, DOMAINS, USERS, "bench-password")
    domains = [f"domain{n}.test" for n in range(DOMAINS)]
    aliases = []
    with store.session() as session:
        alias_rows = []
        for n in range(ALIASES):
            domain = domains[n % DOMAINS]
            wildcard = n % 50 == 0
            local = f"team{n}%" if wildcard else f"alias{n}"
            if not wildcard:
                aliases.append(f"{local}@{domain}")
            alias_rows.append(
                {
                    "email": f"{local}@{domain}",
                    "localpart": local,
                    "domain_name": domain,
                    "wildcard": wildcard,
                    "destination": [users[rng.randrange(USERS)], users[rng.randrange(USERS)]],
                }
            )
        session.execute(insert(models.Alias), alias_rows)
    # Mix in misses and wildcard hits, as real traffic has.
    mailbox_keys = rng.sample(users, 2000) + [f"nobody{n}@domain1.test" for n in range(200)]
    alias_keys = (
        rng.sample(aliases, 1500)
        + rng.sample(users, 500)
        + [f"team{n * 50}x@domain{n % DOMAINS}.test" for n in range(200)]
    )
    sender_keys = rng.sample(users, 1500) + rng.sample(aliases, 500)
    return mailbox_keys, alias_keys, sender_keys


@dataclass
class Result:
    lookups_per_second: float
    p50_ms: float
    p99_ms: float


async def drive(path: str, requests: list[bytes], clients: int, seconds: float) -> Result:
    """``clients`` connections, each sending one request and waiting for its answer."""
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds
    count = 0

    async def one_client(offset: int) -> None:
        nonlocal count
        reader, writer = await asyncio.open_unix_connection(path)
        index = offset
        while time.perf_counter() < stop_at:
            request = requests[index % len(requests)]
            index += 1
            started = time.perf_counter()
            writer.write(request)
            header = await reader.readuntil(b":")
            await reader.readexactly(int(header[:-1]) + 1)
            latencies.append(time.perf_counter() - started)
            count += 1
        writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(one_client(n * 97) for n in range(clients)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return Result(
        count / elapsed,
        latencies[len(latencies) // 2] * 1000,
        latencies[int(len(latencies) * 0.99)] * 1000,
    )


def report(
    label: str, clients: int, gate: str, floor: str, requests: list[bytes], seconds: float
) -> None:
    """Drive the gate and the floor with the same requests; print one row of ratios."""
    gate_result = asyncio.run(drive(gate, requests, clients, seconds))
    floor_result = asyncio.run(drive(floor, requests, clients, seconds))
    ratio = gate_result.lookups_per_second / floor_result.lookups_per_second
    print(
        f"{label:<22}{clients:>8}{gate_result.lookups_per_second:>10.0f}"
        f"{floor_result.lookups_per_second:>10.0f}{ratio:>8.0%}"
        f"{gate_result.p50_ms:>9.3f}{gate_result.p99_ms:>9.3f}"
        f"{floor_result.p99_ms:>11.3f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="roost-bench-"))
    os.chmod(base, 0o755)
    env = {
        "ROOT": str(base / "root"),
        "BIND_ADDRESS4": BIND,
        "DOMAIN": "domain0.test",
        "HOSTNAMES": "mail.domain0.test",
        "SECRET_KEY": secrets.token_hex(16),
        "LOG_LEVEL": "WARNING",
        "RECIPIENT_DELIMITER": "+",
    }
    settings = load_settings(environ=env)
    layout = Layout(settings)
    store = Store.from_settings(settings)
    store.upgrade()
    print(f"populating: {DOMAINS} domains, {USERS} users, {ALIASES} aliases ...", flush=True)
    keys = populate(store)
    store.dispose()

    child_env = {**os.environ, **settings.to_environ()}
    gate = subprocess.Popen([sys.executable, "-m", "roost", "gate"], env=child_env)
    floor_path = base / "floor.sock"
    floor = subprocess.Popen(
        [sys.executable, "-c", FLOOR_SERVER, str(floor_path)], stdout=subprocess.DEVNULL
    )
    try:
        wait_for_socket(layout.gate_socketmap, gate)
        wait_for_socket(floor_path, floor)
        print(
            f"{'map':<22}{'clients':>8}{'gate/s':>10}{'floor/s':>10}{'ratio':>8}"
            f"{'p50 ms':>9}{'p99 ms':>9}{'floor p99':>11}"
        )
        for map_name, map_keys in zip(("mailbox", "alias", "senderlogin"), keys, strict=True):
            requests = [netstring(f"{map_name} {key}".encode()) for key in map_keys]
            for clients in (1, 10, 100):
                report(
                    map_name,
                    clients,
                    str(layout.gate_socketmap),
                    str(floor_path),
                    requests,
                    args.seconds,
                )
        alias_keys = keys[1]
        distinct = [
            netstring(f"alias {key.replace('@', f'+n{n}@', 1)}".encode())
            for n, key in enumerate(alias_keys * 150)
        ]
        for clients in (1, 10):
            report(
                "alias, distinct keys",
                clients,
                str(layout.gate_socketmap),
                str(floor_path),
                distinct,
                args.seconds,
            )
    finally:
        for process in (gate, floor):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
