"""Dovecot's userdb file as the gate writes it (roost/gate/userdbfile.py)."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

from roost.core.directory import Directory, UserEntry
from roost.gate.userdbfile import UserdbFile, userdb_lines
from tests.unit.test_gate_support import DOMAIN, running_gate


def user(email: str, quota: int = 0) -> UserEntry:
    local, _, domain = email.partition("@")
    return UserEntry(email, local, domain, "unused", quota_bytes=quota)


def test_only_users_with_a_home_and_an_address_the_format_can_hold() -> None:
    users = [
        user("b@example.test", 1000),
        user("a@example.test"),
        user("new@example.test"),  # no home yet: the gate's userdb answers and makes it
        user("odd:name@example.test"),  # a colon would end the field
    ]
    homes = {"a@example.test", "b@example.test", "odd:name@example.test", "stray"}
    assert userdb_lines(users, homes) == (
        "a@example.test:::::::userdb_quota_rule=*:bytes=0\n"
        "b@example.test:::::::userdb_quota_rule=*:bytes=1000\n"
    )


def test_each_write_replaces_the_file_with_a_later_mtime(tmp_path: Path) -> None:
    mail = tmp_path / "mail"
    (mail / "joe@example.test").mkdir(parents=True)
    (mail / "link@example.test").symlink_to(tmp_path)  # not a home: never followed
    path = tmp_path / "run" / "gate-userdb" / "users"
    directory = Directory.build(
        domains=["example.test"],
        users=[user("joe@example.test", 5), user("link@example.test")],
    )
    writer = UserdbFile(path, mail)

    joe_more = Directory.build(
        domains=["example.test"],
        users=[user("joe@example.test", 6), user("link@example.test")],
    )

    async def writes() -> list[os.stat_result]:
        seen = []
        # Within one second: Dovecot compares whole seconds and sizes.
        for state in (directory, directory, joe_more):
            await writer.loaded(state)
            seen.append(path.stat())
        return seen

    first, same, second = asyncio.run(writes())
    assert same.st_ino == first.st_ino  # nothing changed for Dovecot: not written again
    assert path.read_text() == "joe@example.test:::::::userdb_quota_rule=*:bytes=6\n"
    assert int(second.st_mtime) > int(first.st_mtime)
    assert first.st_ino != second.st_ino  # replaced whole, never rewritten in place
    assert stat.S_IMODE(second.st_mode) == 0o640
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o750
    assert not path.with_name("users.new").exists()


def test_a_new_home_brings_the_user_in_soon(tmp_path: Path) -> None:
    mail = tmp_path / "mail"
    mail.mkdir()
    path = tmp_path / "users"
    directory = Directory.build(domains=["example.test"], users=[user("new@example.test")])
    writer = UserdbFile(path, mail)

    async def scenario() -> str:
        await writer.loaded(directory)
        assert path.read_text() == ""
        (mail / "new@example.test").mkdir()  # what the gate's userdb answer does
        writer.home_made("new@example.test")
        writer.home_made("new@example.test")  # a burst of new homes is one write
        await asyncio.sleep(1.5)
        written = path.stat()
        writer.home_made("new@example.test")  # in the file now: nothing to do
        writer.home_made("odd:name@example.test")  # never in it: nothing to do
        await asyncio.sleep(1.5)
        assert path.stat().st_mtime == written.st_mtime
        return path.read_text()

    assert asyncio.run(scenario()) == "new@example.test:::::::userdb_quota_rule=*:bytes=0\n"


def test_the_running_gate_writes_it_and_adds_a_user_after_their_first_lookup(
    tmp_path: Path,
) -> None:
    with running_gate(tmp_path, "127.0.4.70") as gate:
        path = gate.layout.gate_userdb
        assert path.read_text() == ""  # no home yet
        gate.layout.mail.mkdir()  # as Dovecot's service leaves it
        assert gate.get(f"/dovecot/userdb/joe@{DOMAIN}")[0] == 200  # makes joe's home
        deadline = time.monotonic() + 5
        while f"joe@{DOMAIN}:" not in path.read_text():
            assert time.monotonic() < deadline, path.read_text()
            time.sleep(0.1)
