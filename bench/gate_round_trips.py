"""Benchmark: the gate's round trips per inbound message, counted, by kind.

Starts a whole Roost stack (``roost up``, as tests/e2e/stack.py does, on
ROOST_E2E_NET.42) with one user, sends ``--warmup`` messages (the first delivery creates
the mailbox and compiles the Sieve before script), then ``--messages`` more from an outside
address to port 25, ``--concurrency`` sessions at a time and ``--per-session`` messages
per session, waits until every one is a file in the Maildir and the gate's counters stand
still, and prints the requests the gate answered per message, by kind, from the counters
``GET /health`` reports (roost/gate/counters.py): socketmap lookups per map, Dovecot dict
connections, lookups and commits per dict, HTTP requests per route (auth_http from nginx,
the userdb from Dovecot's Lua).

The figures are counts, not times, so a busy machine does not change them; only the
batching of concurrent deliveries (LMTP connections Postfix reuses, Dovecot's auth cache)
moves them a little with ``--concurrency``. The gate's CPU time per message is printed
beside them for orientation (that one is noisy). docs/performance.md ("Round trips per
inbound message") has the figures before and after the cuts.

    ROOST_E2E_NET=127.0.49 .venv/bin/python bench/gate_round_trips.py \\
        [--messages 200] [--concurrency 10] [--per-session 1]

Needs root (the daemons drop privileges themselves).
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailbench import can_run, cpu_seconds, roost_chain, world

from roost.layout import Layout
from roost.settings import load_settings
from tests.e2e.stack import Stack


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("gate", timeout=10)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(self._path)
        self.sock = sock


def gate_counts(stack: Stack) -> dict[str, int]:
    """The gate's request counters, asked on its nginx socket (root may open it)."""
    layout = Layout(load_settings(env_file=stack.env_file, environ={}))
    connection = _UnixHTTPConnection(layout.gate_http_socket)
    try:
        connection.request("GET", "/health")
        counts: dict[str, int] = json.loads(connection.getresponse().read())["requests"]
    finally:
        connection.close()
    counts.pop("http health", None)  # our own questions
    return counts


def settled_counts(stack: Stack, quiet: float = 1.5, timeout: float = 60.0) -> dict[str, int]:
    """The counters once they have not moved for ``quiet`` seconds (quota_clone's commits
    and the last LMTP connections' close come a little after the last file)."""
    deadline = time.monotonic() + timeout
    last = gate_counts(stack)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = gate_counts(stack)
        if now == last:
            return now
        last = now
    raise TimeoutError("the gate's counters did not settle")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--per-session", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    if not can_run():
        return 2
    with world() as started:
        stack, chain = roost_chain("bench-round-trips", 42, 1, {})
        started.append(stack.stop)
        chain.run(args.warmup, args.concurrency, args.per_session, 120)
        before = settled_counts(stack)
        cpu_before = cpu_seconds(chain.roots())
        chain.run(args.messages, args.concurrency, args.per_session, args.timeout)
        after = settled_counts(stack)
        cpu_after = cpu_seconds(chain.roots())
        n = args.messages
        print(
            f"gate requests per inbound message: {n} messages to one user,"
            f" {args.concurrency} sessions at a time, {args.per_session} message(s) a session"
        )
        total = 0
        for kind in sorted(set(before) | set(after)):
            delta = after.get(kind, 0) - before.get(kind, 0)
            if delta:
                total += delta if not kind.endswith(" connection") else 0
                print(f"  {kind:<28} {delta / n:6.2f}")
        print(f"  {'requests in all':<28} {total / n:6.2f}  (connections not counted)")
        gate_cpu = cpu_after.get("roost gate", 0.0) - cpu_before.get("roost gate", 0.0)
        print(f"  gate CPU per message         {1000 * gate_cpu / n:6.2f} ms (noisy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
