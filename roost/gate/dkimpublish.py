"""The DKIM keys Rspamd signs with, written by the gate into Rspamd's own Redis.

Rspamd's ``dkim_signing`` and ``arc`` modules read a signing key from a Redis hash when
``use_redis`` is on (https://rspamd.com/doc/modules/dkim_signing.html): the field
``<selector>.<domain>`` of the hash named by ``key_prefix`` holds the PEM. The gate owns
that hash. Every time its index is loaded (the CLI, the web and the API ask right after
they commit, and a key change counts as a store change), it computes the signing domains
(each domain with a key, and each alternative of it under its own name with its domain's
key, all lower-case punycode) and, when the result differs from what Redis holds, replaces
the hash at once (written under a temporary name and renamed over the old one, so Rspamd
never sees half of it). A digest beside it says what the hash holds: a Redis that was
down, emptied or restarted from an older snapshot is written again within
:data:`CHECK_INTERVAL` seconds.

Keys are read as root (the files are ``0600 root``); Rspamd's Redis is reachable only by
root and ``_rspamd`` (docs/ARCHITECTURE.md, "Secrets and privileges").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from pathlib import Path

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from roost.core.directory import Directory
from roost.settings import Settings
from roost.store.dkimkeys import DkimKeys

__all__ = ["CHECK_INTERVAL", "DIGEST", "KEYS_HASH", "DkimPublisher", "signing_keys"]

log = logging.getLogger("roost.gate")

#: The Redis hash Rspamd's ``key_prefix`` names (dkim_signing and arc).
KEYS_HASH = "ROOST_DKIM_KEYS"
#: SHA-256 of what the hash holds, to see that it is still what the gate wrote.
DIGEST = "ROOST_DKIM_DIGEST"
_TMP = "ROOST_DKIM_KEYS_NEW"
#: Seconds between checks that Redis still holds the keys (and retries while it is away).
CHECK_INTERVAL = 5.0
_TIMEOUT = 2.0


def signing_keys(settings: Settings, directory: Directory) -> dict[str, str]:
    """``{"<selector>.<domain>": PEM}`` for every domain and alternative that signs."""
    pairs = [(d, d) for d in directory.domains]
    pairs += [(alternative, owner) for alternative, owner in directory.alternatives.items()]
    keys = DkimKeys(settings).signing(sorted(pairs))
    selector = settings.DKIM_SELECTOR
    return {f"{selector}.{domain.lower()}": pem for domain, pem in sorted(keys.items())}


def _digest(fields: dict[str, str]) -> str:
    text = "\0".join(f"{name}\0{value}" for name, value in sorted(fields.items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class DkimPublisher:
    """Keeps Rspamd's Redis hash of DKIM keys equal to the key files of the index's domains."""

    def __init__(self, settings: Settings, socket_path: Path) -> None:
        self.settings = settings
        self.client = aioredis.Redis(
            unix_socket_path=str(socket_path),
            socket_timeout=_TIMEOUT,
            socket_connect_timeout=_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        self._wanted: dict[str, str] | None = None
        self._lock = asyncio.Lock()
        self._failing = False

    async def loaded(self, directory: Directory) -> None:
        """The index has a new Directory: read the keys and write them if they changed."""
        loop = asyncio.get_running_loop()
        wanted = await loop.run_in_executor(None, signing_keys, self.settings, directory)
        async with self._lock:
            self._wanted = wanted
            await self._sync()

    async def _sync(self) -> bool:
        """Write the wanted keys unless Redis holds them already; False while it fails."""
        if self._wanted is None:
            return False
        digest = _digest(self._wanted)
        try:
            held = await self.client.get(DIGEST)
            if isinstance(held, bytes):
                held = held.decode("ascii", "replace")
            if held != digest:
                async with self.client.pipeline(transaction=True) as pipe:
                    if self._wanted:
                        pipe.delete(_TMP)
                        pipe.hset(_TMP, mapping=self._wanted)  # type: ignore[arg-type]
                        pipe.rename(_TMP, KEYS_HASH)
                    else:
                        pipe.delete(KEYS_HASH)
                    pipe.set(DIGEST, digest)
                    await pipe.execute()
                log.info("DKIM keys for Rspamd: %d signing domains", len(self._wanted))
        except (RedisError, OSError) as exc:
            if not self._failing:
                log.warning("cannot give Rspamd the DKIM keys yet (its Redis: %s); retrying", exc)
                self._failing = True
            return False
        if self._failing:
            log.info("Rspamd's Redis holds the DKIM keys again")
            self._failing = False
        return True

    async def watch(self, interval: float = CHECK_INTERVAL) -> None:
        """Check forever (cancel the task to stop) that Redis still holds the keys."""
        while True:
            await asyncio.sleep(interval)
            async with self._lock:
                await self._sync()

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.client.aclose()
