"""A bounded, per-network fair queue in front of the password-hashing threads.

One Argon2id check costs a core for about a fifth of a second. Unbounded, a few parallel
guessers keep every hashing thread busy and a real user's login waits behind all of them
until Dovecot gives up (its Lua passdb waits 5 s for the gate). So:

* at most ``workers`` checks run at once (the threads);
* waiting checks are grouped by client network. When a thread frees, it goes to the
  waiting network with the fewest recent failed checks (:meth:`FairQueue.failed` counts
  them, decaying with a half-life of ``half_life`` seconds), round-robin among equals: a
  real user's network, which has not been guessing, is served next, behind no more than
  the checks already running. Checks marked ``priority`` (a login from a network the
  account logged in from lately) go before every other;
* a network may have at most ``per_network`` checks waiting, and all networks together
  ``capacity``. When the queue is full, a newcomer takes the place of the newest check of
  a network with more recent failures or a longer queue than its own, which is refused:
  the network that floods loses, not the quiet one.

A refused check raises :class:`QueueFull`; the gate answers it as a temporary failure
without hashing anything.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["FairQueue", "QueueFull"]

T = TypeVar("T")

#: The queue name of prioritised checks (no client network is spelled like this).
_PRIORITY = "!priority"


class QueueFull(Exception):
    """The check was refused (or evicted) because the queue is full for its network."""


class FairQueue:
    """Runs blocking functions in ``workers`` threads, admitting them fairly per network."""

    #: Networks whose failure score is remembered; beyond it the faded ones are dropped.
    MAX_SCORES = 10_000

    def __init__(
        self,
        workers: int = 2,
        *,
        capacity: int = 16,
        per_network: int = 4,
        half_life: float = 60.0,
        name: str = "hash",
    ) -> None:
        self.workers = workers
        self.capacity = capacity
        self.per_network = per_network
        self._decay = math.log(2) / half_life
        self._scores: dict[str, tuple[float, float]] = {}  # network -> (score, at)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self._free = workers
        # Network -> its waiting futures. Dict order is the round-robin order: a network
        # served goes to the back.
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}
        self._count = 0
        #: Checks refused so far (for the log and the benchmark).
        self.refused = 0

    def failed(self, network: str) -> None:
        """Count a failed check against ``network``: it is served after quieter networks."""
        now = time.monotonic()
        self._scores[network] = (self.score(network, now) + 1.0, now)
        if len(self._scores) > self.MAX_SCORES:
            for key in [k for k in self._scores if self.score(k, now) < 0.5]:
                del self._scores[key]

    def score(self, network: str, now: float | None = None) -> float:
        """``network``'s recent failed checks, each fading with the half-life."""
        entry = self._scores.get(network)
        if entry is None:
            return 0.0
        value, at = entry
        now = time.monotonic() if now is None else now
        return value * math.exp(-self._decay * max(0.0, now - at))

    @property
    def waiting(self) -> int:
        """Checks waiting for a thread."""
        return self._count

    @property
    def running(self) -> int:
        """Checks holding a thread."""
        return self.workers - self._free

    async def run(
        self, network: str, fn: Callable[..., T], *args: object, priority: bool = False
    ) -> T:
        """Run ``fn(*args)`` in a thread once the queue admits it; QueueFull if it won't."""
        await self._admit(_PRIORITY if priority else network, priority)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self._release()

    async def _admit(self, key: str, priority: bool) -> None:
        if self._free > 0 and self._count == 0:
            self._free -= 1
            return
        own = self._waiting.get(key)
        own_length = len(own) if own is not None else 0
        if not priority and own_length >= self.per_network:
            self.refused += 1
            raise QueueFull(key)
        if self._count >= self.capacity and not self._evict_for(key, own_length):
            self.refused += 1
            raise QueueFull(key)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiting.setdefault(key, deque())
        queue.append(future)
        self._count += 1
        try:
            await future
        except asyncio.CancelledError:
            if future.cancelled():
                # Still queued (the caller went away): take it out.
                self._discard(key, future)
            elif future.exception() is None:
                # Handed a thread just as it was cancelled: pass the thread on.
                self._release()
            raise

    def _evict_for(self, key: str, own_length: int) -> bool:
        """Refuse the newest check of a noisier network (more failures, or a longer queue
        than the caller's) to make room; False when there is none."""
        now = time.monotonic()
        own_score = 0.0 if key == _PRIORITY else self.score(key, now)
        candidates = [
            (self.score(k, now), len(q), k)
            for k, q in self._waiting.items()
            if k not in (_PRIORITY, key)
        ]
        if not candidates:
            return False
        score, length, victim_key = max(candidates)
        # Half a failure of margin: a network that failed lately is noisier than one that
        # did not, but two that both guess at about the same rate are equals.
        if not (score > own_score + 0.5 or length > own_length + 1):
            return False
        queue = self._waiting[victim_key]
        victim = queue.pop()
        self._count -= 1
        if not queue:
            del self._waiting[victim_key]
        self.refused += 1
        victim.set_exception(QueueFull(victim_key))
        return True

    def _next_key(self) -> str:
        """The network served next: priority first, then the fewest recent failures."""
        if _PRIORITY in self._waiting:
            return _PRIORITY
        now = time.monotonic()
        # min() keeps the first of equals: dict order, which is the round-robin order.
        return min(self._waiting, key=lambda k: self.score(k, now))

    def _discard(self, key: str, future: asyncio.Future[None]) -> None:
        queue = self._waiting.get(key)
        if queue is None or future not in queue:
            return
        queue.remove(future)
        self._count -= 1
        if not queue:
            del self._waiting[key]

    def _release(self) -> None:
        """Hand the thread just freed to the next waiting check, or free it."""
        while self._waiting:
            key = self._next_key()
            queue = self._waiting.pop(key)
            future = queue.popleft()
            self._count -= 1
            if queue:
                self._waiting[key] = queue  # to the back of the round
            if not future.done():
                future.set_result(None)
                return
        self._free += 1

    def shutdown(self) -> None:
        """Stop the threads; checks still waiting are refused."""
        for queue in self._waiting.values():
            for future in queue:
                if not future.done():
                    future.set_exception(QueueFull("shutdown"))
        self._waiting.clear()
        self._count = 0
        self._pool.shutdown(wait=False, cancel_futures=True)
