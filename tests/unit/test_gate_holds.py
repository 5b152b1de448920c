"""Held senders: the gate hears Rspamd's verdicts on submitted mail (Redis pub/sub, as
Rspamd's metadata_exporter publishes them), holds a login whose mail is mostly spam,
answers HOLD for it to Postfix, keeps the hold across restarts, and lifts it on request."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from roost.gate.control import GateControlError, held_senders, release_sender
from roost.gate.holds import CHANNEL, HELD_KEY, SenderHolds
from roost.gate.index import Index
from roost.gate.limiter import REDIS_DB
from roost.gate.socketmap import HELD
from roost.layout import Layout
from roost.settings import Settings
from roost.store.db import Store
from tests.unit.test_gate_support import (
    ALTERNATIVE,
    DOMAIN,
    GateHarness,
    make_settings,
    open_store,
    populate,
    redis_server,
    running_gate,
)

JOE = f"joe@{DOMAIN}"


def verdict(user: str, action: str, qid: str = "4ABC") -> str:
    return json.dumps({"user": user, "action": action, "score": 20.0, "qid": qid})


def held_in_redis(layout: Layout) -> dict[str, str]:
    client = redis.Redis(unix_socket_path=str(layout.redis_socket), db=REDIS_DB)
    try:
        raw = client.hgetall(HELD_KEY)
        return {k.decode(): v.decode() for k, v in raw.items()}  # type: ignore[union-attr]
    finally:
        client.close()


def holds_of(
    settings: Settings, index: Index, notices: list[tuple[str, str]] | None = None
) -> SenderHolds:
    """The gate's held senders, with notices collected in ``notices`` instead of mailed."""
    layout = Layout(settings)
    kept = notices if notices is not None else []
    return SenderHolds(
        settings,
        index,
        verdicts_socket=layout.rspamd_redis_socket,
        state_socket=layout.redis_socket,
        send_notice=lambda subject, body: kept.append((subject, body)),
    )


@pytest.fixture
def directory_store(tmp_path: Path) -> Iterator[tuple[Settings, Store]]:
    settings = make_settings(tmp_path, "127.0.4.60", SPAM_HOLD_RATE="3/hour")
    store = open_store(settings)
    populate(store)
    try:
        with redis_server(Layout(settings).redis_socket):
            yield settings, store
    finally:
        store.dispose()


def test_mostly_spam_holds_the_login_once_and_tells_the_postmaster(
    directory_store: tuple[Settings, Store],
) -> None:
    settings, store = directory_store
    layout = Layout(settings)
    notices: list[tuple[str, str]] = []

    async def scenario() -> None:
        index = Index(store)
        await index.load()
        holds = holds_of(settings, index, notices)
        try:
            # Spellings of one login count together; clean mail and undecided verdicts
            # do not make it spam; mail of logins that are not ours is not counted.
            await holds.verdict(verdict(JOE, "add header"), now=0.0)
            await holds.verdict(verdict(f"JOE@{ALTERNATIVE}", "reject"), now=1.0)
            await holds.verdict(verdict(JOE, "no action"), now=2.0)
            await holds.verdict(verdict(JOE, "soft reject"), now=3.0)
            await holds.verdict(verdict("stranger@remote.test", "reject"), now=4.0)
            await holds.verdict(b"not json at all", now=5.0)
            assert not holds.is_held(JOE)
            assert notices == []
            await holds.verdict(verdict(JOE, "rewrite subject", qid="4XYZ"), now=6.0)
            assert holds.is_held(JOE)
            # Further spam does not tell the postmaster again.
            await holds.verdict(verdict(JOE, "reject"), now=7.0)
            assert [entry.login for entry in holds.held()] == [JOE]
            assert (entry := holds.held()[0]).spam == 3 and entry.total == 4
            stored = json.loads(held_in_redis(layout)[JOE])
            assert (stored["spam"], stored["total"]) == (3, 4)

            # A new gate holds the login too.
            again = holds_of(settings, index)
            await again.load()
            assert again.is_held(JOE)
            released = await again.release(f"Joe@{ALTERNATIVE}")
            assert released is not None and released.login == JOE
            assert not again.is_held(JOE)
            assert held_in_redis(layout) == {}
            assert await again.release(JOE) is None
            await again.close()
        finally:
            await holds.close()

    asyncio.run(scenario())
    assert len(notices) == 1
    subject, body = notices[0]
    assert subject == f"Outgoing mail of {JOE} is held"
    prose = " ".join(body.split())
    assert "3 of the last 4 messages" in prose and "within 1 hour" in prose
    assert f"    roost hold release {JOE}\n" in body
    assert f"    roost hold release {JOE} --delete\n" in body
    assert max(len(line) for line in body.splitlines()) <= 78  # plain text, no encoding


def test_a_released_login_starts_its_count_over(directory_store: tuple[Settings, Store]) -> None:
    settings, store = directory_store

    async def scenario() -> None:
        index = Index(store)
        await index.load()
        holds = holds_of(settings, index)
        try:
            for second in range(3):
                await holds.verdict(verdict(JOE, "reject"), now=float(second))
            assert holds.is_held(JOE)
            await holds.release(JOE)
            await holds.verdict(verdict(JOE, "reject"), now=10.0)
            assert not holds.is_held(JOE)
        finally:
            await holds.close()

    asyncio.run(scenario())


def test_holding_off_holds_nobody_and_listens_to_nothing(
    directory_store: tuple[Settings, Store],
) -> None:
    settings, store = directory_store
    layout = Layout(settings)
    client = redis.Redis(unix_socket_path=str(layout.redis_socket), db=REDIS_DB)
    client.hset(HELD_KEY, JOE, json.dumps({"since": 0, "spam": 3, "total": 3}))
    client.close()
    off = make_settings(Path(settings.ROOT), "127.0.4.60", SPAM_HOLD_RATE="0/hour")

    async def scenario() -> None:
        index = Index(store)
        await index.load()
        holds = holds_of(off, index)
        try:
            await asyncio.wait_for(holds.run(), timeout=2)  # returns at once
            for second in range(10):
                await holds.verdict(verdict(JOE, "reject"), now=float(second))
            assert not holds.is_held(JOE)
        finally:
            await holds.close()

    asyncio.run(scenario())


# -- through the running gate: Rspamd's channel, the socketmaps, the control socket ---------


def published(gate: GateHarness, payload: str) -> int:
    client = redis.Redis(unix_socket_path=str(gate.layout.rspamd_redis_socket))
    try:
        return int(client.publish(CHANNEL, payload))  # type: ignore[arg-type]
    finally:
        client.close()


def test_the_gate_holds_from_rspamds_channel_and_answers_hold_to_postfix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="roost.gate")
    settings = make_settings(tmp_path, "127.0.4.61")
    # Rspamd's Redis starts after the gate: the gate subscribes once it is there.
    with (
        running_gate(tmp_path, "127.0.4.61", SPAM_HOLD_RATE="2/hour") as gate,
        redis_server(Layout(settings).rspamd_redis_socket),
    ):
        deadline = time.monotonic() + 10
        while published(gate, verdict("nobody@remote.test", "no action")) == 0:
            assert time.monotonic() < deadline, "the gate never subscribed"
            time.sleep(0.1)
        assert gate.lookup("senderrate", JOE) == "NOTFOUND "
        published(gate, verdict(JOE, "reject"))
        published(gate, verdict(f"joe@{ALTERNATIVE}", "add header"))
        deadline = time.monotonic() + 5
        while gate.lookup("senderrate", JOE) != f"OK {HELD}":
            assert time.monotonic() < deadline, "the login was not held"
            time.sleep(0.05)
        # Submissions under any spelling, and mail Dovecot sends for the user.
        assert gate.lookup("senderrate", f"JOE@{ALTERNATIVE}") == f"OK {HELD}"
        assert gate.lookup("mailfromrate", f"joe+list@{DOMAIN}") == f"OK {HELD}"
        assert gate.lookup("senderrate", f"fwd@{DOMAIN}") == "NOTFOUND "
        [entry] = held_senders(gate.layout)
        assert (entry.login, entry.spam, entry.total) == (JOE, 2, 2)
        assert "sender held: " + JOE in caplog.text
        # No Postfix here: the notice fails, and says so.
        assert f"cannot tell the postmaster that {JOE} is held" in caplog.text
        released = release_sender(gate.layout, f"joe@{ALTERNATIVE}")
        assert released is not None and released.login == JOE
        assert gate.lookup("senderrate", JOE) == "NOTFOUND "
        assert held_senders(gate.layout) == []
        assert release_sender(gate.layout, JOE) is None


def test_the_hold_commands_need_a_running_gate(tmp_path: Path) -> None:
    layout = Layout(make_settings(tmp_path, "127.0.4.251"))
    with pytest.raises(GateControlError, match="is Roost running"):
        held_senders(layout)
