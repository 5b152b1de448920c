"""Rate-limit storage: Mailu's Redis layout, moving windows, and the fallback when Redis is down."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from roost.core.ratelimit import Rate
from roost.gate.limiter import (
    AuthLimiter,
    Budget,
    MemoryCounters,
    RedisCounters,
    RefusalKeys,
    Stage,
)
from tests.unit.test_gate_support import (
    DOMAIN,
    make_settings,
    redis_server,
    running_gate,
)


@pytest.fixture
def redis_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "r.sock"
    with redis_server(path):
        yield path


def db2(path: Path) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(path), db=2, decode_responses=True)


def run_with(limiter: AuthLimiter, body: Callable[[AuthLimiter], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        try:
            return await body(limiter)
        finally:
            await limiter.close()

    return asyncio.run(go())


def limiter_for(tmp_path: Path, socket_path: Path, **overrides: Any) -> AuthLimiter:
    settings = make_settings(tmp_path, "127.0.4.5", **overrides)
    return AuthLimiter(settings, socket_path, retry_interval=0.2, timeout=0.5)


# -- storage layout (the FAQ's manual unblock must keep working) ---------------------------------


def test_keys_follow_mailus_layout(tmp_path: Path, redis_socket: Path) -> None:
    async def body(limiter: AuthLimiter) -> None:
        await limiter.fail_unknown("192.0.2.7", "ghost@example.test")
        await limiter.fail_user(f"joe@{DOMAIN}", "198.51.100.3", "abc123")
        await limiter.succeeded("203.0.113.9", f"joe@{DOMAIN}")
        await limiter.fail_user(f"joe@{DOMAIN}", "203.0.113.10", "def456")

    run_with(limiter_for(tmp_path, redis_socket), body)
    client = db2(redis_socket)
    assert sorted(client.keys("*")) == sorted(
        [
            "LIMITER/auth-ip/192.0.2.0/24/5/3600",
            "dedup-192.0.2.0/24-ghost@example.test",
            "LIMITER/auth-user/joe@example.test/3/86400",
            "dedup2-joe@example.test-abc123",
            "LIMITER/auth-ip/198.51.100.0/24/5/3600",
            f"dedup-198.51.100.0/24-joe@{DOMAIN}",
            f"trusted-203.0.113.0/24-joe@{DOMAIN}",
            # From the trusted network a wrong password counts against the pair, not the
            # network.
            "dedup2-joe@example.test-def456",
            f"LIMITER/auth-trusted/203.0.113.0/24/joe@{DOMAIN}/5/3600",
        ]
    )
    assert client.type("LIMITER/auth-ip/192.0.2.0/24/5/3600") == "list"
    assert 0 < client.ttl("dedup-192.0.2.0/24-ghost@example.test") <= 3600
    assert 86000 < client.ttl(f"trusted-203.0.113.0/24-joe@{DOMAIN}") <= 86400
    client.close()


def test_deleting_the_network_keys_unblocks_it(tmp_path: Path, redis_socket: Path) -> None:
    async def exhaust(limiter: AuthLimiter) -> bool:
        for n in range(5):
            await limiter.fail_unknown(f"192.0.2.{n + 1}", f"ghost{n}")
        return await limiter.refusal("192.0.2.100", None) is not None

    assert run_with(limiter_for(tmp_path, redis_socket), exhaust)
    client = db2(redis_socket)
    for key in client.scan_iter("LIMITER/auth-ip/192.0.2.0/24/*"):  # Mailu's FAQ unblock
        client.delete(key)
    client.close()

    async def check(limiter: AuthLimiter) -> bool:
        return await limiter.refusal("192.0.2.100", None) is not None

    assert not run_with(limiter_for(tmp_path, redis_socket), check)


def test_ipv6_clients_are_counted_per_48(tmp_path: Path, redis_socket: Path) -> None:
    async def body(limiter: AuthLimiter) -> tuple[bool, bool, bool]:
        for n in range(5):
            await limiter.fail_unknown(f"2001:db8:1:{n}::1", f"ghost{n}")
        return (
            (await limiter.refusal("2001:db8:1:ffff::9", None) is not None),
            (await limiter.refusal("[2001:db8:1::2]", None) is not None),
            (await limiter.refusal("2001:db8:2::1", None) is not None),
        )

    assert run_with(limiter_for(tmp_path, redis_socket), body) == (True, True, False)


def test_message_budget_counts_messages_that_fit_only(tmp_path: Path, redis_socket: Path) -> None:
    async def body(limiter: AuthLimiter) -> list[bool]:
        # A trusted login says nothing about the message budget.
        await limiter.succeeded("203.0.113.9", f"joe@{DOMAIN}")
        return [await limiter.message_allowed(f"joe@{DOMAIN}") for _ in range(4)]

    limiter = limiter_for(tmp_path, redis_socket, MESSAGE_RATELIMIT="2/minute")
    assert run_with(limiter, body) == [True, True, False, False]
    client = db2(redis_socket)
    window = f"LIMITER/sender/joe@{DOMAIN}/2/60"
    assert client.llen(window) == 2  # refused messages took no place
    assert 0 < client.ttl(window) <= 60
    client.close()


# -- the moving window, the same in Redis and in memory ------------------------------------------


@pytest.mark.parametrize("kind", ["redis", "memory"])
def test_moving_window_semantics(redis_socket: Path, kind: str) -> None:
    rate = Rate(3, 10)

    async def body() -> None:
        counters: Any = RedisCounters(redis_socket) if kind == "redis" else MemoryCounters()
        stage = Stage(None, "LIMITER/test/w/3/10", rate)
        keys = RefusalKeys("", "", stage.window, "")

        async def full(now: float) -> bool:
            return (await counters.refusal(keys, rate, rate, now))[0] == 1

        t0 = 1_000_000.0
        assert not await full(t0)
        assert await counters.hit("exempt-x", (stage,), t0) == 1
        assert await counters.hit("exempt-x", (stage,), t0 + 4) == 1
        assert not await full(t0 + 5)
        assert await counters.hit("exempt-x", (stage,), t0 + 6) == 1
        assert await full(t0 + 9)
        # A full window takes no more hits (so a blocked client cannot extend it) ...
        assert await counters.hit("exempt-x", (stage,), t0 + 9) == 0
        # ... and frees up as its oldest hit ages out: moving, not fixed, windows.
        assert not await full(t0 + 10.5)
        # Dedup markers stop the chain: the second stage is not hit for a repeat.
        first = Stage("dedup-a", "LIMITER/test/a/3/10", rate)
        second = Stage("dedup-b", "LIMITER/test/b/3/10", rate)
        now = time.time()
        assert await counters.hit("exempt-x", (first, second), now) == 2
        assert await counters.hit("exempt-x", (first, second), now) == 0
        # An exempt marker counts nothing.
        await counters.mark("exempt-y", 60, now)
        assert await counters.exists("exempt-y", now)
        assert await counters.hit("exempt-y", (Stage(None, "LIMITER/test/c/3/10", rate),), now) == 0
        if kind == "memory":  # Redis expires by its own clock
            assert not await counters.exists("exempt-y", now + 61)
        if kind == "redis":
            await counters.close()

    asyncio.run(body())


def test_zero_budget_blocks_everyone_but_exempt_addresses(
    tmp_path: Path, redis_socket: Path
) -> None:
    async def body(limiter: AuthLimiter) -> tuple[Budget | None, ...]:
        return (
            await limiter.refusal("192.0.2.2", None),
            await limiter.refusal("198.51.100.1", f"joe@{DOMAIN}"),
        )

    limiter = limiter_for(
        tmp_path,
        redis_socket,
        AUTH_RATELIMIT_IP="0/hour",
        AUTH_RATELIMIT_EXEMPTION=("198.51.100.0/24",),
    )
    assert run_with(limiter, body) == (Budget.NETWORK, None)


# -- Redis unreachable ---------------------------------------------------------------------------


def test_without_redis_limits_are_kept_in_memory_and_redis_is_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="roost.gate")
    socket_path = tmp_path / "later.sock"
    limiter = limiter_for(tmp_path, socket_path)

    async def down(limiter: AuthLimiter) -> None:
        for n in range(5):
            await limiter.fail_unknown(f"192.0.2.{n + 1}", f"ghost{n}")
        assert limiter.in_memory
        assert await limiter.refusal("192.0.2.50", None) is not None
        assert not (await limiter.refusal("198.51.100.1", None) is not None)

    async def body(limiter: AuthLimiter) -> None:
        await down(limiter)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "Redis unreachable" in warnings[0].getMessage()
        with redis_server(socket_path):
            await asyncio.sleep(0.3)  # past the retry interval
            await limiter.fail_unknown("203.0.113.1", "ghost")
            assert not limiter.in_memory
            client = db2(socket_path)
            assert client.exists("LIMITER/auth-ip/203.0.113.0/24/5/3600")
            client.close()
        # Redis goes away while in use: the next call falls back again, with a warning.
        await limiter.fail_unknown("203.0.113.2", "ghost2")
        assert limiter.in_memory

    run_with(limiter, body)
    texts = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [t.split(" ")[0] for t in texts] == ["Redis", "Redis", "Redis"]
    assert "reachable again" in texts[1]


def test_a_gate_without_redis_still_logs_in_and_limits(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with running_gate(tmp_path_factory.mktemp("noredis"), "127.0.4.4", redis=False) as gate:
        answer = gate.auth(f"joe@{DOMAIN}", "joe-secret", ip="198.51.100.1")
        assert answer["Auth-Status"] == "OK"
        for n in range(5):
            gate.auth(f"ghost{n}@{DOMAIN}", "guess", ip=f"192.0.2.{n + 1}")
        limited = gate.auth(f"joe@{DOMAIN}", "joe-secret", ip="192.0.2.9")
        assert limited["Auth-Status"] == "Temporary authentication failure (rate-limit)"
        health = json.loads(gate.get("/health")[2])
        assert health["rate_limits"] == "memory"


def test_memory_counters_forget_expired_entries_under_a_flood() -> None:
    counters = MemoryCounters(sweep_at=100)
    rate = Rate(5, 10)

    async def flood(start: int, now: float) -> None:
        for n in range(start, start + 300):
            await counters.hit("exempt-x", (Stage(f"dedup-{n}", f"w{n}", rate),), now)

    asyncio.run(flood(0, 1000.0))
    assert len(counters._expiry) == 600  # all live: nothing to drop
    asyncio.run(flood(300, 2000.0))  # much later: the first flood has expired
    assert all(expiry > 2000.0 for expiry in counters._expiry.values())
    assert len(counters._windows) <= 300


@pytest.mark.parametrize("kind", ["redis", "memory"])
def test_one_step_refusal_decides_alike_in_redis_and_memory(redis_socket: Path, kind: str) -> None:
    """The whole refusal rule of AuthLimiter.refusal, as Redis's script and memory run it."""
    rate = Rate(2, 60)
    trusted = RefusalKeys("trusted-x", "LIMITER/t/pair", "LIMITER/t/net", "LIMITER/t/acct")
    stranger = RefusalKeys("", "", "LIMITER/t/net", "LIMITER/t/acct")
    nobody = RefusalKeys("", "", "LIMITER/t/net", "")

    async def body() -> list[int]:
        counters: Any = RedisCounters(redis_socket) if kind == "redis" else MemoryCounters()
        now = time.time()

        async def fill(window: str) -> None:
            for _ in range(rate.amount):
                await counters.hit("", (Stage(None, window, rate),), now)

        async def code(keys: RefusalKeys) -> int:
            return int((await counters.refusal(keys, rate, rate, now))[0])

        answers = [await code(stranger)]  # nothing spent: 0
        await fill("LIMITER/t/net")
        answers.append(await code(stranger))  # network: 1
        answers.append(await code(nobody))  # no account: 1
        await counters.mark("trusted-x", 60, now)
        answers.append(await code(trusted))  # owner's network: 0
        await fill("LIMITER/t/acct")
        answers.append(await code(trusted))  # pair still open: 0
        await fill("LIMITER/t/pair")
        answers.append(await code(trusted))  # both spent: 2
        if kind == "redis":
            await counters.close()
        return answers

    assert asyncio.run(body()) == [0, 1, 1, 0, 0, 2]


def test_a_fresh_trust_is_not_written_again(tmp_path: Path, redis_socket: Path) -> None:
    """Logins soon after the trust was set skip the write; later ones, or a trust that
    vanished (Redis restarted, keys deleted), set it again."""
    key = f"trusted-203.0.113.0/24-joe@{DOMAIN}"
    joe = f"joe@{DOMAIN}"
    client = db2(redis_socket)

    async def body(limiter: AuthLimiter) -> list[tuple[bool, int]]:
        seen = []
        for _ in range(2):
            check = await limiter.login_check("203.0.113.10", joe)
            seen.append((check.trust_fresh, int(client.ttl(key))))
            await limiter.succeeded("203.0.113.10", joe, renew=not check.trust_fresh)
        client.expire(key, 86400 - 61)  # set a little more than the interval ago
        check = await limiter.login_check("203.0.113.10", joe)
        seen.append((check.trust_fresh, 0))
        client.delete(key)
        check = await limiter.login_check("203.0.113.10", joe)
        seen.append((check.trust_fresh, 0))
        await limiter.succeeded("203.0.113.10", joe, renew=not check.trust_fresh)
        seen.append((True, int(client.exists(key))))
        return seen

    limiter = limiter_for(tmp_path, redis_socket)
    assert limiter.renew_interval == 60.0  # a hundredth of the default trust length, a day
    first, second, older, gone, again = run_with(limiter, body)
    assert first == (False, -2)  # no trust yet: the login sets it
    assert second[0] is True and 86400 - 60 < second[1] <= 86400
    assert older == (False, 0)
    assert gone == (False, 0)
    assert again == (True, 1)
    client.close()
