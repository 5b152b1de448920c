"""Is a daemon answering? The one readiness check shared by ``roost up`` and ``roost status``.

Readiness means a real connection succeeds on every socket the daemon serves, not merely
that the process exists: a daemon that is still reading its configuration, or that has
wedged, does not accept work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from roost.services.base import Readiness

PROBE_TIMEOUT = 1.0


Opening = Coroutine[Any, Any, tuple[asyncio.StreamReader, asyncio.StreamWriter]]


async def _connects(opening: Opening, timeout: float) -> bool:
    try:
        _, writer = await asyncio.wait_for(opening, timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def first_silent(readiness: Readiness, timeout: float = PROBE_TIMEOUT) -> str | None:
    """The first socket of ``readiness`` that does not accept a connection, or None."""
    for path in readiness.unix_sockets:
        if not await _connects(asyncio.open_unix_connection(str(path)), timeout):
            return str(path)
    for host, port in readiness.tcp:
        if not await _connects(asyncio.open_connection(host, port), timeout):
            return f"{host}:{port}"
    return None
