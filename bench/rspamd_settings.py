"""Benchmark: what each of Roost's Rspamd settings costs per inbound message.

Starts one Roost stack (``roost up`` on ROOST_E2E_NET.42, as bench/inbound_rspamd.py does)
and sends it the same inbound mail (port 25, from an outside address) under variants of
its Rspamd configuration: as Roost writes it, and with one module or group of settings
turned off at a time, by writing a file into the running stack's ``override.d``
(priority 10, so it wins over Debian's and Roost's own files) and sending Rspamd's main
process SIGHUP, which starts new workers on the new configuration. The variants take
turns, ``--rounds`` times each, so the machine's other work weighs on all of them alike.

For each variant it prints the CPU time per message of Rspamd's processes (its proxy
workers scan: self_scan), of Rspamd's Redis, and the Redis commands per message
(``INFO commandstats`` of that Redis before and after), each as the median over the
rounds and against the first variant, Roost as it is.

    ROOST_E2E_NET=127.0.45 .venv/bin/python bench/rspamd_settings.py \
        [--messages 300] [--rounds 3] [--variants name,name] [--sources]

``--sources`` also measures the scans of the same messages as if they came from the
internet (see print_sources): every client here is on loopback, which Rspamd counts as
local, so greylisting and ARC sealing of inbound mail are not in the figures above.

Seen on a shared 2-core machine (load 4 to 6), 2026-12-05, ``--messages 300 --rounds 3``:
Rspamd 2.37 ms per message as Roost has it, 11 Redis commands; turning off history_redis
saves 0.2 to 0.3 ms, multimap 0.4 (mostly Debian's freemail and disposable-address
rules, which the bare chain has too), each other part 0.2 or less, within the noise of
single rounds (0.4 ms). ``--sources``: from loopback 1.3 to 1.7 ms a scan, from a
public address 2.0 to 2.6, with the recipients' domain's DKIM key (an ARC seal on every
message) 3.4 to 3.8. docs/filtering.md ("What Rspamd's settings cost") has the table.

Needs root (the daemons drop privileges themselves).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailbench import (
    SENDER,
    Chain,
    can_run,
    cpu_seconds,
    descendants,
    message,
    roost_chain,
    world,
)

from tests.e2e.stack import Stack


def without_rules(*names: str) -> Callable[[str], str]:
    """An edit of Roost's local.d/multimap.conf that leaves out the named rules."""

    def edit(text: str) -> str:
        for name in names:
            start = text.index(f"{name} {{")
            text = text[:start] + text[text.index("\n}\n", start) + 3 :]
        return text

    return edit


def off(*modules: str) -> dict[str, Edit]:
    """override.d files that turn the modules off."""
    return {f"override.d/{module}.conf": "enabled = false;\n" for module in modules}


#: An override.d file's content, or an edit of one of Roost's files (by its text).
Edit = str | Callable[[str], str]

#: name: the files under ROOT/etc/rspamd that change; {} is Roost's configuration.
VARIANTS: dict[str, dict[str, Edit]] = {
    "roost": {},
    "no history_redis": off("history_redis"),
    "no neural": off("neural"),
    "no greylist": off("greylist"),
    "no ratelimit": off("ratelimit"),
    "no replies": off("replies"),
    "no dkim_signing+arc": off("dkim_signing", "arc"),
    "no multimap": off("multimap"),
    "multimap: no FORBIDDEN_FILE_EXT": {
        "local.d/multimap.conf": without_rules("FORBIDDEN_FILE_EXTENSION")
    },
    "multimap: no IS_LOCAL_DOMAIN_H/E": {
        "local.d/multimap.conf": without_rules("IS_LOCAL_DOMAIN_H", "IS_LOCAL_DOMAIN_E")
    },
    "multimap: no IS_LOCALLY_GEN": {"local.d/multimap.conf": without_rules("IS_LOCALLY_GENERATED")},
    "no milter_headers": off("milter_headers"),
    "no metadata_exporter": off("metadata_exporter"),
    "no force_actions+whitelist": off("force_actions", "whitelist"),
}


def rspamd_process(chain: Chain, title: bytes) -> int:
    """The Rspamd process under the stack's runner whose title starts with ``title``."""
    for root in chain.roots():
        for pid in descendants(root):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                    if cmdline.read().startswith(title):
                        return pid
            except OSError:
                continue
    raise RuntimeError(f"no {title.decode()!r} under the stack")


#: A documentation address (RFC 5737): a sender from the internet, without reverse DNS.
PUBLIC = "192.0.2.25"


def print_sources(stack: Stack, chain: Chain, count: int) -> None:
    """CPU per scan of the controller, scanning the same messages one after the other with
    rspamc, as if from loopback (which Rspamd counts as local: the other figures' case)
    and from a public address, before and after the recipients' domain has a DKIM key
    (mail from outside to it is then ARC-sealed)."""
    folder = stack.root.parent / f"{stack.root.name}-messages"
    folder.mkdir(exist_ok=True)
    files = []
    for number in range(count):
        path = folder / f"{number}.eml"
        path.write_bytes(message(number, chain.recipients[0]))
        files.append(str(path))
    socket = str(stack.root / "run/rspamd/controller.sock")
    print(f"\nthe controller scanning {count} messages one by one (rspamc), ms CPU per scan:")
    for key in (False, True):
        if key:
            stack.roost("dkim", "generate", chain.recipients[0].split("@")[1])
            time.sleep(5)  # the gate writes the key into Rspamd's Redis
        for source in ("127.80.0.1", PUBLIC, "127.80.0.1", PUBLIC):
            controller = rspamd_process(chain, b"rspamd: controller")
            before = sum(cpu_seconds([controller]).values())
            argv = ["rspamc", "-h", socket, "-t", "60", "-i", source, "-F", SENDER]
            out = subprocess.run(
                [*argv, "-r", chain.recipients[0], *files],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            spent = sum(cpu_seconds([controller]).values()) - before
            print(
                f"  from {source:11} {'with' if key else 'without'} a DKIM key:"
                f" {1000 * spent / count:5.2f}; ARC-sealed {out.count('ARC_SIGNED')},"
                f" greylisted {out.count('Action: soft reject') + out.count('Action: greylist')}"
            )


def redis_commands(stack: Stack) -> dict[str, int]:
    """``INFO commandstats`` of Rspamd's Redis: calls by command."""
    out = subprocess.run(
        [
            "redis-cli",
            "-s",
            str(stack.root / "run/rspamd-redis/redis.sock"),
            "info",
            "commandstats",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    calls = {}
    for line in out.splitlines():
        if line.startswith("cmdstat_"):
            name, fields = line[len("cmdstat_") :].split(":", 1)
            calls[name] = int(fields.split("calls=")[1].split(",")[0])
    return calls


def apply(stack: Stack, chain: Chain, edits: dict[str, Edit], originals: dict[str, str]) -> None:
    """Put back Roost's files, make the variant's changes and reload Rspamd."""
    etc = stack.root / "etc/rspamd"
    for old in (etc / "override.d").iterdir():
        old.unlink()
    for name, text in originals.items():
        (etc / name).write_text(text)
    for name, edit in edits.items():
        path = etc / name
        if isinstance(edit, str):
            path.write_text(edit)
        else:
            originals.setdefault(name, path.read_text())
            path.write_text(edit(originals[name]))
    os.kill(rspamd_process(chain, b"rspamd: main process"), signal.SIGHUP)
    time.sleep(8)  # the old workers finish, the new ones load the rules


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--sources",
        action="store_true",
        help="also scan through the controller from loopback and from a public address",
    )
    args = parser.parse_args()
    chosen = [name.strip() for name in args.variants.split(",")]
    unknown = [name for name in chosen if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    if not can_run():
        return 2
    rspamd_ms: dict[str, list[float]] = defaultdict(list)
    redis_ms: dict[str, list[float]] = defaultdict(list)
    redis_calls: dict[str, list[float]] = defaultdict(list)
    commands: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    with world() as started:
        stack, chain = roost_chain("bench-rspamd-settings", 42, args.users, {})
        started.append(stack.stop)
        chain.run(40, args.concurrency, 1, 120)
        originals: dict[str, str] = {}
        for _ in range(args.rounds):
            for name in chosen:
                apply(stack, chain, VARIANTS[name], originals)
                chain.run(20, args.concurrency, 1, 120)  # warm the new workers
                cpu, calls = measure(stack, chain, args)
                rspamd_ms[name].append(cpu["rspamd"])
                redis_ms[name].append(cpu["redis"])
                redis_calls[name].append(sum(calls.values()))
                for command, count in calls.items():
                    commands[name][command] += count / args.rounds
        apply(stack, chain, {}, originals)
        if args.sources:
            print_sources(stack, chain, args.messages)
    base = statistics.median(rspamd_ms[chosen[0]])
    print(
        f"Rspamd per inbound message, {args.messages} messages x {args.rounds} rounds,"
        f" {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; medians (all rounds)"
    )
    print(f"  {'variant':30} {'rspamd ms':>20} {'vs roost':>8} {'redis ms':>9} {'redis cmds':>10}")
    for name in chosen:
        median = statistics.median(rspamd_ms[name])
        rounds = "/".join(f"{v:.2f}" for v in rspamd_ms[name])
        print(
            f"  {name:30} {median:5.2f} ({rounds:>12}) {median - base:+8.2f}"
            f" {statistics.median(redis_ms[name]):9.2f}"
            f" {statistics.median(redis_calls[name]):10.1f}"
        )
    print("\nRedis commands per message (mean over the rounds):")
    for name in chosen:
        shown = ", ".join(
            f"{command} {count:.1f}"
            for command, count in sorted(commands[name].items(), key=lambda item: -item[1])
            if count >= 0.05
        )
        print(f"  {name:30} {shown or '-'}")
    return 0


def measure(
    stack: Stack, chain: Chain, args: argparse.Namespace
) -> tuple[dict[str, float], dict[str, float]]:
    """ms of CPU per message of Rspamd and its Redis, and Redis commands per message."""

    def sample() -> dict[str, float]:
        by_name = cpu_seconds(chain.roots())
        return {
            "rspamd": sum(v for k, v in by_name.items() if k.startswith("rspamd:")),
            "redis": by_name.get("redis (Rspamd's)", 0.0),
        }

    before, calls_before = sample(), redis_commands(stack)
    chain.run(args.messages, args.concurrency, 1, 600)
    after, calls_after = sample(), redis_commands(stack)
    cpu = {k: 1000 * (after[k] - before[k]) / args.messages for k in after}
    calls = {
        k: (v - calls_before.get(k, 0)) / args.messages
        for k, v in calls_after.items()
        if k not in ("info",)
    }
    return cpu, calls


if __name__ == "__main__":
    sys.exit(main())
