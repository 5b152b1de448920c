"""What every stream server of the gate does when a connection ends."""

from __future__ import annotations

import asyncio
import contextlib


async def close_quietly(writer: asyncio.StreamWriter) -> None:
    """Close a connection whose peer may already be gone: that is not an error."""
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()
