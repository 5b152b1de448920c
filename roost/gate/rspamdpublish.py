"""What Rspamd must know from the store, written by the gate: the DKIM keys it signs with
(into Rspamd's own Redis), the selectors of rotating domains and the list of our domains
(map files in Rspamd's state directory, for its anti-spoofing rules).

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

During a key rotation (``roost dkim rotate``) a domain has two keys, both in the hash; the
domains that sign with the second selector are listed in ``dkim_selectors.map`` in
Rspamd's state directory (its ``selector_map``, read again every ``map_watch_interval``).
The key files are read again every :data:`REREAD` checks, for changes the gate was not
told of. Beside it the gate writes ``local_domains.map``: every domain and alternative,
which Rspamd's anti-spoofing rules treat as ours.

Keys are read as root (the files are ``0600 root``); Rspamd's Redis is reachable only by
root and ``_rspamd`` (docs/ARCHITECTURE.md, "Secrets and privileges").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from pathlib import Path

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from roost.core.directory import Directory
from roost.layout import Layout
from roost.settings import Settings
from roost.store.dkimkeys import DkimKeys

__all__ = [
    "CHECK_INTERVAL",
    "DIGEST",
    "KEYS_HASH",
    "LOCAL_DOMAINS_MAP",
    "SELECTOR_MAP",
    "RspamdPublisher",
    "local_domains",
    "local_domains_path",
    "selector_map_path",
    "signing_keys",
]

log = logging.getLogger("roost.gate")

#: The Redis hash Rspamd's ``key_prefix`` names (dkim_signing and arc).
KEYS_HASH = "ROOST_DKIM_KEYS"
#: SHA-256 of what the hash holds, to see that it is still what the gate wrote.
DIGEST = "ROOST_DKIM_DIGEST"
_TMP = "ROOST_DKIM_KEYS_NEW"
#: Seconds between checks that Redis still holds the keys (and retries while it is away).
CHECK_INTERVAL = 5.0
#: Every this many checks, the key files are read again.
REREAD = 12
#: Seconds Rspamd's Redis may be away (it starts after the gate) before a warning.
WARN_AFTER = 30.0
_TIMEOUT = 2.0


#: Rspamd's ``selector_map``: the domains that sign with another selector than
#: DKIM_SELECTOR (a rotation's second one), one ``<domain> <selector>`` line each.
SELECTOR_MAP = "dkim_selectors.map"


def selector_map_path(settings: Settings) -> Path:
    """In Rspamd's state directory, which its workers read (roost/layout.py)."""
    return Layout(settings).rspamd_data / SELECTOR_MAP


#: Rspamd's map of our domains and alternative domains (lower-case punycode, one a line),
#: which its anti-spoofing rules read (multimap IS_LOCAL_DOMAIN_*, Mailu's local_domains).
LOCAL_DOMAINS_MAP = "local_domains.map"


def local_domains_path(settings: Settings) -> Path:
    return Layout(settings).rspamd_data / LOCAL_DOMAINS_MAP


def local_domains(directory: Directory) -> str:
    names = {name.lower() for name in (*directory.domains, *directory.alternatives)}
    return "".join(f"{name}\n" for name in sorted(names))


def signing_keys(settings: Settings, directory: Directory) -> tuple[dict[str, str], str]:
    """``{"<selector>.<domain>": PEM}`` for every key of every domain and alternative that
    signs, and the selector map's text."""
    pairs = [(d, d) for d in directory.domains]
    pairs += [(alternative, owner) for alternative, owner in directory.alternatives.items()]
    keys = DkimKeys(settings).signing(sorted(pairs))
    fields: dict[str, str] = {}
    lines = []
    for domain, (active, found) in sorted(keys.items()):
        name = domain.lower()
        for selector, pem in found:
            fields[f"{selector}.{name}"] = pem
        if active != settings.DKIM_SELECTOR:
            lines.append(f"{name} {active}\n")
    return fields, "".join(lines)


def _write_map(path: Path, text: str) -> None:
    """Replace the selector map (0644: Rspamd's workers read it) unless it says ``text``."""
    try:
        if path.read_text(encoding="ascii") == text:
            return
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _digest(fields: dict[str, str]) -> str:
    text = "\0".join(f"{name}\0{value}" for name, value in sorted(fields.items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class RspamdPublisher:
    """Keeps Rspamd's Redis hash of DKIM keys equal to the key files of the index's domains,
    and its selector and local-domain maps equal to the index."""

    def __init__(self, settings: Settings, socket_path: Path) -> None:
        self.settings = settings
        self.client = aioredis.Redis(
            unix_socket_path=str(socket_path),
            socket_timeout=_TIMEOUT,
            socket_connect_timeout=_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        self._wanted: dict[str, str] | None = None
        self._directory: Directory | None = None
        self._map = selector_map_path(settings)
        self._domains_map = local_domains_path(settings)
        self._lock = asyncio.Lock()
        self._failing = False
        self._failing_since = 0.0

    async def loaded(self, directory: Directory) -> None:
        """The index has a new Directory: read the keys and write them if they changed."""
        self._directory = directory
        await self._read_keys(directory)

    async def _read_keys(self, directory: Directory) -> None:
        loop = asyncio.get_running_loop()
        wanted, selectors = await loop.run_in_executor(None, signing_keys, self.settings, directory)
        async with self._lock:
            self._wanted = wanted
            # Both keys of a rotation are in Redis before the map names the new selector.
            await self._sync()
            for path, text in (
                (self._map, selectors),
                (self._domains_map, local_domains(directory)),
            ):
                try:
                    await loop.run_in_executor(None, _write_map, path, text)
                except OSError as exc:
                    log.error("cannot write Rspamd's map %s: %s", path, exc)

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
            # The gate starts before Rspamd's Redis: say so only when it stays away.
            now = time.monotonic()
            self._failing_since = self._failing_since or now
            if not self._failing and now - self._failing_since >= WARN_AFTER:
                log.warning("cannot give Rspamd the DKIM keys (its Redis: %s); retrying", exc)
                self._failing = True
            return False
        if self._failing:
            log.info("Rspamd's Redis holds the DKIM keys again")
        self._failing = False
        self._failing_since = 0.0
        return True

    async def watch(self, interval: float = CHECK_INTERVAL, reread: int = REREAD) -> None:
        """Check forever (cancel the task to stop) that Redis still holds the keys, and
        every ``reread`` checks read the key files again (a change the gate was not told
        of: a file copied in by hand, a rotation step while the gate was down)."""
        checks = 0
        while True:
            await asyncio.sleep(interval)
            checks += 1
            if checks % reread == 0 and self._directory is not None:
                await self._read_keys(self._directory)
                continue
            async with self._lock:
                await self._sync()

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.client.aclose()
