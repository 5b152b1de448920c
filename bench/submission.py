"""Benchmark: submission on 465 (implicit TLS, AUTH PLAIN), Roost against a bare Postfix chain.

Starts a whole Roost stack (``roost up`` on ROOST_E2E_NET.42, MESSAGE_RATELIMIT raised to
1000000/hour so the benchmark measures work, not the limit: the gate still answers the
``senderrate`` lookup of every message) and beside it the bare chain of bench/mailbench.py
with a 465 listener added: the same Postfix with ``smtpd_tls_wrappermode=yes``, the TLS
lines of Roost's own main.cf (the same certificate, protocols and ciphers), SASL through
Dovecot's auth with a passwd-file, the restrictions of Roost's listener spelled with static
maps, Debian's Rspamd as milter, delivery over Dovecot LMTP into Maildir.
The AUTH_RATELIMIT_* budgets count failed logins only, so they are left as they are.

The client (asyncio in this process; its CPU time is printed, to show it is not the limit)
logs in as bench0 and sends ``--messages`` messages of about 4 kB from bench0's address to
``--users`` local users, ``--concurrency`` sessions at a time, ``--per-session`` messages
per session; every session makes its own full TLS handshake and AUTH. A local recipient
keeps the comparison to daemons both chains run and lets the benchmark check that every
message arrived exactly once; an outside sink would add a server of the benchmark's own.
The delivery leg (Dovecot's LMTP, Roost's Sieve before script) is in the figure; the
per-process CPU table shows how much of the difference it is (bench/inbound_rspamd.py
measures that leg alone). Rounds alternate which chain goes first; the rate is messages
per second from the first connection to the moment the last message is in a Maildir.
Target (issue 13): Roost at least 0.80 of the bare chain.

Seen on a shared 2-core machine (load 6 to 12), 2026-12-05, defaults, 3 runs: the bare
chain 96 to 155 messages/s per round, Roost 60 to 92, Roost at 0.60, 0.76 and 0.62 of the
bare chain (medians; 0.58 to 0.77 per round): below the target. CPU per message about
10 ms against 20 ms; docs/performance.md ("Submission") has where it goes.

    ROOST_E2E_NET=127.0.51 .venv/bin/python bench/submission.py \
        [--messages 1000] [--rounds 3] [--concurrency 10] [--per-session 1] [--users 4]

Needs root (the daemons drop privileges themselves).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailbench import (
    Baseline,
    Chain,
    PeakSampler,
    Target,
    can_run,
    password,
    print_cpu,
    print_memory,
    roost_chain,
    spread,
    stack_memory,
    world,
)

from tests.e2e.stack import DOMAIN, Stack, e2e_address

TARGET = 0.80


def roost_tls_lines(stack: Stack) -> str:
    """The ``smtpd_tls_*`` lines of the stack's main.cf, for the bare chain to use as is."""
    shown = subprocess.run(
        ["postconf", "-c", str(stack.root / "etc/postfix"), "-n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return "".join(line + "\n" for line in shown.splitlines() if line.startswith("smtpd_tls_"))


def submit_to(chain: Chain, stack: Stack, lines: int) -> None:
    """Point the chain's client at port 465 with TLS, logged in as bench0."""
    sender = f"bench0@{DOMAIN}"
    chain.target = Target(
        chain.target.host,
        port=465,
        sender=sender,
        tls=stack.tls_context(),
        login=(sender, password(0)),
        lines=lines,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--per-session", type=int, default=1)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--lines", type=int, default=50, help="body lines (50: about 4 kB)")
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds before idle memory")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    if not can_run():
        return 2
    with world() as started:
        settings = {"MESSAGE_RATELIMIT": "1000000/hour"}
        stack, roost = roost_chain("bench-submission", 42, args.users, settings)
        started.append(stack.stop)
        baseline = Baseline(e2e_address(62), args.users, submission_tls=roost_tls_lines(stack))
        started.append(baseline.stop)
        bare = baseline.start()
        for chain in (bare, roost):
            submit_to(chain, stack, args.lines)
        assert roost.memory_pid is not None
        time.sleep(args.settle)
        idle = stack_memory(roost.memory_pid())
        sampler = PeakSampler(roost.memory_pid())
        sampler.__enter__()
        for chain in (bare, roost):
            # One login alone first: the gate verifies a password it has not seen with
            # Argon2 and defers logins that would queue behind too many such checks; the
            # rounds measure warm logins, whose check is one HMAC.
            chain.run(1, 1, 1, 60)
            chain.run(args.warmup, args.concurrency, args.per_session, 90)
        rates: dict[str, list[float]] = {"baseline": [], "roost": []}
        for round_ in range(args.rounds):
            order = (bare, roost) if round_ % 2 == 0 else (roost, bare)
            for chain in order:
                rate = chain.timed(args.messages, args.concurrency, args.per_session, args.timeout)
                rates["baseline" if chain is bare else "roost"].append(rate)
        sampler.__exit__()
        time.sleep(2)
        for chain in (bare, roost):
            chain.check_exactly_once()
        print(
            f"submission on 465 (implicit TLS, AUTH PLAIN), {args.messages} messages of"
            f" {args.lines} lines x {args.rounds} rounds, {args.concurrency} sessions at a time,"
            f" {args.per_session} message(s) a session, {args.users} local recipients,"
            f" {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
        )
        print(f"  baseline (bare chain)  {spread(rates['baseline'])}")
        print(f"  Roost                  {spread(rates['roost'])}")
        ratios = [r / b for r, b in zip(rates["roost"], rates["baseline"], strict=True)]
        share = statistics.median(rates["roost"]) / statistics.median(rates["baseline"])
        print(
            f"  Roost / baseline       {share:.2f} of the medians"
            f" (per round: {', '.join(f'{r:.2f}' for r in ratios)}); target at least {TARGET}"
        )
        print("  every message arrived exactly once in both chains")
        print("\nwhere the CPU time goes (ms of CPU per message, all timed rounds):")
        print_cpu(bare, roost)
        client = [1000 * chain.client_cpu / chain.cpu_messages for chain in (bare, roost)]
        print(f"  {'client (this process)':<28} {client[0]:9.2f} {client[1]:9.2f}")
        print("\nRoost stack memory (started, settled; peak while the rounds above ran)")
        print_memory("idle", idle, detail=False)
        print_memory("peak under load", sampler.peak, detail=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
