"""Benchmark: warm logins on the gate's HTTP endpoint against a trivial constant server.

Dovecot's Lua passdb asks the gate ``GET /auth/email`` for every IMAP, POP3, ManageSieve
and submission login, over persistent HTTP/1.1 connections to ``INTERNAL:10080`` with the
stack's secret header. A "warm" login is one whose password the gate has verified before:
its credential cache answers with one HMAC instead of Argon2, so what remains is the
gate's own work per login (HTTP framing, the rate-limit checks in Redis, the decision, the
log line). This benchmark builds a store, starts the real gate (``roost gate``) and its
Redis, logs each of ``--warm-users`` users in once, then drives the gate with wrk (Debian's
package), rotating over those users, and the same wrk against a trivial server that answers
every request with a constant ``Auth-Status: OK``: the most any server in Python's asyncio
could do for this client. Each round measures both; the report prints logins per second,
the ratio, and the gate's CPU milliseconds per login (from /proc, independent of the load
generator). wrk checks every answer: a login that was not ``Auth-Status: OK`` fails the run.

``--users``/``--domains`` size the store; run it with the defaults (100 users in 10
domains) and with ``--users 100000 --domains 10000`` to see that a large directory does
not make logins slower (issue 13: within 2x).

Target (issue 13): the gate at 0.6 of the constant server or better.

    .venv/bin/python bench/auth_http.py [--seconds 5] [--rounds 3] [--users 100000 --domains 10000]

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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatebench import (
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--domains", type=int, default=10)
    parser.add_argument("--warm-users", type=int, default=100, help="users the load rotates over")
    parser.add_argument("--profile", type=Path, help="write the gate's cProfile data here")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("auth_http: needs wrk (apt-get install wrk)")

    base = Path(tempfile.mkdtemp(prefix="roost-bench-"))
    os.chmod(base, 0o755)
    gate = BenchGate(base, BIND, profile=args.profile)
    print(f"populating: {args.domains} domains, {args.users} users ...", flush=True)
    started = time.monotonic()
    store = gate.store()
    users = populate_users(store, args.domains, args.users, "bench-password")
    store.dispose()
    print(f"  {time.monotonic() - started:.1f} s", flush=True)
    warm = users[: args.warm_users]
    trivial = subprocess.Popen([sys.executable, "-c", TRIVIAL_SERVER, BIND, str(TRIVIAL_PORT)])
    try:
        started = time.monotonic()
        gate.start()
        print(f"gate ready in {time.monotonic() - started:.1f} s", flush=True)
        wait_for_tcp(BIND, TRIVIAL_PORT, trivial)
        secret = gate.layout.gate_http_secret.read_text().strip()
        print(f"warming {len(warm)} users (one Argon2 check each) ...", flush=True)
        gate.warm(warm, "bench-password", secret)
        script = base / "logins.lua"
        script.write_text(
            WRK_SCRIPT
            % {
                "users": ", ".join(f'"{user}"' for user in warm),
                "secret": secret,
                "secret_header": SECRET_HEADER,
            }
        )
        gate_url = f"http://{gate.layout.internal_address}:{GATE_HTTP_PORT}/auth/email"
        trivial_url = f"http://{BIND}:{TRIVIAL_PORT}/auth/email"
        print(
            f"{'round':<7}{'gate/s':>9}{'trivial/s':>11}{'ratio':>8}"
            f"{'gate CPU ms':>13}{'Redis CPU ms':>14}{'logins/read':>13}"
        )
        ratios, gate_rates, cpu_per_login = [], [], []
        for number in range(1, args.rounds + 1):
            cpu_before = cpu_seconds(gate.pid)
            redis_before = cpu_seconds(gate.redis_pid)
            scripts_before, reads_before = gate.redis_stats()
            gate_rate, gate_total = run_wrk(gate_url, script, args.seconds)
            cpu_ms = (cpu_seconds(gate.pid) - cpu_before) * 1000 / gate_total
            redis_ms = (cpu_seconds(gate.redis_pid) - redis_before) * 1000 / gate_total
            scripts, reads = gate.redis_stats()
            per_read = (scripts - scripts_before) / max(1, reads - reads_before - 1)
            trivial_rate, _ = run_wrk(trivial_url, script, args.seconds)
            ratios.append(gate_rate / trivial_rate)
            gate_rates.append(gate_rate)
            cpu_per_login.append(cpu_ms)
            print(
                f"{number:<7}{gate_rate:>9.0f}{trivial_rate:>11.0f}"
                f"{gate_rate / trivial_rate:>8.2f}{cpu_ms:>13.3f}{redis_ms:>14.3f}"
                f"{per_read:>13.1f}",
                flush=True,
            )
        print(
            f"median: {statistics.median(gate_rates):.0f} logins/s, "
            f"{statistics.median(ratios):.2f} of the constant server (target 0.6), "
            f"{statistics.median(cpu_per_login):.3f} ms of gate CPU per login; "
            f"{args.users} users in {args.domains} domains"
        )
    finally:
        trivial.terminate()
        trivial.wait(10)
        gate.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
