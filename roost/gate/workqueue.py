"""A bounded, per-network fair queue in front of the password-hashing threads.

One Argon2id check costs a core for about a fifth of a second. Unbounded, a few parallel
guessers keep every hashing thread busy and a real user's login waits behind all of them
until Dovecot gives up (its Lua passdb waits 5 s for the gate). So:

* at most ``workers`` checks run at once (the threads);
* waiting checks are grouped by client network and served round-robin, one network after
  the other, so a network with one login waits behind at most one check of each busy
  network, not behind all of their checks; checks marked ``priority`` (a login from a
  network the account logged in from lately) are served before every other;
* a network may have at most ``per_network`` checks waiting, and all networks together
  ``capacity``. When the queue is full, a newcomer from a network with fewer waiting checks
  than the longest queue takes the place of that queue's newest check, which is refused:
  the network that floods loses, not the quiet one.

A refused check raises :class:`QueueFull`; the gate answers it as a temporary failure
without hashing anything.
"""

from __future__ import annotations

import asyncio
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

    def __init__(
        self, workers: int = 2, *, capacity: int = 16, per_network: int = 4, name: str = "hash"
    ) -> None:
        self.workers = workers
        self.capacity = capacity
        self.per_network = per_network
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self._free = workers
        # Network -> its waiting futures. Dict order is the round-robin order: a network
        # served goes to the back.
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}
        self._count = 0
        #: Checks refused so far (for the log and the benchmark).
        self.refused = 0

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
        if self._count >= self.capacity and not self._evict_for(own_length):
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

    def _evict_for(self, own_length: int) -> bool:
        """Refuse the newest check of the longest queue if it is longer than the caller's."""
        longest_key, longest = max(
            ((k, q) for k, q in self._waiting.items() if k != _PRIORITY),
            key=lambda item: len(item[1]),
            default=(None, None),
        )
        if longest_key is None or longest is None or len(longest) <= own_length + 1:
            return False
        victim = longest.pop()
        self._count -= 1
        if not longest:
            del self._waiting[longest_key]
        self.refused += 1
        victim.set_exception(QueueFull(longest_key))
        return True

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
            key = _PRIORITY if _PRIORITY in self._waiting else next(iter(self._waiting))
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
