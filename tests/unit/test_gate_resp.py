"""The limiter's pipelined Redis client (roost.gate.resp) against a real redis-server."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from roost.gate.resp import RedisConnection, ReplyError, Script, encode
from roost.gate.server import new_event_loop
from tests.unit.test_gate_support import redis_server


@pytest.fixture
def redis_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "r.sock"
    with redis_server(path):
        yield path


def run(body: Any) -> Any:
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(body)


def test_commands_are_resp_arrays_of_bulk_strings() -> None:
    assert encode(("SET", "k\u00e9", 5, b"\x00")) == (
        b"*4\r\n$3\r\nSET\r\n$3\r\nk\xc3\xa9\r\n$1\r\n5\r\n$1\r\n\x00\r\n"
    )


def test_concurrent_commands_share_a_write_and_get_their_own_replies(redis_socket: Path) -> None:
    async def body() -> list[Any]:
        connection = RedisConnection(redis_socket, 2, timeout=2)
        try:
            await connection.call("PING")
            sets = [connection.call("SET", f"key{n}", n) for n in range(200)]
            await asyncio.gather(*sets)
            gets = [connection.call("GET", f"key{n}") for n in range(200)]
            return list(await asyncio.gather(*gets, connection.call("GET", "missing")))
        finally:
            await connection.close()

    client = redis.Redis(unix_socket_path=str(redis_socket), db=2)
    reads_before = int(client.info("stats")["total_reads_processed"])
    replies = run(body())
    assert replies == [str(n).encode() for n in range(200)] + [None]
    assert client.get("key7") == b"7"  # database 2, as selected
    assert redis.Redis(unix_socket_path=str(redis_socket), db=0).get("key7") is None
    # 401 commands arrived in far fewer reads than commands: they were pipelined.
    assert int(client.info("stats")["total_reads_processed"]) - reads_before < 100
    client.close()


def test_an_error_reply_fails_that_command_only(redis_socket: Path) -> None:
    async def body() -> tuple[Any, ...]:
        connection = RedisConnection(redis_socket, 2, timeout=2)
        try:
            return tuple(
                await asyncio.gather(
                    connection.call("SET", "a", 1),
                    connection.call("NOSUCHCOMMAND"),
                    connection.call("GET", "a"),
                    return_exceptions=True,
                )
            )
        finally:
            await connection.close()

    ok, error, value = run(body())
    assert ok == b"OK" and value == b"1"
    assert isinstance(error, ReplyError) and "unknown command" in str(error)


def test_a_script_is_sent_again_after_redis_forgot_it(redis_socket: Path) -> None:
    async def body() -> list[Any]:
        connection = RedisConnection(redis_socket, 2, timeout=2)
        script = Script(connection, "return {tonumber(ARGV[1]) + 1, KEYS[1]}")
        try:
            first = await script(["k"], [41])
            await connection.call("SCRIPT", "FLUSH")  # as after a restart of Redis
            again = await script(["k"], [1])
            return [first, again]
        finally:
            await connection.close()

    assert run(body()) == [[42, b"k"], [2, b"k"]]


def test_a_redis_that_does_not_answer_times_out_and_the_next_call_reconnects(
    tmp_path: Path,
) -> None:
    socket_path = tmp_path / "r.sock"
    with redis_server(socket_path) as process:

        async def body() -> tuple[float, Any]:
            connection = RedisConnection(socket_path, 2, timeout=0.3)
            try:
                await connection.call("PING")
                os.kill(process.pid, signal.SIGSTOP)
                started = time.monotonic()
                try:
                    with pytest.raises(TimeoutError):
                        await asyncio.gather(connection.call("PING"), connection.call("PING"))
                    waited = time.monotonic() - started
                finally:
                    os.kill(process.pid, signal.SIGCONT)
                return waited, await connection.call("PING")
            finally:
                await connection.close()

        waited, pong = run(body())
    assert 0.2 < waited < 2
    assert pong == b"PONG"


def test_no_redis_is_a_connection_error(tmp_path: Path) -> None:
    async def body() -> None:
        connection = RedisConnection(tmp_path / "none.sock", 2, timeout=0.3)
        with pytest.raises(ConnectionError, match="cannot connect to Redis"):
            await connection.call("PING")

    run(body())
