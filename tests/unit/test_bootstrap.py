"""roost.bootstrap.initialise on a temporary ROOT with SQLite: complete and idempotent."""

from __future__ import annotations

import grp
import os
import pwd
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from roost.bootstrap import BootstrapError, directories, initialise
from roost.core.passwords import verify_password
from roost.layout import WEB_USER, Layout
from roost.settings import Settings, load_settings
from roost.store.db import Store
from roost.store.models import User
from roost.tls import TLSError

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="owners can only be set as root")


def make_settings(base: Path, **extra: str) -> Settings:
    environ = {
        "ROOT": str(base / "root"),
        "DOMAIN": "example.test",
        "HOSTNAMES": "mail.example.test,imap.example.test",
        "TLS_FLAVOR": "notls",
        "CREDENTIAL_ROUNDS": "4",
        **extra,
    }
    return load_settings(environ=environ)


def admin_settings(
    base: Path, password: str = "first-pw-1", mode: str = "ifmissing", **extra: str
) -> Settings:
    return make_settings(
        base,
        INITIAL_ADMIN_ACCOUNT="admin",
        INITIAL_ADMIN_DOMAIN="example.test",
        INITIAL_ADMIN_PW=password,
        INITIAL_ADMIN_MODE=mode,
        **extra,
    )


def admin_user(settings: Settings) -> User | None:
    store = Store.from_settings(settings)
    try:
        with store.session() as session:
            return session.get(User, "admin@example.test")
    finally:
        store.dispose()


def test_creates_every_directory_with_its_mode_and_the_store(base: Path) -> None:
    settings = make_settings(base)
    layout = Layout(settings)
    messages = initialise(settings)
    assert messages[0] == f"created ROOT {layout.root}"
    assert any(m.startswith("created the store sqlite:") for m in messages)
    for directory in directories(layout):
        assert directory.path.is_dir()
        assert stat.S_IMODE(directory.path.stat().st_mode) == directory.mode, directory.path
    for name in ("postfix", "dovecot", "nginx", "rspamd"):
        assert (layout.overrides / name).is_dir()
    database = layout.data / "main.db"
    # The web (WEB_ADMIN's default) runs as its own user: the store is its group's too.
    assert stat.S_IMODE(database.stat().st_mode) == 0o660
    assert Store.from_settings(settings).revision() is not None


@as_root
def test_directories_belong_to_the_users_the_daemons_run_as(base: Path) -> None:
    settings = make_settings(base)
    layout = Layout(settings)
    initialise(settings)
    mail = pwd.getpwnam("mail")
    info = layout.mail.stat()
    assert (info.st_uid, info.st_gid) == (mail.pw_uid, mail.pw_gid)
    assert layout.queue.stat().st_uid == 0
    assert layout.data.stat().st_uid == 0
    # The web traverses it to the store, without listing it or adding anything.
    assert grp.getgrgid(layout.data.stat().st_gid).gr_name == "postfix"
    assert stat.S_IMODE(layout.data.stat().st_mode) == 0o751
    database = layout.data / "main.db"
    assert (database.stat().st_uid, grp.getgrgid(database.stat().st_gid).gr_name) == (
        0,
        WEB_USER,
    )
    assert grp.getgrgid(layout.dkim.stat().st_gid).gr_name == WEB_USER
    assert stat.S_IMODE(layout.dkim.stat().st_mode) == 0o2770


@as_root
def test_without_the_web_the_store_and_keys_are_roots_alone(base: Path) -> None:
    settings = make_settings(base, WEB_ADMIN="", API="false")
    layout = Layout(settings)
    initialise(settings)
    assert grp.getgrgid(layout.data.stat().st_gid).gr_name == "postfix"
    assert stat.S_IMODE(layout.data.stat().st_mode) == 0o750
    database = layout.data / "main.db"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    assert database.stat().st_gid == 0
    assert (layout.dkim.stat().st_gid, stat.S_IMODE(layout.dkim.stat().st_mode)) == (0, 0o750)


@as_root
def test_files_from_before_are_given_to_the_web_without_following_links(base: Path) -> None:
    """A store and keys made while the web ran as root (0600 root) become its group's; a
    symbolic link its group could have put there is left alone, as is what it names."""
    off = make_settings(base, WEB_ADMIN="", API="false")
    layout = Layout(off)
    initialise(off)
    key = layout.dkim / "example.test.mail.key"
    key.write_text("not a real key\n")
    key.chmod(0o600)
    elsewhere = base / "elsewhere"
    elsewhere.write_text("root's\n")
    elsewhere.chmod(0o600)
    (layout.dkim / "trap.key").symlink_to(elsewhere)
    messages = initialise(make_settings(base))
    web_gid = grp.getgrnam(WEB_USER).gr_gid
    for path, mode in ((key, 0o640), (layout.data / "main.db", 0o660)):
        assert (stat.S_IMODE(path.stat().st_mode), path.stat().st_gid) == (mode, web_gid), path
    assert (stat.S_IMODE(elsewhere.stat().st_mode), elsewhere.stat().st_gid) == (0o600, 0)
    assert f"DKIM keys given to group {WEB_USER} (0640): example.test.mail.key" in messages


@as_root
def test_a_store_outside_root_data_must_be_reachable_by_the_web(base: Path) -> None:
    outside = base / "db"
    outside.mkdir(mode=0o700)
    settings = make_settings(base, SQLITE_DATABASE_FILE=str(outside / "main.db"))
    with pytest.raises(BootstrapError, match=f"cannot reach the store in {outside}"):
        initialise(settings)
    os.chown(outside, 0, grp.getgrnam(WEB_USER).gr_gid)
    outside.chmod(0o710)
    initialise(settings)
    assert stat.S_IMODE((outside / "main.db").stat().st_mode) == 0o660


@as_root
def test_the_web_user_writes_the_store_it_cannot_add_files_beside(base: Path) -> None:
    """SQLite run as root makes the -wal and -shm files with the store's owner, group and
    mode; with the gate holding the store open, the web's own user writes it, and leaves
    nothing of its own in ROOT/data."""
    settings = make_settings(base)
    layout = Layout(settings)
    initialise(settings)
    database = layout.data / "main.db"
    held = sqlite3.connect(database)  # the gate's part
    try:
        held.execute("SELECT count(*) FROM alembic_version").fetchall()
        script = (
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
            "c.execute('CREATE TABLE web_wrote (x)'); c.commit(); c.close()"
        )
        as_web = ["setpriv", f"--reuid={WEB_USER}", f"--regid={WEB_USER}", "--clear-groups"]
        subprocess.run([*as_web, sys.executable, "-c", script, database], check=True)
        assert held.execute("SELECT count(*) FROM web_wrote").fetchone() == (0,)
        web_gid = grp.getgrnam(WEB_USER).gr_gid
        for name in ("main.db-wal", "main.db-shm"):
            info = (layout.data / name).stat()
            assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, web_gid, 0o660)
        probe = [*as_web, "touch", str(layout.data / "web-made")]
        assert subprocess.run(probe, capture_output=True).returncode != 0
    finally:
        held.close()


def test_a_second_run_changes_nothing_and_says_nothing(base: Path) -> None:
    settings = admin_settings(base)
    initialise(settings)
    before = admin_user(settings)
    assert initialise(settings) == []
    after = admin_user(settings)
    assert before is not None and after is not None
    assert before.password == after.password


def test_modes_and_owners_are_put_back(base: Path) -> None:
    settings = make_settings(base)
    layout = Layout(settings)
    initialise(settings)
    layout.data.chmod(0o777)
    layout.root.chmod(0o700)
    if os.geteuid() == 0:
        os.chown(layout.mail, 0, 0)
    initialise(settings)
    assert stat.S_IMODE(layout.data.stat().st_mode) == 0o751
    assert stat.S_IMODE(layout.root.stat().st_mode) == 0o755
    if os.geteuid() == 0:
        assert layout.mail.stat().st_uid == pwd.getpwnam("mail").pw_uid


def test_the_first_admin_follows_mailu_modes(base: Path) -> None:
    messages = initialise(admin_settings(base))
    assert "created admin user admin@example.test" in messages
    user = admin_user(admin_settings(base))
    assert user is not None and user.global_admin and user.domain_name == "example.test"
    assert verify_password(user.password, "first-pw-1")[0]

    # ifmissing: an existing admin keeps its password.
    assert initialise(admin_settings(base, password="other-pw-2")) == []
    user = admin_user(admin_settings(base))
    assert user is not None and verify_password(user.password, "first-pw-1")[0]

    # create: reported, not fatal, since the same settings serve every start.
    messages = initialise(admin_settings(base, password="other-pw-2", mode="create"))
    assert messages == ["INITIAL_ADMIN_MODE=create: user 'admin@example.test' exists, not created"]

    # update: the password is reset.
    messages = initialise(admin_settings(base, password="other-pw-2", mode="update"))
    assert messages == ["updated admin password admin@example.test"]
    user = admin_user(admin_settings(base))
    assert user is not None and verify_password(user.password, "other-pw-2")[0]


def test_an_empty_admin_password_creates_nobody_and_says_how(base: Path) -> None:
    settings = admin_settings(base, password="")
    messages = initialise(settings)
    assert any(
        "INITIAL_ADMIN_PW is empty" in m and "roost admin admin example.test -" in m
        for m in messages
    )
    assert admin_user(settings) is None


def test_an_unusable_admin_account_stops_the_start(base: Path) -> None:
    settings = make_settings(
        base,
        INITIAL_ADMIN_ACCOUNT="no body",
        INITIAL_ADMIN_DOMAIN="example.test",
        INITIAL_ADMIN_PW="pw-12345",
    )
    with pytest.raises(BootstrapError, match="INITIAL_ADMIN_ACCOUNT=no body"):
        initialise(settings)


def test_tls_cert_flavor_gets_a_self_signed_certificate_once(base: Path) -> None:
    settings = make_settings(base, TLS_FLAVOR="cert")
    layout = Layout(settings)
    messages = initialise(settings)
    assert any("created a self-signed one" in m for m in messages)
    assert layout.cert_file.is_file()
    assert stat.S_IMODE(layout.key_file.stat().st_mode) == 0o600
    certificate = layout.cert_file.read_bytes()
    assert initialise(settings) == []
    assert layout.cert_file.read_bytes() == certificate


def test_the_certificate_is_checked_at_every_start(base: Path) -> None:
    """A name added to HOSTNAMES later is reported; a broken pair stops the start."""
    initialise(make_settings(base, TLS_FLAVOR="cert"))
    wider = make_settings(
        base, TLS_FLAVOR="cert", HOSTNAMES="mail.example.test,imap.example.test,new.example.test"
    )
    layout = Layout(wider)
    assert initialise(wider) == [
        f"{layout.cert_file}: does not cover new.example.test from HOSTNAMES (its names: "
        "mail.example.test, imap.example.test, localhost); clients connecting by those "
        "names will refuse it"
    ]
    layout.key_file.write_text("not a key\n")
    with pytest.raises(TLSError, match=f"{layout.key_file}: not a PEM private key"):
        initialise(wider)


def test_a_private_key_readable_by_others_is_closed(base: Path) -> None:
    settings = make_settings(base, TLS_FLAVOR="cert")
    layout = Layout(settings)
    initialise(settings)
    layout.key_file.chmod(0o644)
    messages = initialise(settings)
    assert messages == [
        f"{layout.key_file}: mode 0644 let other users read the private key; set to 0600"
    ]
    assert stat.S_IMODE(layout.key_file.stat().st_mode) == 0o600


def test_a_root_other_users_cannot_reach_is_refused(base: Path) -> None:
    closed = base / "closed"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    settings = load_settings(environ={"ROOT": str(closed / "root"), "TLS_FLAVOR": "notls"})
    with pytest.raises(BootstrapError, match=f"its parent {closed} is not searchable"):
        initialise(settings)
    assert not (closed / "root").exists()


def test_a_file_where_a_directory_belongs_is_refused(base: Path) -> None:
    settings = make_settings(base)
    layout = Layout(settings)
    layout.root.mkdir()
    layout.queue.write_text("not a directory\n")
    with pytest.raises(BootstrapError, match="queue: exists and is not a directory"):
        initialise(settings)
