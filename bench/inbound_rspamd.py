"""Benchmark: inbound delivery through Rspamd, Roost against a bare Postfix chain.

Starts a whole Roost stack (``roost up``, as tests/e2e/stack.py does, on ROOST_E2E_NET.40)
with a few users, and beside it, in a temporary directory, the bare chain the same Debian
packages make with hand-written minimal configs: a Postfix instance (``postfix -c DIR``)
with static virtual mailbox maps, Debian's Rspamd (its stock modules and rules, only the
proxy worker in milter mode with self_scan, no Redis) as its milter, and Dovecot with a
static userdb delivering over an LMTP socket into Maildir. Both Rspamds share one
Hyperscan cache; both are asked through the test DNS of tests/e2e/local_dns.py (in a
private mount namespace, as the e2e tests are), so nothing reaches the internet.

An asyncio SMTP client sends ``--messages`` messages of about 2 kB from an outside address
(127.80.0.1, not in mynetworks) to port 25 of each, ``--concurrency`` sessions at a time,
``--per-session`` messages per session, round-robin to ``--users`` users. The rate is the
messages per second from the first connection to the moment the last message is a file in
a Maildir. Each round runs both chains (alternating which goes first); the report prints
every round, the median and spread, and Roost's rate as a percentage of the baseline's.
Target (issue 13): at least 85 %. It also prints the CPU time each process spent per
message, and the ratio of the two chains' totals: on a shared machine single rounds swing
with the neighbours' load, the CPU per message much less.

Roost has no setting that takes Rspamd out of the path (nor has Mailu: its filter is part
of every setup), so the baseline always has Rspamd too; a chain without it would be
compared with a configuration Roost cannot run.

Memory: the resident memory of every process of the Roost stack (the processes under
``roost up``: runner, gate, web, both Redis, Rspamd, Postfix, Dovecot, nginx, and clamd
with ANTIVIRUS=clamav), idle and at its peak during a load, as the sum of RSS (shared pages
counted once per process) and the sum of PSS (shared pages divided among their users, the
honest total). ``--memory`` starts a second stack with ``ANTIVIRUS=clamav`` on ClamAV's
one-signature test database (tests/unit/eicar.py) and measures it the same way, and prints
each stack's processes grouped by name.

Seen on a shared 2-core machine while other work ran beside it (load 11 to 16, so noisy),
2026-12-05, ``--messages 1000 --rounds 3``: Roost at 73 %, 76 % and (at a load of 17)
35 % of the bare chain's median rate (45 % and 79 % in two runs before Dovecot's quota
became Maildir++, with rounds from 44 % to 87 %: the rates alone cannot tell the two
apart); CPU per message 9.9 to 10.7 ms against 5.2 to 5.5 (before: 11.5 to 12.4 against
5.3 to 5.7), so the bare chain's CPU is 0.51 to 0.52 of Roost's (0.46 before). Dovecot's
LMTP delivery went from 4.2 to 4.5 ms to 2.9 to 3.3 (the bare chain's 1.5 to 1.75).
Two later runs: 70 % and 63 %, CPU 0.54 and 0.56 of Roost's; Rspamd's proxy workers
2.25 to 2.33 ms against 1.58 to 1.65 (bench/rspamd_settings.py has them by setting).
Memory (sum of PSS): idle 348 to 388 MiB, peak under load 502 to 531 MiB.
docs/filtering.md ("Speed and memory") has the breakdown.

    ROOST_E2E_NET=127.0.49 .venv/bin/python bench/inbound_rspamd.py \
        [--messages 1000] [--rounds 3] [--concurrency 10] [--per-session 1] [--memory]

Needs root (the daemons drop privileges themselves).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailbench import (
    Baseline,
    PeakSampler,
    can_run,
    measure_memory,
    print_cpu,
    print_memory,
    roost_chain,
    spread,
    stack_memory,
    world,
)

from tests.e2e.stack import e2e_address, make_base
from tests.unit.eicar import signature_database


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--per-session", type=int, default=1)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds before idle memory")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument(
        "--memory", action="store_true", help="also a stack with ANTIVIRUS=clamav; per process"
    )
    args = parser.parse_args()
    if not can_run():
        return 2
    with world() as started:
        baseline = Baseline(e2e_address(60), args.users)
        started.append(baseline.stop)
        bare = baseline.start()
        stack, roost = roost_chain("bench-inbound", 40, args.users, {})
        started.append(stack.stop)
        assert roost.memory_pid is not None
        time.sleep(args.settle)
        idle = stack_memory(roost.memory_pid())
        sampler = PeakSampler(roost.memory_pid())
        sampler.__enter__()
        for chain in (bare, roost):
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
            f"inbound delivery, {args.messages} messages x {args.rounds} rounds,"
            f" {args.concurrency} sessions at a time, {args.per_session} message(s) a session,"
            f" {args.users} users, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
        )
        print(f"  baseline (bare chain)  {spread(rates['baseline'])}")
        print(f"  Roost                  {spread(rates['roost'])}")
        ratios = [r / b for r, b in zip(rates["roost"], rates["baseline"], strict=True)]
        share = statistics.median(rates["roost"]) / statistics.median(rates["baseline"])
        print(
            f"  Roost / baseline       {100 * share:.0f} %"
            f" of the medians (per round: {', '.join(f'{100 * r:.0f} %' for r in ratios)});"
            " target at least 85 % (issue 13)"
        )
        print("\nwhere the CPU time goes (ms of CPU per message, all timed rounds):")
        print_cpu(bare, roost)
        print("\nRoost stack memory (started, settled; peak while the rounds above ran)")
        print_memory("idle", idle, args.memory)
        print_memory("peak under load", sampler.peak, args.memory)
        baseline.stop()
        started.remove(baseline.stop)
        if args.memory:
            stack.stop()
            started.remove(stack.stop)
            database = signature_database(make_base() / "bench-clamav-db")
            settings = {
                "ANTIVIRUS": "clamav",
                "ANTIVIRUS_UPDATES": "false",
                "ANTIVIRUS_DATABASE": str(database),
            }
            clam_stack, clam = roost_chain("bench-inbound-clamav", 41, args.users, settings)
            started.append(clam_stack.stop)
            measure_memory(clam, args, "Roost stack with ClamAV (one-signature database)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
