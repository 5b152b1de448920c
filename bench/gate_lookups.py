"""Benchmark: the gate's Postfix socketmap lookups against the protocol floor, with a small
and a large directory.

Builds two stores: a small one (100 users and 100 aliases in 10 domains) and a large one
(100,000 users and 100,000 aliases, some wildcard, in 10,000 domains), starts the real gate
(``roost gate``, with its Redis) on each, and next to them a trivial socketmap server that
answers every key with a constant: the floor, the most any server could do with this
client. The same client then drives all three in turn with 1, 10 and 100 concurrent
connections on the mailbox, alias and senderlogin maps, and each row prints lookups per
second, the gate's p99 latency, its throughput as a ratio of the floor measured in the same
row, and the large directory's throughput as a ratio of the small one's.

The gate memoises answers per index generation (Postfix repeats keys constantly), so the
first rows measure mostly that; the "alias, distinct keys" rows send keys never seen before
(an address extension makes each unique), so every lookup parses and resolves for real.

Targets: issue 2, at least 50% of the floor with 1 client, 25% with 10, p99 under 2 ms at
10; issue 13, the large directory within 2x of the small one (large/small at least 0.5).

    .venv/bin/python bench/gate_lookups.py [--seconds 3]

Needs root (the gate's sockets are root's).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatebench import SIZES, BenchGate, bench_address, populate_users, wait_for_socket
from sqlalchemy import insert

from roost.store import models
from roost.store.db import Store

#: Keys per map, the same number for both sizes (drawn with repetition from the small one).
KEYS = 2000


def netstring(data: bytes) -> bytes:
    return b"%d:%s," % (len(data), data)


FLOOR_SERVER = r"""
import asyncio, os, sys
import uvloop  # the gate's own event loop (roost.gate.server.new_event_loop)

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

with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
    runner.run(main(sys.argv[1]))
"""


def populate(store: Store, domains: int, users: int) -> tuple[list[str], list[str], list[str]]:
    """Fill the store; return sample keys for the mailbox, alias and senderlogin maps."""
    rng = random.Random(42)
    addresses = populate_users(store, domains, users, "bench-password")
    names = [f"domain{n}.test" for n in range(domains)]
    aliases = []
    alias_rows = []
    for n in range(users):
        domain = names[n % domains]
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
                "destination": [addresses[rng.randrange(users)], addresses[rng.randrange(users)]],
            }
        )
    with store.session() as session:
        for start in range(0, len(alias_rows), 10_000):
            session.execute(insert(models.Alias), alias_rows[start : start + 10_000])
    # Mix in misses and wildcard hits, as real traffic has.
    mailbox_keys = rng.choices(addresses, k=KEYS) + [f"nobody{n}@domain1.test" for n in range(200)]
    wildcards = [n for n in range(0, users, 50)]
    alias_keys = (
        rng.choices(aliases, k=KEYS * 3 // 4)
        + rng.choices(addresses, k=KEYS // 4)
        + [f"team{n}x@{names[n % domains]}" for n in rng.choices(wildcards, k=200)]
    )
    sender_keys = rng.choices(addresses, k=KEYS * 3 // 4) + rng.choices(aliases, k=KEYS // 4)
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


def row(
    label: str,
    clients: int,
    gates: list[str],
    floor: str,
    requests: list[list[bytes]],
    seconds: float,
) -> float:
    """Drive each gate and the floor with the same kind of requests; print one row and
    return the large directory's throughput as a ratio of the small one's."""
    results = [
        asyncio.run(drive(path, keys, clients, seconds))
        for path, keys in zip(gates, requests, strict=True)
    ]
    floor_result = asyncio.run(drive(floor, requests[0], clients, seconds))
    small, large = results
    scale = large.lookups_per_second / small.lookups_per_second
    floor_rate = floor_result.lookups_per_second
    print(
        f"{label:<22}{clients:>8}{floor_rate:>9.0f}"
        + "".join(
            f"{r.lookups_per_second:>9.0f}{r.lookups_per_second / floor_rate:>7.0%}{r.p99_ms:>8.3f}"
            for r in results
        )
        + f"{scale:>9.2f}",
        flush=True,
    )
    return scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="roost-bench-"))
    os.chmod(base, 0o755)
    gates: list[BenchGate] = []
    keys: list[tuple[list[str], list[str], list[str]]] = []
    floor_path = base / "floor.sock"
    floor = subprocess.Popen(
        [sys.executable, "-c", FLOOR_SERVER, str(floor_path)], stdout=subprocess.DEVNULL
    )
    try:
        for number, (label, domains, users) in enumerate(SIZES):  # as many aliases as users
            print(f"{label}: {domains} domains, {users} users, {users} aliases ...", flush=True)
            started = time.monotonic()
            gate = BenchGate(base / label, bench_address(2 + number))
            store = gate.store()
            keys.append(populate(store, domains, users))
            store.dispose()
            print(f"  populated in {time.monotonic() - started:.1f} s", flush=True)
            started = time.monotonic()
            gates.append(gate)
            gate.start()
            print(f"  gate ready in {time.monotonic() - started:.1f} s", flush=True)
        wait_for_socket(floor_path, floor)
        paths = [str(gate.layout.gate_socketmap) for gate in gates]
        print(
            f"{'':<30}{'floor':>9}{'small':>24}{'large':>24}"
            f"\n{'map':<22}{'clients':>8}{'/s':>9}"
            + f"{'/s':>9}{'ratio':>7}{'p99 ms':>8}" * 2
            + f"{'large/small':>12}"
        )
        scales = []
        for number, map_name in enumerate(("mailbox", "alias", "senderlogin")):
            requests = [
                [netstring(f"{map_name} {key}".encode()) for key in size_keys[number]]
                for size_keys in keys
            ]
            for clients in (1, 10, 100):
                scales.append(
                    row(map_name, clients, paths, str(floor_path), requests, args.seconds)
                )
        distinct = [
            [
                netstring(f"alias {key.replace('@', f'+n{n}@', 1)}".encode())
                for n, key in enumerate(size_keys[1] * 150)
            ]
            for size_keys in keys
        ]
        for clients in (1, 10):
            scales.append(
                row("alias, distinct keys", clients, paths, str(floor_path), distinct, args.seconds)
            )
        print(
            f"large/small: lowest {min(scales):.2f}, median {sorted(scales)[len(scales) // 2]:.2f}"
            " (target: at least 0.5, within 2x)"
        )
    finally:
        floor.terminate()
        floor.wait(10)
        for gate in gates:
            gate.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
