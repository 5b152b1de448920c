"""Authentication rate limits: moving windows in Redis, with an in-process fallback.

The budgets are Mailu's (``core/admin/mailu/limiter.py``, settings AUTH_RATELIMIT_*), with
the changes that keep an attacker from turning them against a user:

* per client network (``auth-ip``, AUTH_RATELIMIT_IP, the address masked to
  AUTH_RATELIMIT_IP_V4_MASK / _V6_MASK bits): one hit per *distinct* username that failed
  from the network within the window. AUTH attempts on port 25 (where nginx offers no
  AUTH) are refused by the gate and spend nothing here;
* per account (``auth-user``, AUTH_RATELIMIT_USER): one hit per *distinct* wrong password.
  When it is spent, the account is closed to password logins from every network *except*
  those it logged in from successfully within AUTH_RATELIMIT_EXEMPTION_LENGTH: a guesser
  elsewhere cannot lock the owner out of the places the owner uses;
* per trusted pair (``auth-trusted``, AUTH_RATELIMIT_IP's rate): a good login marks the
  pair (client network, account) as trusted for AUTH_RATELIMIT_EXEMPTION_LENGTH seconds
  (Mailu marks the bare address, which then guesses at *every* account without limit). A
  login for that account from that network skips the network budget and the account
  budget; it is refused only when both the account budget and the pair's own window of
  distinct wrong passwords are spent, so whoever shares the owner's network still gets no
  more than that many guesses.

Addresses in AUTH_RATELIMIT_EXEMPTION are never limited and their failures never count.

A fourth window is not about logins: outbound messages per authenticated sender
(``sender``, MESSAGE_RATELIMIT), asked by Postfix through the gate's ``senderrate``
socketmap. Each message that fits takes one place in the window; one that does not is
refused and takes none, as the ``limits`` library's moving window does for Mailu.

Storage follows Mailu's Redis layout (db 2), so Mailu's documented manual unblock --
delete ``LIMITER/auth-ip/<network>/*`` -- works: windows are lists of hit times under
``LIMITER/<namespace>/<key>/<amount>/<seconds>`` (newest first, trimmed to ``amount``, as
the ``limits`` library's moving window keeps them); deduplication markers are
``dedup-<network>-<user>`` and ``dedup2-<user>-<fingerprint>``; trusted pairs
``trusted-<network>-<user>``.

The ``limits`` library itself is not used: its Redis storage always prefixes keys with
``<prefix>:``, which breaks the ``LIMITER/...`` layout above, and the deduplication and
trust markers are outside its model. One Lua script per hit (dedup-and-hit across the
budgets) keeps a failure one atomic round trip, and one script per login check
(:meth:`AuthLimiter.login_check`) keeps a login's question one round trip; a good login
renews its pair's trust only when the trust is more than a minute old.

Redis is an optimisation of where counters live, never a condition for logging in: when it
cannot be reached the limiter logs one warning, keeps counting in this process (the same
algorithm), retries Redis every few seconds and logs again when it is back. Counts made in
the meantime stay in memory only.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from roost.core.ratelimit import Rate, client_network, is_exempt, parse_rate
from roost.gate.resp import RedisConnection, ReplyError, Script
from roost.settings import Settings

__all__ = [
    "NO_EXEMPTION",
    "REDIS_DB",
    "AuthLimiter",
    "Budget",
    "LoginCheck",
    "MemoryCounters",
    "RedisCounters",
    "RefusalKeys",
    "Stage",
]

log = logging.getLogger("roost.gate")

#: Mailu keeps rate limits in Redis database 2 (its ``RATELIMIT_STORAGE_URL``).
REDIS_DB = 2
#: Seconds one Redis operation may take before the limiter falls back to memory.
REDIS_TIMEOUT = 0.5
#: Seconds between attempts to get back to Redis while counting in memory.
RETRY_INTERVAL = 5.0
#: Longest time between two renewals of a trusted pair's marker by repeated logins.
MAX_RENEW_INTERVAL = 60.0
#: The exemption marker of a check or hit that has none: nothing ever sets it.
NO_EXEMPTION = ""
#: What a Redis call raises when Redis cannot answer (ConnectionError is an OSError).
_UNAVAILABLE = (ReplyError, OSError, TimeoutError)


class Budget(enum.Enum):
    """Which budget refused a login."""

    NETWORK = "network"
    ACCOUNT = "account"


@dataclass(frozen=True, slots=True)
class Stage:
    """One budget a failure counts against: optional dedup marker, then a window hit.

    When the marker already exists the failure was counted before, and the chain stops
    (Mailu: a repeated wrong password counts neither against the user nor the network).
    """

    dedup: str | None
    window: str
    rate: Rate


@dataclass(frozen=True, slots=True)
class RefusalKeys:
    """The keys one login's budgets live under; "" for those that do not apply."""

    trust: str
    pair_window: str
    network_window: str
    account_window: str


@dataclass(frozen=True, slots=True)
class LoginCheck:
    """What :meth:`AuthLimiter.login_check` found."""

    #: the budget that refuses the login; None: go ahead
    budget: Budget | None
    #: the (network, account) trust was set less than ``renew_interval`` seconds ago
    trust_fresh: bool


#: RefusalKeys' answer codes -> the budget that refuses
_REFUSAL_CODES: dict[int, Budget | None] = {0: None, 1: Budget.NETWORK, 2: Budget.ACCOUNT}


class Counters(Protocol):
    """Where windows and markers live; both implementations share these semantics."""

    async def exists(self, key: str, now: float) -> bool:
        """True while marker ``key`` is set."""
        ...

    async def refusal(
        self, keys: RefusalKeys, ip_rate: Rate, user_rate: Rate, now: float
    ) -> tuple[int, float]:
        """The budget that refuses a login (:data:`_REFUSAL_CODES`) and the seconds the
        trust has left (-1: none), in one step."""
        ...

    async def hit(self, exempt: str, stages: tuple[Stage, ...], now: float) -> int:
        """Record a failure through ``stages``; returns how many windows were hit."""
        ...

    async def mark(self, key: str, ttl: int, now: float) -> None:
        """Set marker ``key`` for ``ttl`` seconds (renewing it)."""
        ...


# Lua keeps each decision atomic and one round trip (Redis EVAL; scripts are cached by SHA).
# AuthLimiter.refusal's decision: 0 go ahead, 1 the network's budget
# refuses, 2 the account's. An empty key name stands for "no such key" (no account, or
# trust switched off).
_REFUSAL = """
local now = tonumber(ARGV[1])
local function full(window, amount, seconds)
  if amount <= 0 then return true end
  local entry = redis.call('lindex', window, amount - 1)
  return entry and tonumber(entry) > now - seconds
end
local ip_amount, ip_seconds = tonumber(ARGV[2]), tonumber(ARGV[3])
local user_amount, user_seconds = tonumber(ARGV[4]), tonumber(ARGV[5])
local trust, pair, network, account = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local left = -1
if trust ~= '' then left = redis.call('ttl', trust) end
if left >= 0 then
  if full(pair, ip_amount, ip_seconds) and full(account, user_amount, user_seconds) then
    return {2, left}
  end
  return {0, left}
end
if full(network, ip_amount, ip_seconds) then return {1, -1} end
if account ~= '' and full(account, user_amount, user_seconds) then return {2, -1} end
return {0, -1}
"""

_HIT = """
if redis.call('exists', KEYS[1]) == 1 then return 0 end
local now = tonumber(ARGV[1])
local hits = 0
for i = 0, (#KEYS - 1) / 2 - 1 do
  local dedup, window = KEYS[2 + 2 * i], KEYS[3 + 2 * i]
  local ttl = tonumber(ARGV[2 + 3 * i])
  local amount = tonumber(ARGV[3 + 3 * i])
  local seconds = tonumber(ARGV[4 + 3 * i])
  if ttl > 0 and not redis.call('set', dedup, '1', 'NX', 'EX', ttl) then return hits end
  if amount > 0 then
    local entry = redis.call('lindex', window, amount - 1)
    if not entry or tonumber(entry) <= now - seconds then
      redis.call('lpush', window, ARGV[1])
      redis.call('ltrim', window, 0, amount - 1)
      redis.call('expire', window, seconds)
      hits = hits + 1
    end
  end
end
return hits
"""


class RedisCounters:
    """Counters in the stack's Redis (unix socket, db 2), over one pipelined connection
    (:mod:`roost.gate.resp`). It fails fast: the limiter's fallback is the retry."""

    def __init__(self, socket_path: Path, timeout: float = REDIS_TIMEOUT) -> None:
        self.client = RedisConnection(socket_path, REDIS_DB, timeout)
        self._hit = Script(self.client, _HIT)
        self._refusal = Script(self.client, _REFUSAL)

    async def ping(self) -> None:
        await self.client.call("PING")

    async def exists(self, key: str, now: float) -> bool:
        return bool(await self.client.call("EXISTS", key))

    async def refusal(
        self, keys: RefusalKeys, ip_rate: Rate, user_rate: Rate, now: float
    ) -> tuple[int, float]:
        args: list[str | int] = [
            repr(now),
            ip_rate.amount,
            ip_rate.seconds,
            user_rate.amount,
            user_rate.seconds,
        ]
        code, left = await self._refusal(
            keys=[keys.trust, keys.pair_window, keys.network_window, keys.account_window],
            args=args,
        )
        return int(code), float(left)

    async def hit(self, exempt: str, stages: tuple[Stage, ...], now: float) -> int:
        keys = [exempt]
        args: list[str | int] = [repr(now)]
        for stage in stages:
            keys += [stage.dedup or stage.window, stage.window]
            args += [
                stage.rate.seconds if stage.dedup else 0,
                stage.rate.amount,
                stage.rate.seconds,
            ]
        return int(await self._hit(keys=keys, args=args))

    async def mark(self, key: str, ttl: int, now: float) -> None:
        await self.client.call("SET", key, 1, "EX", ttl)

    async def close(self) -> None:
        await self.client.close()


class MemoryCounters:
    """The same counters in this process, for when Redis cannot be reached.

    Times are the caller's clock (wall-clock, like Redis's entries). Expired entries are
    dropped as they are met and in a sweep whenever the tables grow past ``sweep_at``
    entries, so a flood of distinct usernames cannot grow memory without bound for longer
    than one window.
    """

    def __init__(self, sweep_at: int = 50_000) -> None:
        self._windows: dict[str, deque[float]] = {}
        self._expiry: dict[str, float] = {}  # window and marker key -> expiry time
        self._sweep_at = sweep_at
        self._next_sweep = sweep_at

    def _alive(self, key: str, now: float) -> bool:
        expires = self._expiry.get(key)
        if expires is None:
            return False
        if expires <= now:
            del self._expiry[key]
            self._windows.pop(key, None)
            return False
        return True

    def _sweep(self, now: float) -> None:
        if len(self._expiry) < self._next_sweep:
            return
        for key in [k for k, t in self._expiry.items() if t <= now]:
            self._alive(key, now)
        # While every entry is still live, sweep again only after the tables have doubled:
        # a sweep per call would make a flood quadratic.
        self._next_sweep = max(self._sweep_at, 2 * len(self._expiry))

    def _full(self, window: str, rate: Rate, now: float) -> bool:
        if rate.amount <= 0:
            return True
        if not self._alive(window, now):
            return False
        hits = self._windows.get(window)
        if hits is None or len(hits) < rate.amount:
            return False
        return hits[rate.amount - 1] > now - rate.seconds

    async def exists(self, key: str, now: float) -> bool:
        return self._alive(key, now)

    async def refusal(
        self, keys: RefusalKeys, ip_rate: Rate, user_rate: Rate, now: float
    ) -> tuple[int, float]:
        if keys.trust and self._alive(keys.trust, now):
            left = self._expiry[keys.trust] - now
            pair_spent = self._full(keys.pair_window, ip_rate, now)
            spent = pair_spent and self._full(keys.account_window, user_rate, now)
            return (2 if spent else 0), left
        if self._full(keys.network_window, ip_rate, now):
            return 1, -1
        if keys.account_window and self._full(keys.account_window, user_rate, now):
            return 2, -1
        return 0, -1

    async def hit(self, exempt: str, stages: tuple[Stage, ...], now: float) -> int:
        self._sweep(now)
        if exempt and self._alive(exempt, now):
            return 0
        hits = 0
        for stage in stages:
            if stage.dedup is not None:
                if self._alive(stage.dedup, now):
                    return hits
                self._expiry[stage.dedup] = now + stage.rate.seconds
            if stage.rate.amount > 0 and not self._full(stage.window, stage.rate, now):
                window = self._windows.get(stage.window)
                if window is None or not self._alive(stage.window, now):
                    window = self._windows[stage.window] = deque(maxlen=stage.rate.amount)
                window.appendleft(now)
                self._expiry[stage.window] = now + stage.rate.seconds
                hits += 1
        return hits

    async def mark(self, key: str, ttl: int, now: float) -> None:
        self._sweep(now)
        self._expiry[key] = now + ttl

    def clear(self) -> None:
        self._windows.clear()
        self._expiry.clear()
        self._next_sweep = self._sweep_at


class AuthLimiter:
    """The login budgets, their trusted pairs and the outbound message budget, over Redis
    or, when it is down, memory.

    ``clock`` gives the wall-clock time of every hit and check (tests pass a fake one);
    ``use_redis=False`` keeps everything in memory from the start.
    """

    def __init__(
        self,
        settings: Settings,
        redis_socket: Path,
        *,
        retry_interval: float = RETRY_INTERVAL,
        timeout: float = REDIS_TIMEOUT,
        clock: Callable[[], float] = time.time,
        use_redis: bool = True,
    ) -> None:
        self.ip_rate = parse_rate(settings.AUTH_RATELIMIT_IP)
        self.user_rate = parse_rate(settings.AUTH_RATELIMIT_USER)
        self._v4_mask = settings.AUTH_RATELIMIT_IP_V4_MASK
        self._v6_mask = settings.AUTH_RATELIMIT_IP_V6_MASK
        self._exemptions = tuple(settings.AUTH_RATELIMIT_EXEMPTION)
        self._trust_length = settings.AUTH_RATELIMIT_EXEMPTION_LENGTH
        self.message_rate = parse_rate(settings.MESSAGE_RATELIMIT)
        self._ip_suffix = f"{self.ip_rate.amount}/{self.ip_rate.seconds}"
        self._user_suffix = f"{self.user_rate.amount}/{self.user_rate.seconds}"
        self._message_suffix = f"{self.message_rate.amount}/{self.message_rate.seconds}"
        self.redis = RedisCounters(redis_socket, timeout)
        self.memory = MemoryCounters()
        self._clock = clock
        self._retry_interval = retry_interval
        self._in_memory = not use_redis
        self._retry_at = float("inf") if not use_redis else 0.0
        #: seconds between two renewals of one trusted pair (:meth:`succeeded`)
        self.renew_interval = min(MAX_RENEW_INTERVAL, self._trust_length / 100)

    # -- keys --------------------------------------------------------------------------------

    def network(self, ip: str) -> str:
        """The client network ``ip`` counts under (``192.0.2.0/24``); ValueError for junk."""
        return client_network(ip, self._v4_mask, self._v6_mask)

    def _ip_window(self, network: str) -> str:
        return f"LIMITER/auth-ip/{network}/{self._ip_suffix}"

    def _user_window(self, user: str) -> str:
        return f"LIMITER/auth-user/{user}/{self._user_suffix}"

    def _trusted_window(self, network: str, user: str) -> str:
        return f"LIMITER/auth-trusted/{network}/{user}/{self._ip_suffix}"

    @staticmethod
    def _trust_key(network: str, user: str) -> str:
        return f"trusted-{network}-{user}"

    def _signup_window(self, network: str) -> str:
        return f"LIMITER/signup/{network}/{self._ip_suffix}"

    def _message_window(self, login: str) -> str:
        return f"LIMITER/sender/{login}/{self._message_suffix}"

    def statically_exempt(self, ip: str) -> bool:
        """True for an address in AUTH_RATELIMIT_EXEMPTION."""
        return bool(self._exemptions) and is_exempt(ip, self._exemptions)

    # -- storage with fallback ----------------------------------------------------------------

    @property
    def in_memory(self) -> bool:
        """True while Redis is unreachable and counts are kept in this process."""
        return self._in_memory

    async def _counters(self) -> Counters:
        if not self._in_memory:
            return self.redis
        if time.monotonic() < self._retry_at:
            return self.memory
        try:
            await self.redis.ping()
        except _UNAVAILABLE:
            self._retry_at = time.monotonic() + self._retry_interval
            return self.memory
        log.warning("Redis is reachable again; rate limits are counted in Redis")
        self._in_memory = False
        self.memory.clear()
        return self.redis

    def _fall_back(self, exc: BaseException) -> MemoryCounters:
        if not self._in_memory:
            log.warning(
                "Redis unreachable (%s); counting rate limits in the gate's memory until it "
                "is back",
                exc or type(exc).__name__,
            )
            self._in_memory = True
        self._retry_at = time.monotonic() + self._retry_interval
        return self.memory

    async def _exists(self, key: str) -> bool:
        counters = await self._counters()
        now = self._clock()
        try:
            return await counters.exists(key, now)
        except _UNAVAILABLE as exc:
            return await self._fall_back(exc).exists(key, now)

    async def _hit(self, stages: tuple[Stage, ...]) -> int:
        counters = await self._counters()
        now = self._clock()
        try:
            return await counters.hit(NO_EXEMPTION, stages, now)
        except _UNAVAILABLE as exc:
            return await self._fall_back(exc).hit(NO_EXEMPTION, stages, now)

    async def _mark(self, key: str, ttl: int) -> None:
        counters = await self._counters()
        now = self._clock()
        try:
            await counters.mark(key, ttl, now)
        except _UNAVAILABLE as exc:
            await self._fall_back(exc).mark(key, ttl, now)

    # -- the login budgets --------------------------------------------------------------------

    async def trusted(self, ip: str, user: str) -> bool:
        """True when ``user`` logged in from ``ip``'s network within the trust period."""
        if self._trust_length <= 0:
            return False
        return await self._exists(self._trust_key(self.network(ip), user))

    async def refusal(self, ip: str, user: str | None) -> Budget | None:
        """The budget that refuses a password login from ``ip``, or None to go ahead."""
        return (await self.login_check(ip, user)).budget

    async def login_check(self, ip: str, user: str | None) -> LoginCheck:
        """Whether a budget refuses a password login from ``ip``, in one round trip.

        ``user`` is the canonical address of an existing account, None for a name that is
        no account (only the network's budget applies then). From a network the account
        logged in from lately, neither the network budget nor the account budget shuts
        the owner out; only the pair's own window, once the account's is spent too.
        """
        if self.statically_exempt(ip):
            return LoginCheck(None, trust_fresh=False)
        network = self.network(ip)
        trusting = user is not None and self._trust_length > 0
        keys = RefusalKeys(
            trust=self._trust_key(network, user) if trusting and user else "",
            pair_window=self._trusted_window(network, user) if trusting and user else "",
            network_window=self._ip_window(network),
            account_window=self._user_window(user) if user is not None else "",
        )
        counters = self.redis if not self._in_memory else await self._counters()
        now = self._clock()
        try:
            code, left = await counters.refusal(keys, self.ip_rate, self.user_rate, now)
        except _UNAVAILABLE as exc:
            fallback = self._fall_back(exc)
            code, left = await fallback.refusal(keys, self.ip_rate, self.user_rate, now)
        fresh = left > self._trust_length - self.renew_interval
        return LoginCheck(_REFUSAL_CODES[code], trust_fresh=fresh)

    def _ip_stage(self, network: str, username: str) -> Stage:
        # A name whose bytes were not UTF-8 (lone surrogates) cannot be a Redis key as is.
        name = username.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return Stage(f"dedup-{network}-{name}", self._ip_window(network), self.ip_rate)

    async def fail_unknown(self, ip: str, username: str) -> int:
        """Count a failed login for a name that is no account: once per name per window."""
        if self.statically_exempt(ip):
            return 0
        return await self._hit((self._ip_stage(self.network(ip), username),))

    async def fail_user(self, user: str, ip: str, fingerprint: str) -> int:
        """Count a wrong password for existing ``user``, once per distinct password.

        It counts against the account, then against the network once per username; from a
        trusted network it counts against the pair's own window instead of the network's.
        """
        if self.statically_exempt(ip):
            return 0
        network = self.network(ip)
        user_stage = Stage(f"dedup2-{user}-{fingerprint}", self._user_window(user), self.user_rate)
        if await self.trusted(ip, user):
            second = Stage(None, self._trusted_window(network, user), self.ip_rate)
        else:
            second = self._ip_stage(network, user)
        return await self._hit((user_stage, second))

    async def succeeded(self, ip: str, user: str, *, renew: bool = True) -> None:
        """Trust (``ip``'s network, ``user``) for AUTH_RATELIMIT_EXEMPTION_LENGTH seconds.

        ``renew=False`` when the login's check found the trust set within the last
        :attr:`renew_interval` seconds (:attr:`LoginCheck.trust_fresh`): an IMAP client
        that reconnects all day then costs no write per login, and the trust ends at most
        that much earlier than a full length after the last login, never later.
        """
        if not renew or self._trust_length <= 0 or self.statically_exempt(ip):
            return
        await self._mark(self._trust_key(self.network(ip), user), self._trust_length)

    # -- the sign-up budget -------------------------------------------------------------------

    async def signup_allowed(self, ip: str) -> bool:
        """Count one sign-up attempt from ``ip``'s network (the web's sign-up pages); False
        when AUTH_RATELIMIT_IP's number of attempts is used up in its window.

        Its own window (``LIMITER/signup/<network>/...``): sign-ups never spend the login
        budgets, so a flood of them cannot close the network to people signing in.
        """
        if self.statically_exempt(ip):
            return True
        stage = Stage(None, self._signup_window(self.network(ip)), self.ip_rate)
        return await self._hit((stage,)) == 1

    # -- the message budget -------------------------------------------------------------------

    async def message_allowed(self, login: str) -> bool:
        """Count one outbound message for ``login``; False when MESSAGE_RATELIMIT is used up.

        A refused message is not counted, so a sender who waits gets the next free place
        as soon as the oldest message leaves the window.
        """
        stage = Stage(None, self._message_window(login), self.message_rate)
        return await self._hit((stage,)) == 1

    async def close(self) -> None:
        await self.redis.close()
