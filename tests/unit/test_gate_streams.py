"""The gate's connection caps: a flood of idle connections pushes out its own, not a daemon's."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from roost.gate.streams import ConnectionCaps, Limits


@dataclass
class FakeTransport:
    aborted: bool = False

    def abort(self) -> None:
        self.aborted = True


@dataclass
class FakeWriter:
    """What ConnectionCaps touches of a StreamWriter: its transport and socket."""

    transport: FakeTransport = field(default_factory=FakeTransport)

    def get_extra_info(self, name: str) -> None:
        return None


_LOOP = asyncio.new_event_loop()  # StreamReader needs one; nothing runs on it


def teardown_module() -> None:
    _LOOP.close()


def reader(sent: bytes = b"") -> asyncio.StreamReader:
    stream = asyncio.StreamReader(loop=_LOOP)
    if sent:
        stream.feed_data(sent)
    return stream


def test_a_caller_over_its_cap_loses_its_own_oldest_idle_connection() -> None:
    caps = ConnectionCaps(Limits(max_open=100, max_waiting=50, max_waiting_per_caller=3))
    flood = [FakeWriter() for _ in range(3)]
    for key, writer in enumerate(flood):
        assert caps.admit(key, "127.0.0.1", reader(), writer)  # type: ignore[arg-type]
    other = FakeWriter()
    assert caps.admit(10, "uid:33", reader(), other)  # type: ignore[arg-type]
    assert caps.admit(3, "127.0.0.1", reader(), FakeWriter())  # type: ignore[arg-type]
    assert flood[0].transport.aborted and not flood[1].transport.aborted
    assert not other.transport.aborted
    assert caps.waiting == 4 and caps.open == 4 and caps.evicted == 1
    caps.release(0)  # the evicted connection's task ends: counted out only once
    assert caps.open == 4


def test_a_connection_whose_request_is_there_is_not_evicted() -> None:
    caps = ConnectionCaps(Limits(max_open=100, max_waiting=3, max_waiting_per_caller=10))
    daemon = FakeWriter()
    assert caps.admit(0, "127.0.0.1", reader(b"GET /auth/email HTTP/1.1\r\n"), daemon)  # type: ignore[arg-type]
    flood = [FakeWriter() for _ in range(10)]
    for key, writer in enumerate(flood, start=1):
        assert caps.admit(key, "127.0.0.1", reader(), writer)  # type: ignore[arg-type]
    assert not daemon.transport.aborted
    assert sum(w.transport.aborted for w in flood) == 8
    assert caps.waiting == 3


def test_settled_connections_do_not_wait_and_open_is_capped() -> None:
    caps = ConnectionCaps(Limits(max_open=2, max_waiting=2, max_waiting_per_caller=2))
    assert caps.admit(1, "a", reader(), FakeWriter())  # type: ignore[arg-type]
    caps.settled(1)
    assert caps.admit(2, "a", reader(), FakeWriter())  # type: ignore[arg-type]
    caps.settled(2)
    assert caps.waiting == 0 and caps.open == 2
    # Nothing waits that could be closed, and two are open: the third is refused.
    assert not caps.admit(3, "b", reader(), FakeWriter())  # type: ignore[arg-type]
    assert caps.refused == 1
    caps.release(1)
    assert caps.admit(4, "b", reader(), FakeWriter())  # type: ignore[arg-type]
