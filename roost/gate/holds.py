"""Held senders: logins whose submitted mail is mostly spam, and whose further mail waits.

Rspamd publishes its verdict on every message an authenticated login submits (its
``metadata_exporter`` module, ``redis_pubsub`` backend: login, action, score, queue ID;
``roost/services/rspamd/templates/metadata_exporter.conf.j2``) on :data:`CHANNEL` of
Rspamd's own Redis. The gate subscribes, counts each login's verdicts under its
canonical address (:mod:`roost.core.spamhold`), and when the rule is met:

* marks the login held, in memory and in the gate's Redis (the hash :data:`HELD_KEY` in
  db 2, beside the rate limits), so a restarted gate still holds it;
* answers ``HOLD`` for it from then on in the ``senderrate`` and ``mailfromrate``
  socketmaps (``roost/gate/socketmap.py``), which Postfix asks at DATA for every submitted
  message and every message Dovecot sends: the message is accepted and waits in Postfix's
  hold queue (access(5) ``HOLD``), so the sender learns nothing and no spam leaves;
* logs a warning and mails POSTMASTER@DOMAIN what happened and how to release the login
  (``roost hold release``, over the control socket).

Verdicts published while the gate is away are lost (Redis pub/sub keeps nothing); the
counts restart with the gate, the held logins do not. Mail from outside is never
published, so no stranger's mail can make one of our users held.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from roost import mailout
from roost.core.spamhold import HoldRule, Tally, VerdictWindows, is_spam_action
from roost.gate.index import Index
from roost.gate.limiter import REDIS_DB
from roost.settings import Settings

__all__ = ["CHANNEL", "HELD_KEY", "Held", "SenderHolds", "notice"]

log = logging.getLogger("roost.gate")

#: The Rspamd Redis channel the verdicts on submitted mail are published on.
CHANNEL = "roost.submission-verdicts"
#: The gate Redis hash of held logins: canonical address -> JSON of :class:`Held`.
HELD_KEY = "ROOST/held-senders"
#: Seconds before a Redis that cannot be reached is retried.
RETRY_INTERVAL = 5.0
#: Seconds Rspamd's Redis may be away (it starts after the gate) before a warning.
WARN_AFTER = 30.0
_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class Held:
    """A held login: since when (Unix time), and the tally that held it."""

    login: str
    since: float
    spam: int
    total: int

    def to_json(self) -> str:
        return json.dumps({"since": self.since, "spam": self.spam, "total": self.total})

    @classmethod
    def from_json(cls, login: str, text: str | bytes) -> Held:
        data = json.loads(text)
        return cls(login, float(data["since"]), int(data["spam"]), int(data["total"]))


def notice(settings: Settings, held: Held, rule: HoldRule) -> tuple[str, str]:
    """The subject and text of the postmaster's notice of a newly held login."""
    login = held.login
    why = (
        f"{held.spam} of the last {held.total} messages that {login} sent within "
        f"{_period(rule.seconds)} were scored as spam by Rspamd (SPAM_HOLD_RATE "
        f"{settings.SPAM_HOLD_RATE}, SPAM_HOLD_RATIO {settings.SPAM_HOLD_RATIO} %). Its "
        "password may be known to someone else."
    )
    meanwhile = (
        "Until you release it, every further message it sends is accepted but waits in "
        "Postfix's hold queue: nothing of it leaves this server."
    )
    body = "\n\n".join(
        [
            textwrap.fill(why, 72),
            textwrap.fill(meanwhile, 72),
            "What to do:\n"
            "- ask the owner, and change the password (roost password ...)\n"
            "- see the held logins and their waiting messages:\n"
            "    roost hold list\n"
            "- send the waiting mail and lift the hold:\n"
            f"    roost hold release {login}\n"
            "- or delete the waiting mail and lift the hold:\n"
            f"    roost hold release {login} --delete\n",
        ]
    )
    return f"Outgoing mail of {login} is held", body


def _period(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


def _client(socket_path: Path, db: int = 0, timeout: float | None = _TIMEOUT) -> aioredis.Redis:
    return aioredis.Redis(
        unix_socket_path=str(socket_path),
        db=db,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )


class SenderHolds:
    """Listens to Rspamd's verdicts, holds logins by the rule, answers who is held."""

    def __init__(
        self,
        settings: Settings,
        index: Index,
        *,
        verdicts_socket: Path,
        state_socket: Path,
        send_notice: Callable[[str, str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.rule = HoldRule.parse(settings.SPAM_HOLD_RATE, settings.SPAM_HOLD_RATIO)
        self._index = index
        self._windows = VerdictWindows(self.rule)
        self._held: dict[str, Held] = {}
        self._verdicts_socket = verdicts_socket
        self._state = _client(state_socket, db=REDIS_DB)
        self._send_notice = send_notice or self._mail_postmaster

    # -- what the socketmaps and the control socket ask ------------------------------------
    def is_held(self, login: str) -> bool:
        """True when ``login`` (a canonical address) is held."""
        return login in self._held

    def held(self) -> list[Held]:
        return sorted(self._held.values(), key=lambda held: held.since)

    async def release(self, login: str) -> Held | None:
        """Lift the hold on ``login`` (any spelling of a user's address); what it was, or
        None when it was not held. Its count starts over."""
        user = self._index.directory.user(login)
        key = user.email if user is not None else login.strip().lower()
        held = self._held.pop(key, None)
        self._windows.forget(key)
        try:
            await self._state.hdel(HELD_KEY, key)
        except (RedisError, OSError) as exc:
            log.error("cannot remove %s from the held senders in Redis: %s", key, exc)
        if held is not None:
            log.warning("sender released: %s (held since %s)", key, _when(held.since))
        return held

    # -- state ------------------------------------------------------------------------------
    async def load(self) -> None:
        """Read the held logins a previous gate left in Redis; retried until Redis answers
        (the gate's Redis starts before the gate, so this is normally at once; the gate
        serves meanwhile)."""
        warned = False
        while True:
            try:
                stored = await self._state.hgetall(HELD_KEY)
                break
            except (RedisError, OSError) as exc:
                if not warned:
                    log.warning("cannot read the held senders from Redis (%s); retrying", exc)
                    warned = True
                await asyncio.sleep(RETRY_INTERVAL)
        for raw_login, raw in stored.items():
            login = str(raw_login)
            try:
                self._held[login] = Held.from_json(login, raw)
            except (ValueError, KeyError, TypeError) as exc:
                log.error(
                    "held sender %s: unreadable entry in Redis (%s); keeping it held", login, exc
                )
                self._held[login] = Held(login, time.time(), 0, 0)
        if self._held:
            log.warning("held senders (roost hold list): %s", ", ".join(sorted(self._held)))

    async def _hold(self, login: str, tally: Tally, qid: str) -> None:
        held = Held(login, time.time(), tally.spam, tally.total)
        self._held[login] = held
        log.warning(
            "sender held: %s: %d of %d messages scored as spam within %s (last queue ID %s); "
            "its further mail waits in the hold queue until 'roost hold release %s'",
            login,
            tally.spam,
            tally.total,
            _period(self.rule.seconds),
            qid or "unknown",
            login,
        )
        try:
            await self._state.hset(HELD_KEY, login, held.to_json())
        except (RedisError, OSError) as exc:
            log.error(
                "cannot keep the hold on %s in Redis (%s): a restart will lift it", login, exc
            )
        subject, body = notice(self.settings, held, self.rule)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self._send_notice, subject, body)
        except Exception as exc:
            log.error(
                "cannot tell the postmaster that %s is held: %s (POSTMASTER@DOMAIN must be "
                "a user or an alias)",
                login,
                exc,
            )

    def _mail_postmaster(self, subject: str, body: str) -> None:
        postmaster = mailout.sender_of(self.settings)
        report = mailout.send_all(self.settings, [postmaster], subject, body)
        if report.failed:
            raise RuntimeError("; ".join(f"{who}: {why}" for who, why in report.failed))

    # -- verdicts ---------------------------------------------------------------------------
    async def verdict(self, payload: bytes | str, now: float | None = None) -> None:
        """Count one published verdict; hold its login when the rule says so."""
        try:
            data = json.loads(payload)
            login, action = str(data["user"]), str(data["action"])
            qid = str(data.get("qid", ""))
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a verdict from Rspamd that is not understood: %.200r", payload)
            return
        spam = is_spam_action(action)
        user = self._index.directory.user(login)
        if spam is None or user is None:
            return
        tally = self._windows.record(user.email, spam, time.time() if now is None else now)
        if tally is not None and user.email not in self._held:
            await self._hold(user.email, tally, qid)

    async def run(self) -> None:
        """Read the held logins, then listen to Rspamd's verdicts, forever (cancel the task
        to stop). Nothing at all when SPAM_HOLD_RATE turns holding off: then nobody is
        held, whatever Redis still lists."""
        if not self.rule.enabled:
            return
        await self.load()
        await self.listen()

    async def listen(self) -> None:
        """Subscribe to Rspamd's verdicts and count them, forever; resubscribe after
        Rspamd's Redis goes away."""
        away_since: float | None = None
        warned = False
        while True:
            client = _client(self._verdicts_socket, timeout=None)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                if warned:
                    log.info("listening to Rspamd's verdicts again")
                away_since, warned = None, False
                while True:
                    message = await pubsub.get_message(timeout=30.0)
                    if message is not None and message.get("type") == "message":
                        await self.verdict(message["data"])
            except (RedisError, OSError) as exc:
                now = time.monotonic()
                away_since = away_since or now
                if not warned and now - away_since >= WARN_AFTER:
                    log.warning("cannot hear Rspamd's verdicts (its Redis: %s); retrying", exc)
                    warned = True
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()
            await asyncio.sleep(RETRY_INTERVAL if warned else 1.0)

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._state.aclose()


def _when(since: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(since))
