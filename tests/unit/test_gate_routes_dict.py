"""The gate's dict socket, spoken to as Dovecot's proxy dict client speaks (protocol 3.2).

The lines sent here are the ones Dovecot 2.3.19 sends (seen on the wire): a hello with an
empty user, lookups that name the user after the key, and quota_clone's transaction of
two SETs and a COMMIT.
"""

from __future__ import annotations

import asyncio
import grp
import json
import socket
import stat
import time
from collections.abc import Iterator
from datetime import date

import pytest
from sqlalchemy import select

from roost.core.sieve import before_script, script_id
from roost.gate.control import request_reload
from roost.gate.dictproxy import MAX_CHANGES, MAX_TRANSACTIONS, tab_escape, tab_unescape
from roost.gate.routes import QuotaUsageWriter
from roost.store.db import Store, StoreError
from roost.store.models import User
from roost.store.snapshot import load_directory
from tests.unit.test_gate_support import DOMAIN, GateHarness, running_gate

HELLO_SIEVE = "H3\t2\t0\t\tsieve"
HELLO_QUOTA = "H3\t2\t0\t\tquota"


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateHarness]:
    with running_gate(tmp_path_factory.mktemp("dict"), "127.0.4.40") as harness:
        yield harness


class DictClient:
    """One connection to the dict socket; ``ask`` sends lines and reads replies."""

    def __init__(self, gate: GateHarness, hello: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(str(gate.layout.gate_dict))
        self.file = self.sock.makefile("rb")
        self.send(hello)

    def send(self, *lines: str) -> None:
        if lines:
            self.sock.sendall("".join(line + "\n" for line in lines).encode())

    def reply(self) -> str:
        return self.file.readline().decode().rstrip("\n")

    def ask(self, line: str) -> str:
        self.send(line)
        return self.reply()

    def closed(self) -> bool:
        return self.file.readline() == b""

    def close(self) -> None:
        self.sock.close()


def stored_usage(store: Store, email: str) -> int:
    with store.session() as session:
        return int(session.scalar(select(User.quota_bytes_used).where(User.email == email)))


def wait_for_usage(store: Store, email: str, expected: int) -> None:
    deadline = time.monotonic() + 5
    while stored_usage(store, email) != expected:
        assert time.monotonic() < deadline, f"usage of {email} never became {expected}"
        time.sleep(0.05)


# -- the protocol's escaping ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("plain", "plain"),
        ("a\tb", "a\x01tb"),
        ("line\nnext\r", "line\x01nnext\x01r"),
        ("\x01t is not a tab", "\x011t is not a tab"),
    ],
)
def test_tab_escaping_round_trips(text: str, escaped: str) -> None:
    assert tab_escape(text) == escaped
    assert tab_unescape(escaped) == text


# -- the socket --------------------------------------------------------------------------


def test_only_the_mail_group_may_open_the_socket(gate: GateHarness) -> None:
    path = gate.layout.gate_dict
    mail_gid = grp.getgrnam("mail").gr_gid
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o750
    assert path.stat().st_gid == mail_gid and path.parent.stat().st_gid == mail_gid


# -- the before script ---------------------------------------------------------------------


def expected_script(gate: GateHarness, email: str) -> str:
    user = load_directory(gate.store).user(email)
    assert user is not None
    return before_script(user, date.today())


def test_before_script_name_then_data(gate: GateHarness) -> None:
    script = expected_script(gate, f"joe@{DOMAIN}")
    client = DictClient(gate, HELLO_SIEVE)
    try:
        assert client.ask(f"Lpriv/sieve/name/roost\tjoe@{DOMAIN}") == "O" + script_id(script)
        reply = client.ask(f"Lpriv/sieve/data/{script_id(script)}\tjoe@{DOMAIN}")
        # One line: the script's line feeds travel tab-escaped.
        assert reply.startswith("O") and "\n" not in reply
        assert tab_unescape(reply[1:]) == script
    finally:
        client.close()


def test_unknown_user_or_key_is_not_found(gate: GateHarness) -> None:
    client = DictClient(gate, HELLO_SIEVE)
    try:
        assert client.ask(f"Lpriv/sieve/name/roost\tnobody@{DOMAIN}") == "N"
        assert client.ask(f"Lpriv/other/thing\tjoe@{DOMAIN}") == "N"
        assert client.ask(f"Lshared/sieve/name/roost\tjoe@{DOMAIN}") == "N"
        # The connection is still usable afterwards.
        assert client.ask(f"Lpriv/sieve/name/roost\tjoe@{DOMAIN}").startswith("Oroost-")
    finally:
        client.close()


def test_reply_settings_change_the_script_at_once(gate: GateHarness) -> None:
    email = f"nopop@{DOMAIN}"
    before = expected_script(gate, email)
    with gate.store.session() as session:
        user = session.get(User, email)
        assert user is not None
        user.reply_enabled, user.reply_body = True, "Away."
    assert request_reload(gate.layout) is not None
    after = expected_script(gate, email)
    assert "vacation" in after and before != after
    client = DictClient(gate, HELLO_SIEVE)
    try:
        assert client.ask(f"Lpriv/sieve/name/roost\t{email}") == "O" + script_id(after)
    finally:
        client.close()


def test_iteration_is_refused(gate: GateHarness) -> None:
    client = DictClient(gate, HELLO_SIEVE)
    try:
        assert client.ask(f"I0\t0\tpriv/sieve/\tjoe@{DOMAIN}") == ("Fdict sieve cannot be iterated")
    finally:
        client.close()


# -- quota usage ---------------------------------------------------------------------------


def test_quota_clone_usage_is_stored_without_a_new_generation(gate: GateHarness) -> None:
    email = f"joe@{DOMAIN}"
    generation = gate.store.generation()
    client = DictClient(gate, HELLO_QUOTA)
    try:
        client.send(f"B1\t{email}", "S1\tpriv/quota/storage\t4321", "S1\tpriv/quota/messages\t3")
        assert client.ask("C1") == "O1"
        wait_for_usage(gate.store, email, 4321)
        # An asynchronous commit is answered with an "A" in front.
        client.send(f"B2\t{email}", "S2\tpriv/quota/storage\t5000")
        assert client.ask("D2") == "AO2"
        wait_for_usage(gate.store, email, 5000)
    finally:
        client.close()
    assert gate.store.generation() == generation
    with gate.store.session() as session:
        user = session.get(User, email)
        assert user is not None and user.updated_at is None  # usage is not an edit


def test_rolled_back_or_refused_transactions_change_nothing(gate: GateHarness) -> None:
    email = f"fwd@{DOMAIN}"
    client = DictClient(gate, HELLO_QUOTA)
    try:
        client.send(f"B7\t{email}", "S7\tpriv/quota/storage\t999", "R7")
        client.send(f"B8\t{email}", "A8\tpriv/quota/storage\t10")
        assert client.ask("C8") == "F8\tdict quota has no counters to increment"
        client.send(f"B9\t{email}", "S9\tpriv/quota/storage\tlots")
        assert client.ask("C9") == "F9\tpriv/quota/storage: 'lots' is not a number of bytes"
        client.send(f"B10\tnobody@{DOMAIN}", "S10\tpriv/quota/storage\t12")
        assert client.ask("C10") == "O10"  # a mailbox that is no user any more: ignored
    finally:
        client.close()
    time.sleep(1.5)  # longer than the writer's interval
    assert stored_usage(gate.store, email) == 0


def test_unfinished_transactions_are_capped_per_connection(gate: GateHarness) -> None:
    email = f"fwd@{DOMAIN}"
    client = DictClient(gate, HELLO_QUOTA)
    try:
        # MAX_TRANSACTIONS begun and never finished are kept ...
        client.send(*(f"B{n}\t{email}" for n in range(MAX_TRANSACTIONS)))
        # ... the next one is refused where the protocol can say so: at its commit.
        over = MAX_TRANSACTIONS
        client.send(f"B{over}\t{email}", f"S{over}\tpriv/quota/storage\t77")
        assert client.ask(f"C{over}") == f"F{over}\tmore than {MAX_TRANSACTIONS} open transactions"
        # Finishing one makes room again.
        client.send("R0", f"B900\t{email}", "S900\tpriv/quota/storage\t5")
        assert client.ask("C900") == "O900"
        # A client that keeps opening refused ones is cut off.
        client.send(*(f"B{1000 + n}\t{email}" for n in range(MAX_TRANSACTIONS + 2)))
        assert client.closed()
    finally:
        client.close()


def test_a_transaction_with_too_many_changes_fails_at_commit(gate: GateHarness) -> None:
    client = DictClient(gate, HELLO_QUOTA)
    try:
        client.send(f"B1\tfwd@{DOMAIN}")
        client.send(*(f"S1\tpriv/key{n}\t1" for n in range(MAX_CHANGES + 1)))
        assert client.ask("C1") == f"F1\tmore than {MAX_CHANGES} changes in one transaction"
        assert client.ask(f"Lpriv/sieve/name/roost\tjoe@{DOMAIN}").startswith(("O", "N", "F"))
    finally:
        client.close()


@pytest.mark.parametrize(
    "lines",
    [
        ["Lpriv/sieve/name/roost\tjoe@example.test"],  # no hello first
        ["H2\t1\t0\tjoe@example.test\tsieve"],  # a protocol this gate does not speak
        [HELLO_SIEVE, "Xwhat"],  # an unknown command
        [HELLO_QUOTA, "S5\tpriv/quota/storage\t1"],  # a transaction never begun
        [HELLO_QUOTA, "C5"],
    ],
)
def test_a_broken_conversation_is_closed(gate: GateHarness, lines: list[str]) -> None:
    client = DictClient(gate, lines[0])
    try:
        client.send(*lines[1:])
        assert client.closed()
    finally:
        client.close()


# -- the writer ----------------------------------------------------------------------------


class _UnwritableStore:
    """Stands for a store whose database refuses writes."""

    @property
    def engine(self) -> None:
        raise StoreError("database is locked")


def test_writer_keeps_figures_the_store_refused(gate: GateHarness) -> None:
    first, second = f"noimap@{DOMAIN}", f"quota@{DOMAIN}"

    async def scenario() -> None:
        writer = QuotaUsageWriter(_UnwritableStore())  # type: ignore[arg-type]
        writer.note(first, 1)
        writer.note(second, 7)
        await writer.flush()
        writer.note(first, 2)  # newer than the figure kept
        writer._store = gate.store  # the database is back
        await writer.flush()

    asyncio.run(scenario())
    assert stored_usage(gate.store, first) == 2
    assert stored_usage(gate.store, second) == 7


# -- counting --------------------------------------------------------------------------------


def requests_answered(gate: GateHarness) -> dict[str, int]:
    counts: dict[str, int] = json.loads(gate.get("/health")[2])["requests"]
    return counts


def test_health_counts_the_requests_of_each_kind(gate: GateHarness) -> None:
    email = f"joe@{DOMAIN}"
    before = requests_answered(gate)
    sieve = DictClient(gate, HELLO_SIEVE)
    quota = DictClient(gate, HELLO_QUOTA)
    try:
        assert sieve.ask(f"Lpriv/sieve/name/roost\t{email}").startswith("O")
        assert sieve.ask(f"Lpriv/sieve/name/roost\t{email}").startswith("O")
        quota.send(f"B1\t{email}", "S1\tpriv/quota/storage\t10", "S1\tpriv/quota/messages\t1")
        assert quota.ask("C1") == "O1"
    finally:
        sieve.close()
        quota.close()
    assert gate.lookup("recipientmap", email) == "NOTFOUND "
    assert gate.lookup("alias", email) == f"OK {email}"
    assert gate.lookup("alias", email) == f"OK {email}"  # a cached answer still counts
    assert gate.lookup("nosuchmap", email).startswith("TEMP")
    assert gate.get(f"/dovecot/userdb/{email}")[0] == 200
    after = requests_answered(gate)
    moved = {kind: after[kind] - before.get(kind, 0) for kind in after}
    assert {kind: n for kind, n in moved.items() if n} == {
        "dict sieve connection": 1,
        "dict sieve lookup": 2,
        "dict quota connection": 1,
        "dict quota commit": 1,
        "socketmap recipientmap": 1,
        "socketmap alias": 2,
        "socketmap ?": 1,
        "http userdb": 1,
        "http health": 1,  # the first of the two questions above
    }
