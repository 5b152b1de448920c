"""The login decision under attack: budgets that cannot lock the owner out, no hashing for
what is already known, a bounded fair queue, and equal time for unknown names.

These drive :meth:`Gate.decide` directly, with the limiter in memory and a fake clock, so
the rules can be walked through time without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from roost.core import credentials
from roost.gate.auth import AuthAnswer, AuthRequest, Gate
from roost.gate.index import Index
from roost.gate.limiter import AuthLimiter
from roost.gate.workqueue import FairQueue, QueueFull
from roost.store.db import Store
from tests.unit.test_gate_support import (
    DOMAIN,
    add_token,
    add_user,
    make_settings,
    open_store,
    populate,
)

JOE = f"joe@{DOMAIN}"
TOKEN = "0123456789abcdef0123456789abcdef"
LIMITED = "Temporary authentication failure (rate-limit)"
HINTED = f"{LIMITED}. An app token works from anywhere."
BADAUTH = "Authentication credentials invalid"
ATTACKER = "198.51.100"  # the attacker's /24
HOME = "203.0.113"  # where Joe reads his mail
PHONE = "192.0.2"  # where Joe's phone just moved to


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    root = tmp_path_factory.mktemp("defence")
    settings = make_settings(root, "127.0.4.9")
    opened = open_store(settings)
    populate(opened)
    add_token(opened, JOE, TOKEN)
    add_user(opened, f"ann@{DOMAIN}", "ann-secret")
    try:
        yield opened
    finally:
        opened.dispose()


class Harness:
    """A Gate over the module's store, an in-memory limiter and a fake clock."""

    def __init__(self, store: Store, tmp_path: Path, **overrides: Any) -> None:
        values: dict[str, Any] = {"AUTH_RATELIMIT_USER": "50/day"}
        values.update(overrides)
        self.settings = make_settings(tmp_path, "127.0.4.9", **values)
        self.store = store
        self.clock = Clock()
        self.loop = asyncio.new_event_loop()
        self.limiter = AuthLimiter(
            self.settings, tmp_path / "no-redis.sock", clock=self.clock, use_redis=False
        )
        self.index = Index(store)
        self.loop.run_until_complete(self.index.load())
        self.gate = Gate(self.settings, self.index, self.limiter)

    def auth(
        self, user: str, password: str, ip: str, protocol: str = "imap", port: int = 993
    ) -> AuthAnswer:
        request = AuthRequest("plain", user, password, protocol, port, ip, "40000", True)
        return self.loop.run_until_complete(self.gate.decide(request))

    def close(self) -> None:
        self.loop.run_until_complete(self.gate.close())
        self.loop.run_until_complete(self.limiter.close())
        self.loop.close()


@pytest.fixture
def harness(store: Store, tmp_path: Path) -> Iterator[Harness]:
    made = Harness(store, tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password hash verified (the stored hash), as check_login calls it."""
    seen: list[str] = []
    real = credentials.verify_password

    def counting(stored: str, plain: str) -> tuple[bool, str | None]:
        seen.append(stored)
        return real(stored, plain)

    monkeypatch.setattr(credentials, "verify_password", counting)
    return seen


# -- the account budget cannot lock the owner out -----------------------------------------------


def test_fifty_wrong_passwords_do_not_lock_the_owner_out_of_his_networks(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    assert harness.auth(JOE, "joe-secret", f"{HOME}.10").ok
    for n in range(50):
        answer = harness.auth(JOE, f"guess-{n}", f"{ATTACKER}.{n % 200 + 1}")
        assert answer.status == BADAUTH
    # The account's budget is spent: the attacker's network stays stopped, even with the
    # right password, and so does any network Joe has not logged in from ...
    assert harness.auth(JOE, "joe-secret", f"{ATTACKER}.7").status == HINTED
    phone = harness.auth(JOE, "joe-secret", f"{PHONE}.44")
    assert phone.status == HINTED
    assert any(
        f"for {JOE} has been rate-limited. An app token works from anywhere." in m
        for m in caplog.messages
    )
    # ... where an app token logs in.
    assert harness.auth(JOE, TOKEN, f"{PHONE}.44").ok
    # Joe's home network still opens with the password, from its other addresses too.
    assert harness.auth(JOE, "joe-secret", f"{HOME}.10").ok
    assert harness.auth(JOE, "joe-secret", f"{HOME}.11").ok
    # Once the trust has run out (a day without a login there), the spent budget applies.
    harness.clock.now += 86400 - 3600
    assert harness.auth(JOE, "joe-secret", f"{HOME}.10").ok  # renews the trust
    harness.clock.now += 86400 + 1
    assert harness.auth(JOE, "joe-secret", f"{HOME}.10").ok  # the guesses have aged out


def test_guessing_from_the_owners_network_is_still_bounded(harness: Harness) -> None:
    assert harness.auth(JOE, "joe-secret", f"{HOME}.10").ok
    for n in range(50):
        harness.auth(JOE, f"guess-{n}", f"{ATTACKER}.1")
    # Someone else behind Joe's home NAT gets the pair's own window (AUTH_RATELIMIT_IP's
    # 5/hour) of distinct guesses, then nothing more.
    answers = [harness.auth(JOE, f"home-guess-{n}", f"{HOME}.99").status for n in range(7)]
    assert answers[:5] == [BADAUTH] * 5
    assert answers[5:] == [HINTED] * 2
    harness.clock.now += 3601
    assert harness.auth(JOE, "joe-secret", f"{HOME}.10").ok


def test_trust_is_per_account_not_per_address(harness: Harness) -> None:
    """One user's good login from a shared NAT address does not free guesses at others."""
    nat = f"{HOME}.1"
    assert harness.auth(JOE, "joe-secret", nat).ok
    answers = [harness.auth(f"ghost{n}@{DOMAIN}", "guess", nat).status for n in range(6)]
    assert answers == [BADAUTH] * 5 + [LIMITED]
    assert harness.auth(f"ann@{DOMAIN}", "ann-secret", nat).status == LIMITED
    # Joe himself is not stopped by the network's spent budget.
    assert harness.auth(JOE, "joe-secret", nat).ok


def test_port_25_auth_spends_no_budget(harness: Harness) -> None:
    for n in range(20):
        request = AuthRequest("login", JOE, f"g{n}", "smtp", 25, f"{ATTACKER}.1", "1", False)
        answer = harness.loop.run_until_complete(harness.gate.decide(request))
        assert (answer.status, answer.error_code) == ("AUTH not supported", "502 5.5.1")
    assert harness.auth(JOE, "joe-secret", f"{ATTACKER}.2", "smtp", 0).ok
    assert harness.auth(f"ann@{DOMAIN}", "ann-secret", f"{ATTACKER}.3").ok


# -- no hashing for what is already known -----------------------------------------------------


def test_a_repeated_wrong_password_is_not_hashed_again(harness: Harness, hashes: list[str]) -> None:
    for _ in range(5):
        assert harness.auth(JOE, "same-wrong", f"{ATTACKER}.1").status == BADAUTH
    assert len(hashes) == 1
    for _ in range(5):
        assert harness.auth(f"nobody@{DOMAIN}", "same-wrong", f"{ATTACKER}.1").status == BADAUTH
    assert len(hashes) == 2  # the unknown name's first guess: the dummy hash, once
    # The right password after a wrong one is of course checked.
    assert harness.auth(JOE, "joe-secret", f"{ATTACKER}.1").ok


def test_a_changed_password_is_not_refused_from_memory(
    store: Store, tmp_path: Path, hashes: list[str]
) -> None:
    made = Harness(store, tmp_path)
    try:
        add_user(store, f"mover@{DOMAIN}", "old-secret")
        made.loop.run_until_complete(made.index.load())
        assert made.auth(f"mover@{DOMAIN}", "new-secret", f"{HOME}.5").status == BADAUTH
        from sqlalchemy import update

        from roost.store.models import User
        from tests.unit.test_gate_support import password_hash

        with store.session() as session:
            session.execute(
                update(User)
                .where(User.email == f"mover@{DOMAIN}")
                .values(password=password_hash("new-secret"))
            )
        made.loop.run_until_complete(made.index.load())
        assert made.auth(f"mover@{DOMAIN}", "new-secret", f"{HOME}.5").ok
    finally:
        made.close()


def test_refused_networks_cost_no_password_hash(harness: Harness, hashes: list[str]) -> None:
    for n in range(5):
        harness.auth(f"ghost{n}@{DOMAIN}", "guess", f"{ATTACKER}.{n + 1}")
    hashes.clear()
    for n in range(10):
        assert harness.auth(JOE, f"{n:032x}", f"{ATTACKER}.9").status == LIMITED
        assert harness.auth(JOE, f"pw-{n}", f"{ATTACKER}.9").status == LIMITED
    assert hashes == []
    assert harness.auth(JOE, TOKEN, f"{ATTACKER}.9").ok


# -- AUTH_REQUIRE_TOKENS ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "port"), [("imap", 993), ("pop3", 995), ("smtp", 0), ("sieve", 4190)]
)
def test_require_tokens_refuses_passwords_everywhere(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture, protocol: str, port: int
) -> None:
    caplog.set_level(logging.INFO, logger="roost.gate")
    made = Harness(store, tmp_path, AUTH_REQUIRE_TOKENS=True)
    try:
        assert made.auth(JOE, "joe-secret", f"{HOME}.1", protocol, port).status == BADAUTH
        assert any("(password refused: AUTH_REQUIRE_TOKENS)" in m for m in caplog.messages)
        assert made.auth(JOE, TOKEN, f"{HOME}.1", protocol, port).ok
    finally:
        made.close()


# -- equal time for names that are no account -------------------------------------------------


def test_unknown_names_take_as_long_as_real_accounts(harness: Harness) -> None:
    def elapsed(user: str, n: int) -> float:
        start = time.perf_counter()
        harness.auth(user, f"distinct-guess-{n}", f"{HOME}.{n + 1}")
        return time.perf_counter() - start

    harness.auth(JOE, "joe-secret", f"{HOME}.200")  # cached: a cheap "no" would show here
    real = statistics.median(elapsed(JOE, n) for n in range(5))
    unknown = statistics.median(elapsed(f"nobody{n}@{DOMAIN}", n + 10) for n in range(5))
    # Without the dummy hash an unknown name answers ~50x faster.
    assert unknown > real / 3, (real, unknown)
    assert real > unknown / 3, (real, unknown)


# -- the fair queue --------------------------------------------------------------------------


def test_queue_serves_networks_round_robin_and_refuses_floods() -> None:
    async def body() -> tuple[list[str], list[str]]:
        queue = FairQueue(1, capacity=6, per_network=3)
        order: list[str] = []
        gate = threading.Event()

        def work(tag: str) -> str:
            order.append(tag)
            return tag

        async def blocker() -> None:
            await queue.run("block", gate.wait, 10)

        async def job(network: str, tag: str) -> str:
            try:
                return await queue.run(network, work, tag)
            except QueueFull:
                return f"refused {tag}"

        first = asyncio.create_task(blocker())
        await asyncio.sleep(0.05)
        tasks = [asyncio.create_task(job("attacker", f"a{n}")) for n in range(5)]
        await asyncio.sleep(0)
        tasks += [asyncio.create_task(job("other", f"o{n}")) for n in range(2)]
        tasks.append(asyncio.create_task(job("user", "u0")))
        await asyncio.sleep(0)
        gate.set()
        await first
        results = await asyncio.gather(*tasks)
        return order, results

    order, results = asyncio.run(body())
    # per_network=3: the attacker's fourth and fifth wait nowhere.
    assert results[3:5] == ["refused a3", "refused a4"]
    # capacity 6 was reached by a0-a2, o0, o1 and u0; served one network after the other.
    assert order == ["a0", "o0", "u0", "a1", "o1", "a2"]


def test_queue_evicts_the_longest_queue_for_a_quiet_network() -> None:
    async def body() -> list[str]:
        queue = FairQueue(1, capacity=4, per_network=4)
        release = threading.Event()

        async def job(network: str, tag: str) -> str:
            try:
                return await queue.run(network, lambda: tag)
            except QueueFull:
                return f"refused {tag}"

        blocker = asyncio.create_task(queue.run("x", release.wait, 10))
        await asyncio.sleep(0.05)
        tasks = [asyncio.create_task(job("attacker", f"a{n}")) for n in range(4)]
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(job("user", "u0")))
        await asyncio.sleep(0)
        release.set()
        await blocker
        return list(await asyncio.gather(*tasks))

    assert asyncio.run(body()) == ["a0", "a1", "a2", "refused a3", "u0"]


def test_parallel_guessers_leave_the_real_user_a_share(harness: Harness) -> None:
    """16 attackers on 4 networks, each with a new wrong password, and Joe's first login."""

    async def body() -> tuple[float, list[str]]:
        async def attacker(n: int) -> str:
            request = AuthRequest(
                "plain", JOE, f"attack-{n}", "imap", 993, f"10.{n % 4}.0.{n}", "1", True
            )
            return (await harness.gate.decide(request)).status

        async def user() -> float:
            await asyncio.sleep(0.05)
            start = time.perf_counter()
            request = AuthRequest("plain", JOE, "joe-secret", "imap", 993, f"{PHONE}.3", "1", True)
            answer = await harness.gate.decide(request)
            assert answer.ok, answer
            return time.perf_counter() - start

        attackers = [asyncio.create_task(attacker(n)) for n in range(16)]
        waited = await user()
        return waited, list(await asyncio.gather(*attackers))

    started: list[str] = []

    class Recording(FairQueue):
        async def run(self, network: str, fn: Any, *args: object, priority: bool = False) -> Any:
            def recorded() -> Any:
                started.append(network)
                return fn(*args)

            return await super().run(network, recorded, priority=priority)

    harness.gate.queue = Recording(2, capacity=8, per_network=2)
    waited, statuses = harness.loop.run_until_complete(body())
    # Per network at most 2 wait: the rest of each attacker network is refused at once.
    assert statuses.count(LIMITED) >= 6
    # Joe's check ran after at most the two running ones and one per attacker network;
    # a first-come queue would have run all sixteen first.
    assert started.index(f"{PHONE}.0/24") <= 2 + 4, (started, waited)


def test_queue_serves_quiet_networks_before_guessing_ones() -> None:
    async def body() -> list[str]:
        queue = FairQueue(1, capacity=8, per_network=4)
        for _ in range(3):
            queue.failed("attacker")
        order: list[str] = []
        release = threading.Event()

        def work(tag: str) -> str:
            order.append(tag)
            return tag

        blocker = asyncio.create_task(queue.run("x", release.wait, 10))
        await asyncio.sleep(0.05)
        tasks = [asyncio.create_task(queue.run("attacker", work, f"a{n}")) for n in range(3)]
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(queue.run("user", work, "u0")))
        await asyncio.sleep(0)
        release.set()
        await blocker
        await asyncio.gather(*tasks)
        return order

    # The user's network queued last but has no failures: it goes first.
    assert asyncio.run(body()) == ["u0", "a0", "a1", "a2"]
    faded = FairQueue(1, half_life=0.01)
    faded.failed("n")
    time.sleep(0.05)
    assert faded.score("n") < 0.1


def test_a_full_queue_makes_room_for_a_network_that_has_not_failed() -> None:
    async def body() -> list[str]:
        queue = FairQueue(1, capacity=3, per_network=4)
        for network in ("n1", "n2", "n3"):
            queue.failed(network)
        release = threading.Event()

        async def job(network: str) -> str:
            try:
                return await queue.run(network, lambda: network)
            except QueueFull:
                return f"refused {network}"

        blocker = asyncio.create_task(queue.run("x", release.wait, 10))
        await asyncio.sleep(0.05)
        # One check waiting per guessing network: no queue is longer than another ...
        tasks = [asyncio.create_task(job(n)) for n in ("n1", "n2", "n3")]
        await asyncio.sleep(0)
        # ... yet the quiet network's check takes the place of a guessing one's.
        tasks.append(asyncio.create_task(job("quiet")))
        await asyncio.sleep(0)
        release.set()
        await blocker
        return list(await asyncio.gather(*tasks))

    results = asyncio.run(body())
    assert results[-1] == "quiet"
    assert sum(r.startswith("refused") for r in results) == 1
