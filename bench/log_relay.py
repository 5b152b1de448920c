"""Benchmark: the runner's log relaying against the daemons' own logging.

Every line a daemon under ``roost up`` writes goes through the runner, which prefixes it
with the daemon's name and writes it to its own stdout (roost/runner/logrelay.py). This
benchmark measures what that costs the runner, per 1,000 lines, against what writing the
same lines costs the writers themselves, in the same run:

- *baseline*: ``--writers`` writer processes (a small C program, built with the system's
  ``cc``) each write ``--lines`` log lines of the size and shape of Postfix's, formatted
  with strftime and snprintf and written with one ``write(2)`` per line as postlogd writes
  its maillog_file, straight to a file, all in one go: the daemons' own logging at its
  cheapest. Its figure is the writers' CPU time (CLOCK_PROCESS_CPUTIME_ID) for the lines.
- *relayed*: the real runner (roost.runner.supervisor.Supervisor, production timings, its
  stdout to a file as in the e2e tests) supervises the same writers, now paced as daemons
  log: ``--burst`` lines at a time (1: each line on its own, as postlogd receives them),
  ``--rate`` lines per second in all. Its figure is the runner's CPU time while the lines
  flow (``/proc/PID/task/*/schedstat``, nanoseconds), less what it spends idle over as
  long a time (its exit polls), measured just before.

Rounds alternate which goes first. The ratio is the runner's CPU per line over the
writers' own; the target (issue 13) is at most 1. The bench also checks that every line
arrived exactly once, whole, behind its writer's name.

    .venv/bin/python bench/log_relay.py [--lines 20000] [--writers 5] [--rate 2000]
        [--burst 1] [--rounds 3]

An inbound message makes about 13 lines in the merged log (Postfix's smtpd, cleanup, qmgr
and lmtp, nginx, Rspamd, Dovecot's LMTP), so 2,000 lines/s is a stack taking about 150
messages/s. Needs no root and starts no daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: The daemon side, in C as the daemons are: ``count`` lines shaped like Postfix's (a
#: timestamp, the host, the program and pid, a queue ID and text), each formatted with
#: strftime and snprintf and written with one write(2), as postlogd writes its maillog_file;
#: ``burst`` lines at a time, paced to ``rate`` lines/s. It starts when the file ``go``
#: exists, and writes to ``cpu`` the CPU time (seconds) it spent formatting and writing the
#: lines, not its sleeps between bursts (a daemon wakes up for its work, not to log), then
#: stays until signalled.
WRITER_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
static const char *texts[] = {
  "connect from unknown[127.80.0.1]",
  "%s: client=unknown[127.80.0.1]",
  "%s: message-id=<bench@sender.example>",
  "%s: from=<someone@sender.example>, size=2417, nrcpt=1 (queue active)",
  "%s: to=<user1@bench.example>, relay=ROOT/run/dovecot/lmtp, delay=0.05, delays=0.02/0.01/"
  "0.01/0.01, dsn=2.0.0, status=sent (250 2.0.0 <user1@bench.example> 0Ny4Lj0sMmkPGQAA Saved)",
  "%s: removed",
  "disconnect from unknown[127.80.0.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5",
};
static double now(clockid_t clock) {
  struct timespec t; clock_gettime(clock, &t); return t.tv_sec + t.tv_nsec / 1e9;
}
int main(int argc, char **argv) {
  long count = atol(argv[1]), burst = atol(argv[6]); double rate = atof(argv[2]);
  struct stat st; struct timespec poll = {0, 10000000};
  FILE *ready = fopen(argv[4], "w"); fclose(ready);
  while (stat(argv[3], &st) != 0) nanosleep(&poll, NULL);
  double started = now(CLOCK_MONOTONIC), spent = 0;
  char line[512], qid[16], text[400], stamp[32];
  for (long first = 0; first < count; first += burst) {
    double before = now(CLOCK_PROCESS_CPUTIME_ID);
    for (long n = first; n < first + burst && n < count; n++) {
      time_t clock = time(NULL); struct tm tm;
      strftime(stamp, sizeof stamp, "%b %e %H:%M:%S", localtime_r(&clock, &tm));
      snprintf(qid, sizeof qid, "4Q%010lX", n);
      snprintf(text, sizeof text, texts[n % 7], qid);
      int size = snprintf(line, sizeof line, "%s bench postfix/smtpd[%d]: line %ld: %s\n",
                          stamp, (int)getpid(), n, text);
      if (write(1, line, size) != size) return 1;
    }
    spent += now(CLOCK_PROCESS_CPUTIME_ID) - before;
    double delay = started + (first + burst) / rate - now(CLOCK_MONOTONIC);
    if (delay > 0) {
      struct timespec wait = {(time_t)delay, (long)((delay - (time_t)delay) * 1e9)};
      nanosleep(&wait, NULL);
    }
  }
  FILE *cpu = fopen(argv[5], "w");
  fprintf(cpu, "%.9f", spent); fclose(cpu);
  for (;;) pause();
}
"""


def build_writer(directory: Path) -> Path:
    """Compile the writer with the system's C compiler (Debian's gcc)."""
    source = directory / "writer.c"
    source.write_text(WRITER_C)
    program = directory / "writer"
    subprocess.run(["cc", "-O2", "-o", str(program), str(source)], check=True)
    return program


def writer_argv(number: int, args: argparse.Namespace, work: Path, paced: bool) -> list[str]:
    """A writer's command; unpaced, it writes every line in one go, as fast as it can."""
    rate, burst = (args.rate / args.writers, args.burst) if paced else (1e12, args.lines)
    return [
        str(work.parent / "writer"),
        str(args.lines),
        str(rate),
        str(work / "go"),
        str(work / f"ready{number}"),
        str(work / f"cpu{number}"),
        str(burst),
    ]


def run_runner(args: argparse.Namespace, work: Path) -> None:
    """The runner side: the real supervisor, with the writers as its daemons."""
    from roost.runner.supervisor import ChildSpec, Supervisor

    specs = [
        ChildSpec(name=f"writer{n}", argv=tuple(writer_argv(n, args, work, paced=True)))
        for n in range(args.writers)
    ]
    sys.exit(asyncio.run(Supervisor(specs).run()))


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid`` so far, in nanoseconds (schedstat's first field)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue
    return total


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"log_relay: timed out waiting for {what}")
        time.sleep(0.02)


def fresh(work: Path) -> None:
    for path in work.iterdir():
        path.unlink()


def writers_cpu(args: argparse.Namespace, work: Path) -> float:
    files = [work / f"cpu{n}" for n in range(args.writers)]
    wait_for(lambda: all(f.exists() and f.stat().st_size for f in files), 600, "the writers")
    return sum(float(f.read_text()) for f in files)


def baseline(args: argparse.Namespace, work: Path, out: Path) -> float:
    """The writers' CPU seconds for writing their lines straight to a file."""
    fresh(work)
    with out.open("wb") as sink:
        writers = [
            subprocess.Popen(
                writer_argv(n, args, work, paced=False), stdout=sink, stdin=subprocess.DEVNULL
            )
            for n in range(args.writers)
        ]
    try:
        ready = [work / f"ready{n}" for n in range(args.writers)]
        wait_for(lambda: all(r.exists() for r in ready), 30, "the writers to start")
        (work / "go").touch()
        seconds = writers_cpu(args, work)
    finally:
        for writer in writers:
            writer.terminate()
            writer.wait()
    check(out, args, prefixed=False)
    return seconds


def relayed(args: argparse.Namespace, work: Path, out: Path) -> float:
    """The runner's CPU seconds for relaying the lines (less its idle)."""
    fresh(work)
    argv = [sys.executable, __file__, "--runner", "--work", str(work), "--lines", str(args.lines)]
    argv += ["--writers", str(args.writers), "--rate", str(args.rate), "--burst", str(args.burst)]
    with out.open("wb") as sink:
        runner = subprocess.Popen(argv, stdout=sink, stdin=subprocess.DEVNULL)
    try:
        ready = [work / f"ready{n}" for n in range(args.writers)]
        wait_for(lambda: all(r.exists() for r in ready), 30, "the runner's writers")
        time.sleep(1.0)
        idle_from, idle_start = cpu_ns(runner.pid), time.monotonic()
        time.sleep(min(3.0, args.lines * args.writers / args.rate))
        idle_rate = (cpu_ns(runner.pid) - idle_from) / (time.monotonic() - idle_start)
        start, started = cpu_ns(runner.pid), time.monotonic()
        (work / "go").touch()
        expected = args.lines * args.writers
        wait_for(lambda: lines_in(out) >= expected, 600, "every line in the runner's output")
        spent = cpu_ns(runner.pid) - start - idle_rate * (time.monotonic() - started)
    finally:
        runner.send_signal(signal.SIGTERM)
        runner.wait(timeout=60)
    check(out, args, prefixed=True)
    return spent / 1e9


def lines_in(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def check(out: Path, args: argparse.Namespace, prefixed: bool) -> None:
    """Every line of every writer arrived once, whole, behind its writer's name."""
    seen: dict[str, int] = {}
    for line in out.read_bytes().decode().splitlines():
        if " postfix/smtpd[" not in line:
            continue
        if prefixed and not line.startswith("writer"):
            raise SystemExit(f"log_relay: a line without its prefix: {line!r}")
        writer = line.split(" | ", 1)[0] if prefixed else ""
        key = writer + "/" + line.split("]: line ", 1)[1].split(":", 1)[0]
        seen[key] = seen.get(key, 0) + 1
    expected = args.lines * (args.writers if prefixed else 1)
    copies = set(seen.values())
    if len(seen) != expected or copies - {1 if prefixed else args.writers}:
        raise SystemExit(f"log_relay: {len(seen)} distinct lines ({copies}), expected {expected}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=20000, help="lines per writer")
    parser.add_argument("--writers", type=int, default=5)
    parser.add_argument("--rate", type=float, default=2000.0, help="lines/s of all writers")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--burst", type=int, default=1, help="lines a writer writes at a time")
    parser.add_argument("--runner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runner:
        run_runner(args, args.work)
        return 0
    if shutil.which("cc") is None:
        print("log_relay: the writers are built with a C compiler: apt-get install gcc")
        return 2
    total = args.lines * args.writers
    own: list[float] = []
    relay: list[float] = []
    with tempfile.TemporaryDirectory(prefix="log-relay-") as temp:
        work = Path(temp) / "work"
        work.mkdir()
        build_writer(Path(temp))
        out = Path(temp) / "out.log"
        for round_ in range(args.rounds):
            for which in ("baseline", "relayed") if round_ % 2 == 0 else ("relayed", "baseline"):
                if which == "baseline":
                    own.append(baseline(args, work, out) / total * 1e6)
                else:
                    relay.append(relayed(args, work, out) / total * 1e6)
    ratios = [r / o for r, o in zip(relay, own, strict=True)]
    print(
        f"log relaying, {args.writers} writers x {args.lines} lines at {args.rate:g} lines/s"
        f" in all, {args.burst} at a time, {args.rounds} rounds, {os.cpu_count()} CPUs,"
        f" load {os.getloadavg()[0]:.1f}"
    )
    print("CPU ms per 1,000 lines (median; per round)")
    for label, values in (
        ("the writers' own, to a file (baseline)", own),
        ("the runner, relaying them", relay),
    ):
        each = ", ".join(f"{v:.1f}" for v in values)
        print(f"  {label:<42} {statistics.median(values):6.2f}   ({each})")
    print(
        f"  runner / baseline {statistics.median(ratios):.2f}"
        f" (per round: {', '.join(f'{r:.2f}' for r in ratios)}); target at most 1"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
