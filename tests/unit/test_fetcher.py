"""Fetched accounts: fetchmail's run control (read back by fetchmail itself), the error line
the user sees, IMAP's folder names, the rounds against a real store, the service."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from roost.core import imaputf7
from roost.fetcher import rounds
from roost.layout import Layout
from roost.runner.stack import enabled_services
from roost.services.fetchmail import rc
from roost.services.fetchmail.service import FetchmailService
from roost.store.entities import fetch as fetch_entity
from roost.store.models import Fetch
from tests.unit.test_gate_support import add_domain, add_user, make_settings, open_store
from tests.unit.test_services_postfix_support import roost_root

ADDRESS = "127.0.5.77"
DELIVERY = rc.Delivery(Path("/srv/roost/run/dovecot/lmtp"), "127.0.5.77", 10025)


def account(**values: object) -> rc.Account:
    base: dict[str, object] = {
        "id": 7,
        "protocol": "imap",
        "host": "imap.example.org",
        "port": 993,
        "tls": True,
        "username": "old",
        "password": "secret",
        "keep": False,
        "scan": False,
        "invisible": False,
        "folders": (),
        "recipient": "ann@example.test",
    }
    return rc.Account(**(base | values))  # type: ignore[arg-type]


def unescaped(quoted: str) -> str:
    """A quoted string of :func:`rc.quoted` read back (every byte is ``\\xhh``)."""
    assert quoted.startswith('"') and quoted.endswith('"')
    return bytes.fromhex(quoted[1:-1].replace("\\x", "")).decode("utf-8")


# -- IMAP folder names (RFC 3501 section 5.1.3) -----------------------------------------------


@pytest.mark.parametrize(
    ("name", "encoded"),
    [
        ("INBOX", "INBOX"),
        ("Envoyés", "Envoy&AOk-s"),
        ("A&B", "A&-B"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # the RFC's example
        ("😀", "&2D3eAA-"),
    ],
)
def test_folder_names_are_modified_utf7(name: str, encoded: str) -> None:
    assert imaputf7.encode(name) == encoded


# -- the run control ------------------------------------------------------------------------


def test_every_string_is_quoted_byte_by_byte() -> None:
    hostile = 'a"b\\c\nd poll é'
    text = rc.quoted(hostile)
    assert set(text[1:-1].replace("\\x", "")) <= set("0123456789abcdef")
    assert unescaped(text) == hostile
    with pytest.raises(rc.RcError, match="NUL"):
        rc.quoted("a\0b", "password")


def test_an_imap_account_with_tls_delivers_by_lmtp_from_its_folders() -> None:
    text = rc.render(account(folders=("INBOX", "Envoyés")), DELIVERY)
    poll, user, password, local, smtphost, folder, options = text.splitlines()
    assert poll.startswith("poll ") and poll.endswith(" proto IMAP service 993")
    assert unescaped(poll.split()[1]) == "imap.example.org"
    assert unescaped(user.split()[1]) == "old"
    assert unescaped(password.split()[-1]) == "secret"
    assert unescaped(local.split()[1]) == "ann@example.test"
    assert smtphost.endswith(" lmtp")
    assert unescaped(smtphost.split()[1]) == "/srv/roost/run/dovecot/lmtp"
    assert [unescaped(q.strip(",")) for q in folder.split()[1:]] == ["INBOX", "Envoy&AOk-s"]
    assert options.split() == [
        *["options", "antispam", "501,", "504,", "550,", "553,", "554"],
        "ssl",
        "sslcertck",
        "fetchall",
    ]


def test_a_pop3_account_without_tls_needs_starttls_and_scanning_goes_through_postfix() -> None:
    text = rc.render(
        account(protocol="pop3", tls=False, port=110, keep=True, scan=True, folders=("X",)),
        DELIVERY,
        "limit 1000 ",
    )
    assert " proto POP3 service 110\n" in text
    assert "folder" not in text  # POP3 has one mailbox
    smtphost = next(line for line in text.splitlines() if "smtphost" in line)
    assert unescaped(smtphost.split()[1]) == "127.0.5.77/10025"
    assert " lmtp" not in text
    assert text.rstrip().endswith('sslproto "TLS1.2+" sslcertck keep limit 1000')
    assert " ssl " not in text


def test_an_imap_account_without_folders_fetches_inbox() -> None:
    folder = next(line for line in rc.render(account(), DELIVERY).splitlines() if "folder" in line)
    assert unescaped(folder.split()[1]) == "INBOX"


def test_an_unknown_protocol_or_a_nul_is_refused() -> None:
    with pytest.raises(rc.RcError, match="protocol"):
        rc.render(account(protocol="smtp"), DELIVERY)
    with pytest.raises(rc.RcError, match="password"):
        rc.render(account(password="a\0b"), DELIVERY)


def configdump(text: str, home: Path) -> str:
    fetchmail = shutil.which("fetchmail")
    if fetchmail is None:
        pytest.skip("fetchmail is not installed (deploy/debian-packages.txt)")
    environ = {"HOME": str(home), "FETCHMAILHOME": str(home), "PATH": os.defpath}
    done = subprocess.run(
        [fetchmail, "--fetchmailrc", "-", "--configdump"],
        input=text.encode(),
        capture_output=True,
        env=environ,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.decode("utf-8", "replace")


def test_fetchmail_reads_a_hostile_account_back_as_one_poll(tmp_path: Path) -> None:
    """fetchmail's own parser: a password, user name and folder that try to close the
    string and add a server or an option stay strings of the one account."""
    hostile = 'x" there with password "y"\npoll evil.test proto POP3\n\tuser "z\\'
    text = rc.render(
        account(username=hostile, password=hostile, folders=(hostile.replace(",", ""),)),
        DELIVERY,
    )
    dump = configdump(text, tmp_path)
    assert dump.count('"pollname":') == 1
    assert '"pollname":"imap.example.org"' in dump
    assert '"remote":"x\\" there with password \\"y\\"\\npoll evil.test' in dump
    assert "'fetchall':TRUE" in dump and "'sslcertck':TRUE" in dump and "'ssl':TRUE" in dump


# -- what the user sees ---------------------------------------------------------------------


def test_success_and_no_mail_are_no_error() -> None:
    assert rc.error_line(0, ["3 messages for old at imap.example.org."]) == ""
    assert rc.error_line(1, ["fetchmail: No mail for old at imap.example.org"]) == ""


def test_an_error_says_what_it_means_and_what_fetchmail_said() -> None:
    output = [
        "fetchmail: WARNING: Running as root is discouraged.",
        "fetchmail: Authorization failure on old@imap.example.org",
        "fetchmail: For help, see http://www.fetchmail.info/fetchmail-FAQ.html#R15",
    ]
    assert rc.error_line(3, output) == (
        "the server refused the user name or password: Authorization failure on "
        "old@imap.example.org"
    )
    assert rc.error_line(2, []) == "cannot reach the server"
    assert rc.error_line(23, ["", "oops"]) == "fetchmail failed (exit code 23): oops"


def test_the_command_line_reads_the_run_control_from_stdin() -> None:
    command = rc.argv("/usr/bin/fetchmail", Path("/r/fetchmail"), Path("/r/fetchmail/7.ids"), True)
    assert command[:3] == ["/usr/bin/fetchmail", "--fetchmailrc", "-"]
    assert command[command.index("--idfile") + 1] == "/r/fetchmail/7.ids"
    assert "--sslcertck" in command and "--invisible" in command
    assert "secret" not in " ".join(command)


# -- rounds against a store -----------------------------------------------------------------


@pytest.fixture()
def root() -> Iterator[Path]:
    with roost_root() as path:
        yield path


def test_a_round_fetches_enabled_users_and_records_each_result(root: Path) -> None:
    settings = make_settings(root, ADDRESS, FETCHMAIL_ENABLED=True)
    layout = Layout(settings)
    store = open_store(settings)
    try:
        add_domain(store, "example.test")
        add_user(store, "ann@example.test", "pw-1")
        add_user(store, "off@example.test", "pw-2", enabled=False)
        with store.session() as db:
            for email, host in (("ann@example.test", "good"), ("ann@example.test", "bad")):
                fetch_entity.add_fetch(
                    db, email, fetch_entity.FetchSettings("imap", host, "u", password="p")
                )
            fetch_entity.add_fetch(
                db, "off@example.test", fetch_entity.FetchSettings("pop3", "x", "u", password="p")
            )
        layout.fetchmail_home.mkdir(parents=True)
        stale = layout.fetchmail_idfile(99)
        stale.write_text("old uids\n")
        kept = layout.fetchmail_idfile(3)  # the disabled user's account
        kept.write_text("uids\n")
        seen: list[str] = []

        def fake(_layout: Layout, acct: rc.Account) -> str:
            seen.append(acct.host)
            return "" if acct.host == "good" else "the server refused the user name"

        before = dt.datetime.now().replace(microsecond=0)
        errors = rounds.fetch_round(layout, fake)
        assert seen == ["good", "bad"]
        assert errors == {1: "", 2: "the server refused the user name"}
        assert not stale.exists() and kept.exists()
        with store.session() as db:
            rows = {row.id: row for row in db.query(Fetch)}
            assert rows[1].error is None and rows[1].last_check is not None
            assert rows[1].last_check >= before
            assert rows[2].error == "the server refused the user name"
            assert rows[3].last_check is None
    finally:
        store.dispose()


def test_a_long_error_is_cut_to_the_column(root: Path) -> None:
    settings = make_settings(root, ADDRESS)
    store = open_store(settings)
    try:
        add_domain(store, "example.test")
        add_user(store, "ann@example.test", "pw-1")
        with store.session() as db:
            fetch_entity.add_fetch(
                db, "ann@example.test", fetch_entity.FetchSettings("imap", "h", "u", password="p")
            )
        now = dt.datetime(2026, 1, 2, 3, 4, 5)
        with store.session() as db:
            fetch_entity.record_results(db, {1: (now, "e" * 5000), 42: (now, "gone")})
        with store.session() as db:
            row = db.get(Fetch, 1)
            assert row is not None and row.last_check == now
            assert row.error == "e" * fetch_entity.ERROR_MAX
    finally:
        store.dispose()


# -- the service ----------------------------------------------------------------------------


def test_the_fetcher_runs_only_when_enabled_after_dovecot_and_postfix(root: Path) -> None:
    def names(**values: object) -> list[str]:
        layout = Layout(make_settings(root, ADDRESS, **values))
        return [service.name for service in enabled_services(layout)]

    assert "fetchmail" not in names()
    order = names(FETCHMAIL_ENABLED=True)
    assert order.index("fetchmail") > order.index("dovecot")
    assert order.index("fetchmail") > order.index("postfix")


def test_fetchmails_home_is_postfixs_alone(root: Path) -> None:
    if shutil.which("fetchmail", path="/usr/bin:/bin") is None:
        pytest.skip("fetchmail is not installed (deploy/debian-packages.txt)")
    layout = Layout(make_settings(root, ADDRESS, FETCHMAIL_ENABLED=True))
    service = FetchmailService(layout)
    service.render()
    info = layout.fetchmail_home.stat()
    assert info.st_mode & 0o777 == 0o700
    assert info.st_uid != 0 or os.geteuid() != 0
    assert service.command()[-2:] == ["-m", "roost.fetcher"]
