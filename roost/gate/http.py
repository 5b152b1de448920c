"""A small HTTP/1.1 server for the gate's internal endpoints (RFC 9110, RFC 9112).

Only local daemons talk to it: nginx's mail module (``auth_http``, one HTTP/1.0 request per
connection) over a Unix socket only root and nginx may open, and Dovecot's Lua HTTP client
(HTTP/1.1, persistent connections) over TCP, where every request must carry the stack's
secret (:mod:`roost.gate.secret`) or is answered 403 and closed. It therefore
speaks the small part of HTTP they use — GET and HEAD, no request bodies — and refuses
everything else in a well-defined way instead of guessing: a malformed request gets a 400
and the connection is closed, an oversized head a 431 (RFC 6585 §5). A bug in a handler
becomes a 500 for that request; the server itself keeps running.

Open connections are capped per listener and per caller (:class:`roost.gate.streams.Limits`),
so idle connections cannot crowd out the daemons'.

A full framework would cost more per request than the whole auth decision and bring a
dependency into the daemons' hot path; this module is the framing and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from urllib.parse import unquote_to_bytes

from roost.gate.secret import SECRET_HEADER, matches
from roost.gate.streams import ConnectionCaps, Limits, caller_of, close_quietly

__all__ = [
    "MAX_HEAD",
    "MAX_HEADERS",
    "HttpServer",
    "Request",
    "Response",
    "start_http_server",
]

log = logging.getLogger("roost.gate")

#: Largest request line plus header block accepted, in bytes. nginx's auth_http request
#: with a maximal login and percent-encoded password stays far below this.
MAX_HEAD = 16384
#: Most header fields accepted in one request.
MAX_HEADERS = 64
#: Seconds a connection may sit idle between requests (or send a partial request head)
#: before it is closed; Dovecot's Lua client keeps its connection for up to 60 s.
IDLE_TIMEOUT = 60.0

_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    505: "HTTP Version Not Supported",
}

# RFC 9110 §5.6.2 token characters, the syntax of methods and field names. RFC 9110
# §5.5: field values are visible characters, spaces and tabs (obs-text allowed). The head
# is decoded as Latin-1 (one character per byte) before it is checked.
_TOKEN_CHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_VALUE_CHARS = r"[^\x00-\x08\x0a-\x1f\x7f]*"
_TOKEN = re.compile(_TOKEN_CHARS)
_VERSION = re.compile(r"HTTP/([0-9])\.([0-9])")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: A whole header block of well-formed fields, checked in one match (RFC 9112 §5).
_FIELDS = re.compile(f"{_TOKEN_CHARS}:{_VALUE_CHARS}(?:\r\n{_TOKEN_CHARS}:{_VALUE_CHARS})*")


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed request; ``headers`` maps lower-case names to Latin-1 decoded values."""

    method: str
    path: str
    query: str
    version: tuple[int, int]
    headers: dict[str, str]

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)


@dataclass(slots=True)
class Response:
    """A response; header values must already be safe (no CR or LF)."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    content_type: str | None = None


Handler = Callable[[Request], Awaitable[Response]]


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class _DateCache:
    """RFC 9110 §6.6.1: a server with a clock sends Date; formatting once a second is enough."""

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def get(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True)
        return self._value


class _IdleWatch:
    """Closes a kept-alive connection that waits ``seconds`` for its next request.

    One timer per connection, re-armed from the time the wait began, instead of a timeout
    armed and cancelled around every request: on a busy persistent connection that is
    two clock reads per request instead of two timer operations.
    """

    def __init__(self, transport: asyncio.WriteTransport, seconds: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport = transport
        self._seconds = seconds
        self._since: float | None = None  # when the wait for a request began; None: busy
        self._timer: asyncio.TimerHandle | None = None

    def waiting(self) -> None:
        self._since = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_at(self._since + self._seconds, self._check)

    def busy(self) -> None:
        self._since = None

    def _check(self) -> None:
        since = self._since
        now = self._loop.time()
        if since is not None and now - since >= self._seconds:
            self._timer = None
            self._transport.abort()  # the pending read ends as at the peer's close
            return
        start = now if since is None else since
        self._timer = self._loop.call_at(start + self._seconds, self._check)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _parse_head(head: bytes) -> Request:
    """Parse the request line and header block (without the final blank line)."""
    # RFC 9112 §2.2: empty lines before a request line (a client's stray CRLF after the
    # previous request) are ignored.
    text = head.decode("latin-1").lstrip("\r\n")
    request_line, _, block = text.partition("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3:
        raise _BadRequest(400, "malformed request line")
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise _BadRequest(400, "malformed method")
    match = _VERSION.fullmatch(version)
    if match is None:
        raise _BadRequest(400, "malformed HTTP version")
    major, minor = int(match.group(1)), int(match.group(2))
    if major != 1:
        raise _BadRequest(505, "only HTTP/1.x is served")
    # RFC 9112 §3.2.1: origin-form only; this server is nobody's proxy.
    if not target.startswith("/") or not target.isascii() or "#" in target:
        raise _BadRequest(400, "malformed request target")
    raw_path, _, query = target.partition("?")
    lines = block.split("\r\n") if block else []
    if len(lines) > MAX_HEADERS:
        raise _BadRequest(431, "too many header fields")
    if block and not _FIELDS.fullmatch(block):
        _refuse_fields(lines)
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip(" \t")
    if len(headers) < len(lines):
        # Daemons never repeat a field; two different Auth-User values would be ambiguous.
        _refuse_fields(lines)
    if (major, minor) >= (1, 1) and "host" not in headers:
        raise _BadRequest(400, "HTTP/1.1 request without Host")  # RFC 9112 §3.2
    if "transfer-encoding" in headers or headers.get("content-length", "0") != "0":
        # GET and HEAD carry no content here; reading one would need framing we refuse.
        raise _BadRequest(400, "request content is not accepted")
    try:
        path = unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        raise _BadRequest(400, "request path is not UTF-8") from None
    return Request(method, path, query, (major, minor), headers)


def _refuse_fields(lines: list[str]) -> None:
    """Raise the error that names what is wrong with a header block that failed the
    one-match check, line by line."""
    seen: set[str] = set()
    for line in lines:
        name, colon, value = line.partition(":")
        # RFC 9112 §5.1: no white space before the colon; §5.2: obs-fold may be refused.
        if not colon or not _TOKEN.fullmatch(name):
            raise _BadRequest(400, "malformed header field")
        if _BAD_VALUE.search(value):
            raise _BadRequest(400, "control character in a header field")
        key = name.lower()
        if key in seen:
            raise _BadRequest(400, f"repeated header field {key}")
        seen.add(key)
    raise _BadRequest(400, "malformed header field")


def _keep_alive(request: Request) -> bool:
    """RFC 9112 §9.3: 1.1 persists unless ``close``; 1.0 only with ``keep-alive``."""
    tokens = {t.strip().lower() for t in request.header("connection").split(",")}
    if request.version >= (1, 1):
        return "close" not in tokens
    return "keep-alive" in tokens


class HttpServer:
    """Serves one handler over asyncio streams; one task per connection.

    ``secret``, when given, must come in every request's ``X-Roost-Secret`` header: a
    request without it (or with another value) is answered 403 and the connection closed,
    before the handler sees it and whatever path it asked for.
    """

    def __init__(
        self, handler: Handler, *, secret: str | None = None, limits: Limits | None = None
    ) -> None:
        self._handler = handler
        self._secret = secret
        self._dates = _DateCache()
        self.caps = ConnectionCaps(limits or Limits())
        self._reported = (0, 0)
        self._reported_at = -60.0
        self._forbidden = 0
        self._forbidden_at = -60.0
        self.server: asyncio.Server | None = None

    def _encode(self, response: Response, head_only: bool, keep: bool, http10: bool) -> bytes:
        status = response.status
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
            f"Date: {self._dates.get()}",
            f"Content-Length: {len(response.body)}",
        ]
        if response.content_type:
            lines.append(f"Content-Type: {response.content_type}")
        lines.extend(f"{name}: {value}" for name, value in response.headers)
        if not keep:
            lines.append("Connection: close")
        elif http10:
            lines.append("Connection: keep-alive")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
        return head if head_only else head + response.body

    def _error(self, status: int, reason: str) -> bytes:
        body = (reason + "\n").encode("utf-8")
        return self._encode(
            Response(status, body=body, content_type="text/plain; charset=utf-8"),
            head_only=False,
            keep=False,
            http10=False,
        )

    def _report_pressure(self, caller: str) -> None:
        """At most one line a minute while connections are being closed or refused."""
        caps = self.caps
        if caps.evicted == self._reported[0] and caps.refused == self._reported[1]:
            return
        now = time.monotonic()
        if now - self._reported_at < 60:
            return
        log.warning(
            "HTTP connections closed for waiting too many: %d (latest from %s), refused "
            "over %d open: %d, since start",
            caps.evicted,
            caller,
            caps.limits.max_open,
            caps.refused,
        )
        self._reported = (caps.evicted, caps.refused)
        self._reported_at = now

    def _authorised(self, request: Request) -> bool:
        return self._secret is None or matches(request.header(SECRET_HEADER), self._secret)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        key = id(writer)
        caller = caller_of(writer)
        admitted = self.caps.admit(key, caller, reader, writer)
        self._report_pressure(caller)
        if not admitted:
            writer.transport.abort()
            return
        try:
            await self._conversation(key, caller, reader, writer)
        finally:
            self.caps.release(key)

    async def _conversation(
        self, key: int, caller: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # The daemons send their first request as soon as they connect.
        first: asyncio.Timeout | None = asyncio.timeout(self.caps.limits.first_request_timeout)
        idle = _IdleWatch(writer.transport, IDLE_TIMEOUT)
        try:
            while True:
                try:
                    if first is not None:
                        async with first:
                            head = await reader.readuntil(b"\r\n\r\n")
                        first = None
                    else:
                        idle.waiting()
                        head = await reader.readuntil(b"\r\n\r\n")
                        idle.busy()
                except asyncio.LimitOverrunError:
                    writer.write(self._error(431, "request head too large"))
                    break
                except (asyncio.IncompleteReadError, TimeoutError):
                    break
                try:
                    request = _parse_head(head[:-4])
                except _BadRequest as exc:
                    # The request line only: the header block may carry a password.
                    line = head.split(b"\r\n", 1)[0][:200]
                    log.info("HTTP request refused (%s): %r", exc, line)
                    writer.write(self._error(exc.status, str(exc)))
                    break
                if not self._authorised(request):
                    self._forbidden += 1
                    now = time.monotonic()
                    if now - self._forbidden_at >= 60:  # one line a minute at most
                        self._forbidden_at = now
                        log.warning(
                            "HTTP request from %s refused: no valid %s header (%d so far)",
                            caller,
                            SECRET_HEADER,
                            self._forbidden,
                        )
                    writer.write(self._error(403, "forbidden"))
                    break
                self.caps.settled(key)
                keep = _keep_alive(request)
                head_only = request.method == "HEAD"
                if request.method not in ("GET", "HEAD"):
                    response = Response(
                        405, [("Allow", "GET, HEAD")], b"only GET\n", "text/plain; charset=utf-8"
                    )
                else:
                    try:
                        response = await self._handler(request)
                    except Exception:
                        log.exception("HTTP handler failed for %s %s", request.method, request.path)
                        response = Response(
                            500, body=b"internal error\n", content_type="text/plain; charset=utf-8"
                        )
                        keep = False
                writer.write(self._encode(response, head_only, keep, request.version < (1, 1)))
                await writer.drain()
                if not keep:
                    break
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            idle.stop()
            await close_quietly(writer)

    async def start(self, host: str, port: int) -> asyncio.Server:
        """Listen on TCP ``host:port``."""
        self.server = await asyncio.start_server(
            self._serve, host, port, limit=MAX_HEAD, reuse_address=True, backlog=1024
        )
        return self.server

    async def start_unix(self, path: Path) -> asyncio.Server:
        """Listen on the Unix socket ``path``; the caller sets who may open it."""
        self.server = await asyncio.start_unix_server(
            self._serve, path=str(path), limit=MAX_HEAD, backlog=1024
        )
        return self.server


async def start_http_server(
    handler: Handler, host: str, port: int, *, secret: str | None = None
) -> HttpServer:
    """Listen on ``host:port`` and answer every request (carrying ``secret``) with ``handler``."""
    server = HttpServer(handler, secret=secret)
    await server.start(host, port)
    return server
