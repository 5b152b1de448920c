"""The gate's current view of the store: one Directory, replaced whole when the store moves.

Lookups read ``Index.directory`` and get a complete, consistent Directory: a reload builds the
new one in a worker thread (SQL and indexing never run on the event loop) and swaps it in
with one assignment, so a lookup sees either the old state or the new, never a mixture.

Two things trigger a reload: a request over the control socket (the CLI and the web app ask
right after they commit, and wait for the answer, so their change is visible to the very
next lookup), and a poll of the store's generation counter every second, for writers that did
not ask (another host sharing PostgreSQL, a manual SQL fix).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from roost.core.directory import Directory
from roost.store.db import Store, StoreError
from roost.store.snapshot import Snapshot, load_generation, load_snapshot

__all__ = ["POLL_INTERVAL", "Index"]

log = logging.getLogger("roost.gate")

#: Seconds between two reads of the store's generation counter.
POLL_INTERVAL = 1.0


class Index:
    """Holds the Directory every lookup reads and keeps it current."""

    def __init__(
        self,
        store: Store,
        *,
        loader: Callable[[Store], Snapshot] = load_snapshot,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self._store = store
        self._loader = loader
        self._poll_interval = poll_interval
        self._lock = asyncio.Lock()
        #: The Directory lookups answer from; empty until the first :meth:`load`.
        self.directory = Directory()
        #: The store generation ``directory`` was read at; -1 before the first load.
        self.generation = -1
        #: ``time.time()`` of the last successful load.
        self.loaded_at: float | None = None
        self._poll_failing = False
        #: Awaited with each new Directory once it is in place, before load() returns (the
        #: DKIM keys for Rspamd); an error is logged and never fails the load.
        self.after_load: list[Callable[[Directory], Awaitable[None]]] = []

    @property
    def store(self) -> Store:
        return self._store

    async def load(self) -> int:
        """Read the store now and swap the new Directory in; return its generation.

        Concurrent calls queue on a lock, so a caller that asks after committing always gets
        a load that started after its commit. Raises StoreError when the store cannot be
        read; the previous Directory stays in place.
        """
        async with self._lock:
            loop = asyncio.get_running_loop()
            started = time.monotonic()
            snapshot = await loop.run_in_executor(None, self._loader, self._store)
            self.directory = snapshot.directory
            self.generation = snapshot.generation
            self.loaded_at = time.time()
            for hook in self.after_load:
                try:
                    await hook(snapshot.directory)
                except Exception:
                    log.exception("after loading the index")
            log.debug(
                "index loaded: generation %d in %.1f ms",
                snapshot.generation,
                (time.monotonic() - started) * 1000,
            )
            return snapshot.generation

    async def refresh(self) -> bool:
        """Reload when the store's generation differs from the loaded one; True if it did."""
        loop = asyncio.get_running_loop()
        generation = await loop.run_in_executor(None, load_generation, self._store)
        if generation == self.generation:
            return False
        await self.load()
        return True

    async def watch(self) -> None:
        """Poll the generation forever (cancel the task to stop).

        A store that cannot be read keeps the last Directory in service: answering from a
        state a few seconds old is better than refusing every recipient. The failure is
        logged once, and its end once.
        """
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                await self.refresh()
            except Exception as exc:
                if not self._poll_failing:
                    if isinstance(exc, StoreError):
                        log.warning("cannot read the store, answering from the last index: %s", exc)
                    else:
                        log.exception("index reload failed; answering from the last index")
                    self._poll_failing = True
                continue
            if self._poll_failing:
                log.warning("the index is current again (generation %d)", self.generation)
                self._poll_failing = False
