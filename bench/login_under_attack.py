"""Benchmark: a real user's IMAP login while attackers hammer the same account and gate.

Starts a whole Roost stack (``roost up``, the e2e tests' :class:`tests.e2e.stack.Stack`) on
a loopback address, creates a victim account and a few real users, then:

1. baseline: each of half the real users logs in over IMAPS once, one after the other;
2. attack: ``--networks`` attacker networks (127.150.N.0/24), ``--per-network`` parallel
   connections each, send IMAP logins for the victim with a new wrong password every time,
   so every guess asks for a full Argon2 check;
3. under attack: the other half of the real users log in, one after the other, from their
   own network.

Every real login is a first login (nothing cached), so it needs an Argon2 check of its own
and competes with the attackers' for the gate's hashing threads. The report prints the
median and worst login time without and with the attack, their ratio, how many guesses the
attackers made, and how the gate answered them. Dovecot gives the gate 5 s per login.

By default the rate-limit budgets are lifted so that every guess reaches the hashing queue
(the worst case: only the bounded, per-network fair queue protects the user);
``--mailu-limits`` keeps the default budgets, which stop the attackers after 50 distinct
wrong passwords, after which their guesses cost no hash at all.

Loopback only, bounded in time (``--seconds`` of attack, at most ``--max-guesses``), and it
stops the stack by itself. Needs root (it starts Postfix, Dovecot and nginx), like the e2e
tests.

    .venv/bin/python bench/login_under_attack.py [--seconds 20] [--networks 16]
"""

from __future__ import annotations

import argparse
import contextlib
import imaplib
import os
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("ROOST_E2E_NET", "127.0.201")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.stack import Stack, e2e_address

USER_NETWORK = "127.160.0.1"


def imap_login(stack: Stack, user: str, password: str, source: str) -> str:
    """'OK', or the kind of refusal: 'badauth', 'temporary' or 'error: ...'."""
    try:
        client = stack.imap(source)
    except OSError as exc:
        return f"error: {exc}"
    try:
        client.login(user, password)
        return "OK"
    except imaplib.IMAP4.error as exc:
        text = str(exc)
        if "AUTHENTICATIONFAILED" in text:
            return "badauth"
        if "UNAVAILABLE" in text or "Temporary" in text:
            return "temporary"
        return f"error: {text[:60]}"
    except OSError as exc:
        return f"error: {exc}"
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()


def timed_login(stack: Stack, user: str, password: str) -> tuple[str, float]:
    start = time.perf_counter()
    result = imap_login(stack, user, password, USER_NETWORK)
    return result, time.perf_counter() - start


@dataclass
class Attack:
    stack: Stack
    victim: str
    networks: int
    per_network: int
    max_guesses: int
    stop: threading.Event = field(default_factory=threading.Event)
    outcomes: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def _guess(self, source: str) -> None:
        while not self.stop.is_set():
            with self.lock:
                if sum(self.outcomes.values()) >= self.max_guesses:
                    return
            result = imap_login(self.stack, self.victim, f"guess-{uuid.uuid4().hex}", source)
            with self.lock:
                self.outcomes[result.split(":")[0]] += 1

    def start(self) -> None:
        for network in range(self.networks):
            for n in range(self.per_network):
                source = f"127.150.{network}.{n + 1}"
                thread = threading.Thread(target=self._guess, args=(source,), daemon=True)
                thread.start()
                self.threads.append(thread)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def describe(times: list[float]) -> str:
    return f"median {statistics.median(times):.3f} s, worst {max(times):.3f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the attack")
    parser.add_argument("--networks", type=int, default=16, help="attacker networks")
    parser.add_argument("--per-network", type=int, default=2, help="connections per network")
    parser.add_argument("--users", type=int, default=8, help="real users (half per phase)")
    parser.add_argument("--max-guesses", type=int, default=3000, help="stop after this many")
    parser.add_argument("--mailu-limits", action="store_true", help="keep default budgets")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root: it starts Postfix, Dovecot and nginx", file=sys.stderr)
        return 2

    settings = {"LOG_LEVEL": "WARNING"}
    if not args.mailu_limits:
        settings |= {"AUTH_RATELIMIT_IP": "100000/hour", "AUTH_RATELIMIT_USER": "100000/day"}
    stack = Stack("bench-attack", e2e_address(70), settings=settings)
    print(f"starting a stack on {stack.address} (ROOT {stack.root}) ...", flush=True)
    stack.start()
    try:
        victim = stack.add_user("victim", "victim-pw-1")
        users = [stack.add_user(f"real{n}", f"real-pw-{n}") for n in range(args.users)]
        half = len(users) // 2

        baseline: list[float] = []
        for n, user in enumerate(users[:half]):
            result, seconds = timed_login(stack, user, f"real-pw-{n}")
            assert result == "OK", f"baseline login failed: {result}"
            baseline.append(seconds)
        print(f"without attack: {describe(baseline)}", flush=True)

        attack = Attack(stack, victim, args.networks, args.per_network, args.max_guesses)
        attack.start()
        started = time.monotonic()
        time.sleep(min(3.0, args.seconds / 4))  # let the attackers fill the queue
        during: list[float] = []
        results: Counter[str] = Counter()
        pause = max(0.0, (args.seconds - (time.monotonic() - started)) / max(1, len(users) - half))
        for n, user in enumerate(users[half:], start=half):
            result, seconds = timed_login(stack, user, f"real-pw-{n}")
            results[result] += 1
            during.append(seconds)
            time.sleep(pause)
        while time.monotonic() - started < args.seconds and not attack.stop.is_set():
            time.sleep(0.2)
        attack.finish()
        elapsed = time.monotonic() - started

        guesses = sum(attack.outcomes.values())
        print(
            f"attack: {args.networks} networks x {args.per_network} connections, "
            f"{guesses} guesses in {elapsed:.1f} s ({guesses / elapsed:.1f}/s): "
            + ", ".join(f"{k} {v}" for k, v in sorted(attack.outcomes.items())),
            flush=True,
        )
        print(f"under attack:   {describe(during)}; logins " + dict(results).__repr__())
        ratio = statistics.median(during) / statistics.median(baseline)
        print(
            f"real user's IMAP login under attack / without: {ratio:.2f}x "
            f"(worst {max(during):.2f} s against Dovecot's 5 s wait for the gate)"
        )
        return 0 if results["OK"] == len(during) else 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
