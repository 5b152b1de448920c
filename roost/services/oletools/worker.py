"""A scanning worker: documents in on standard input, olefy replies out on standard output.

The server (:mod:`roost.services.oletools.server`) keeps a few of these processes and
hands each document to an idle one, so a document that makes olevba loop or balloon
costs one worker, which the server kills and replaces, and never the server or the other
documents. Frames are a 4-byte big-endian length and that many bytes: the document one
way, the reply's JSON the other. The worker never exits on a bad document; any exception
becomes an error reply.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import struct
import sys
from typing import BinaryIO

from roost.services.oletools.scan import analyse, error_reply

__all__ = ["MEMORY_LIMIT", "main", "read_frame", "write_frame"]

#: Address space one worker may use: olevba holds a decompressed document several
#: times over; a zip or OLE bomb stops here with a MemoryError instead of the host.
MEMORY_LIMIT = 1024 * 1024 * 1024
_LENGTH = struct.Struct(">I")


def read_frame(stream: BinaryIO) -> bytes | None:
    """One frame, or None at the end of the stream."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack(head)
    body = stream.read(length)
    if len(body) < length:
        return None
    return body


def write_frame(stream: BinaryIO, body: bytes) -> None:
    stream.write(_LENGTH.pack(len(body)) + body)
    stream.flush()


def judge(document: bytes) -> bytes:
    """The reply for one document; never raises for anything in the document."""
    try:
        reply = analyse(document)
    except MemoryError:
        reply = error_reply("MemoryError", "the document needs too much memory")
    except Exception as exc:
        reply = error_reply(type(exc).__name__, str(exc))
    return json.dumps(reply).encode("utf-8")


def main() -> None:
    """Serve frames until the server closes standard input."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    # Replies go to a private copy of standard output; anything a library prints
    # lands on standard error (the runner's log) instead of in a frame.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    logging.basicConfig(level=logging.CRITICAL)
    requests = sys.stdin.buffer
    while (document := read_frame(requests)) is not None:
        write_frame(replies, judge(document))


if __name__ == "__main__":
    main()
