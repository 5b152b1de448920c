"""Benchmark: warm logins on the gate's HTTP endpoint against a trivial constant server,
with a small and a large directory.

Dovecot's Lua passdb asks the gate ``GET /auth/email`` for every IMAP, POP3, ManageSieve
and submission login, over persistent HTTP/1.1 connections to ``INTERNAL:10080`` with the
stack's secret header. A "warm" login is one whose password the gate has verified before:
its credential cache answers with one HMAC instead of Argon2, so what remains is the
gate's own work per login (HTTP framing, the rate-limit check in Redis, the decision, the
log line). This benchmark builds two stores, a small one (100 users in 10 domains) and a
large one (100,000 users in 10,000 domains), starts the real gate (``roost gate``) and its
Redis on each, logs ``--warm-users`` users of each in once, then drives both gates with wrk
(Debian's package), rotating over those users, and the same wrk against a trivial server
that answers every request with a constant ``Auth-Status: OK`` on the gate's event loop:
the most any server in Python could do for this client. A second constant server is the
gate's own HTTP layer (``roost.gate.http.HttpServer``, with its secret check, connection
caps and response encoding) around a handler that answers the same constant: the ratio to
it is what the login itself costs, the HTTP framing left out. Each round measures all
four; the report prints logins per second, the ratios to both constant servers, the gate's and its
Redis's CPU milliseconds per login (from /proc, independent of the load generator) and
the large directory's rate as a ratio of the small one's. wrk checks every answer: a login
that was not ``Auth-Status: OK`` fails the run.

Targets (issue 13): the gate at 0.6 of the constant server; the large directory within 2x
of the small one.

    .venv/bin/python bench/auth_http.py [--seconds 5] [--rounds 3]

Needs root (the gate's sockets are root's) and wrk.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatebench import (
    SIZES,
    BenchGate,
    bench_address,
    cpu_seconds,
    populate_users,
    wait_for_tcp,
)

from roost.gate.secret import SECRET_HEADER
from roost.layout import GATE_HTTP_PORT

BIND = bench_address(1)
TRIVIAL_PORT = 18080
FRAMED_PORT = 18081
CONNECTIONS = 10

TRIVIAL_SERVER = r"""
import asyncio, sys
import uvloop  # the gate's own event loop (roost.gate.server.new_event_loop)

ANSWER = (b"HTTP/1.1 200 OK\r\nAuth-Status: OK\r\nAuth-User: user@example.test\r\n"
          b"Content-Length: 0\r\n\r\n")

async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(ANSWER)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()

async def main(host, port):
    server = await asyncio.start_server(serve, host, int(port), backlog=512)
    await server.serve_forever()

with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
    runner.run(main(sys.argv[1], sys.argv[2]))
"""

FRAMED_SERVER = r"""
import asyncio, sys
from roost.gate.http import HttpServer, Response
from roost.gate.server import new_event_loop

ANSWER = Response(200, [("Auth-Status", "OK"), ("Auth-User", "user@example.test")])

async def constant(request):
    return ANSWER

async def main(host, port, secret):
    await HttpServer(constant, secret=secret).start(host, int(port))
    await asyncio.Event().wait()

with asyncio.Runner(loop_factory=new_event_loop) as runner:
    runner.run(main(*sys.argv[1:4]))
"""

#: wrk's script: rotate over the warm users, count answers that are not Auth-Status OK.
WRK_SCRIPT = r"""
local users = {%(users)s}
local secret = "%(secret)s"
local counter = 0
local threads = {}
bad = 0

function setup(thread)
  table.insert(threads, thread)
end

function request()
  counter = counter + 1
  local user = users[(counter %% #users) + 1]
  return wrk.format("GET", "/auth/email", {
    ["Auth-Method"] = "plain",
    ["Auth-User"] = user,
    ["Auth-Pass"] = "bench-password",
    ["Auth-Protocol"] = "imap",
    ["Auth-Port"] = "993",
    ["Auth-SSL"] = "on",
    ["Client-Ip"] = "192.0.2.10",
    ["Client-Port"] = "50000",
    ["%(secret_header)s"] = secret,
  })
end

function response(status, headers, body)
  if status ~= 200 or headers["Auth-Status"] ~= "OK" then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("bad")
  end
  io.write(string.format("not OK: %%d\n", total))
end
"""


def run_wrk(url: str, script: Path, seconds: float) -> tuple[float, int]:
    """Requests per second and the total count of one wrk run; fails on a bad answer."""
    done = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{round(seconds)}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    )
    bad = re.search(r"not OK: (\d+)", done.stdout)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    total = re.search(r"(\d+) requests in", done.stdout)
    if not (bad and rate and total) or int(bad.group(1)):
        raise RuntimeError(f"wrk saw failed logins or printed no rate:\n{done.stdout}")
    return float(rate.group(1)), int(total.group(1))


@dataclass
class Size:
    """One directory size's gate and the wrk script that logs its warm users in."""

    label: str
    gate: BenchGate
    script: Path
    url: str


def prepare(base: Path, label: str, domains: int, users: int, host: int, args: Any) -> Size:
    """Populate a store, start its gate and warm ``--warm-users`` of its users."""
    print(f"{label}: {domains} domains, {users} users ...", flush=True)
    started = time.monotonic()
    gate = BenchGate(base / label, bench_address(host), profile=args.profile if host == 1 else None)
    store = gate.store()
    addresses = populate_users(store, domains, users, "bench-password")
    store.dispose()
    print(f"  populated in {time.monotonic() - started:.1f} s", flush=True)
    started = time.monotonic()
    gate.start()
    print(f"  gate ready in {time.monotonic() - started:.1f} s", flush=True)
    # Every domain before any comes again (populate_users): the large gate's warm users
    # are spread over as many domains as there are of them.
    warm = addresses[: args.warm_users]
    secret = gate.layout.gate_http_secret.read_text().strip()
    gate.warm(warm, "bench-password", secret)
    script = base / f"{label}.lua"
    script.write_text(
        WRK_SCRIPT
        % {
            "users": ", ".join(f'"{user}"' for user in warm),
            "secret": secret,
            "secret_header": SECRET_HEADER,
        }
    )
    url = f"http://{gate.layout.internal_address}:{GATE_HTTP_PORT}/auth/email"
    return Size(label, gate, script, url)


def measure(size: Size, seconds: float) -> tuple[float, float, float, float]:
    """Logins per second, the gate's and its Redis's CPU milliseconds per login, and the
    logins per Redis read (how many share a round trip)."""
    gate = size.gate
    cpu_before = cpu_seconds(gate.pid)
    redis_before = cpu_seconds(gate.redis_pid)
    scripts_before, reads_before = gate.redis_stats()
    rate, total = run_wrk(size.url, size.script, seconds)
    cpu_ms = (cpu_seconds(gate.pid) - cpu_before) * 1000 / total
    redis_ms = (cpu_seconds(gate.redis_pid) - redis_before) * 1000 / total
    scripts, reads = gate.redis_stats()
    # less the INFO command of the first redis_stats() call
    per_read = (scripts - scripts_before) / max(1, reads - reads_before - 1)
    return rate, cpu_ms, redis_ms, per_read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warm-users", type=int, default=100, help="users the load rotates over")
    parser.add_argument("--profile", type=Path, help="write the small gate's cProfile data here")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("auth_http: needs wrk (apt-get install wrk)")

    base = Path(tempfile.mkdtemp(prefix="roost-bench-"))
    os.chmod(base, 0o755)
    trivial = subprocess.Popen([sys.executable, "-c", TRIVIAL_SERVER, BIND, str(TRIVIAL_PORT)])
    framed: subprocess.Popen[bytes] | None = None
    sizes: list[Size] = []
    try:
        for host, (label, domains, users) in zip((1, 4), SIZES, strict=True):
            sizes.append(prepare(base, label, domains, users, host, args))
        secret = sizes[0].gate.layout.gate_http_secret.read_text().strip()
        framed = subprocess.Popen(
            [sys.executable, "-c", FRAMED_SERVER, BIND, str(FRAMED_PORT), secret]
        )
        wait_for_tcp(BIND, TRIVIAL_PORT, trivial)
        wait_for_tcp(BIND, FRAMED_PORT, framed)
        trivial_url = f"http://{BIND}:{TRIVIAL_PORT}/auth/email"
        framed_url = f"http://{BIND}:{FRAMED_PORT}/auth/email"
        print(
            f"{'':<25}{'small':>30}{'large':>30}\n{'round':<6}{'trivial/s':>10}{'http/s':>9}"
            + f"{'logins/s':>9}{'ratio':>6}{'gate ms':>8}{'Redis ms':>9}" * 2
            + f"{'large/small':>12}"
        )
        ratios: dict[str, list[float]] = {size.label: [] for size in sizes}
        framed_ratios: dict[str, list[float]] = {size.label: [] for size in sizes}
        cpu: dict[str, list[float]] = {size.label: [] for size in sizes}
        shared: dict[str, list[float]] = {size.label: [] for size in sizes}
        scales = []
        for number in range(1, args.rounds + 1):
            results = [measure(size, args.seconds) for size in sizes]
            trivial_rate, _ = run_wrk(trivial_url, sizes[0].script, args.seconds)
            framed_rate, _ = run_wrk(framed_url, sizes[0].script, args.seconds)
            line = f"{number:<6}{trivial_rate:>10.0f}{framed_rate:>9.0f}"
            for size, (rate, cpu_ms, redis_ms, per_read) in zip(sizes, results, strict=True):
                ratios[size.label].append(rate / trivial_rate)
                framed_ratios[size.label].append(rate / framed_rate)
                cpu[size.label].append(cpu_ms)
                shared[size.label].append(per_read)
                line += f"{rate:>9.0f}{rate / trivial_rate:>6.2f}{cpu_ms:>8.3f}{redis_ms:>9.3f}"
            scales.append(results[1][0] / results[0][0])
            print(f"{line}{scales[-1]:>12.2f}", flush=True)
        for size in sizes:
            if size.gate.rate_limits() != "redis":
                raise RuntimeError(f"the {size.label} gate lost Redis: its figures are void")
        for size in sizes:
            print(
                f"median, {size.label}: {statistics.median(ratios[size.label]):.2f} of the "
                f"constant server (target 0.6), "
                f"{statistics.median(framed_ratios[size.label]):.2f} of the gate's HTTP layer "
                f"answering a constant, {statistics.median(cpu[size.label]):.3f} ms "
                f"of gate CPU per login, {statistics.median(shared[size.label]):.1f} logins "
                "per Redis read"
            )
        cpu_scale = statistics.median(cpu["large"]) / statistics.median(cpu["small"])
        print(
            f"median, large/small: {statistics.median(scales):.2f} of the logins/s "
            f"(target: at least 0.5, within 2x), {cpu_scale:.2f} of the CPU per login"
        )
    finally:
        for server in (trivial, framed):
            if server is not None:
                server.terminate()
                server.wait(10)
        for size in sizes:
            size.gate.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
