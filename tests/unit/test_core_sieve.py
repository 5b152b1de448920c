"""The before script Roost renders for each delivery, checked by Pigeonhole's own tools.

``sievec`` must compile every script, and ``sieve-test`` (dovecot-sieve) runs it against a
message and prints the actions it would take: that is how these tests see that a hostile
display name, subject or body stays text and adds no rule.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest

from roost.core.directory import UserEntry
from roost.core.sieve import before_script, script_id, sieve_string

TODAY = date(2025, 7, 1)
USER = UserEntry(
    "joe@example.test",
    "joe",
    "example.test",
    "unused",
    reply_enabled=True,
    reply_subject="Away",
    reply_body="Back on Monday.",
    displayed_name="Joe Bloggs",
)
#: Everything that could end a Sieve string, start a command or a variable, or end a
#: multi-line string.
HOSTILE = 'x"; discard; "\\"; keep; ${hex:41} \\\\ ${1} text:\n.\nend'

needs_pigeonhole = pytest.mark.skipif(
    shutil.which("sieve-test") is None or shutil.which("sievec") is None,
    reason="sievec and sieve-test come with Debian's dovecot-sieve",
)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory sieve-test may write to (it drops to the mail user when root)."""
    path = Path(tempfile.mkdtemp(prefix="roost-sieve-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


def _config(workdir: Path) -> Path:
    """sieve-test's Dovecot settings: Roost's spamtest settings, a scratch mailbox."""
    lines = [f"mail_location = maildir:{workdir}/mail"]
    if os.geteuid() == 0:
        mail = pwd.getpwnam("mail")
        lines += [
            f"mail_uid = {mail.pw_uid}",
            f"mail_gid = {mail.pw_gid}",
            f"first_valid_uid = {mail.pw_uid}",
            f"first_valid_gid = {mail.pw_gid}",
        ]
    lines += [
        "plugin {",
        "  sieve_extensions = +spamtest +spamtestplus",
        "  sieve_spamtest_status_type = strlen",
        "  sieve_spamtest_status_header = X-Spam-Level",
        "  sieve_spamtest_max_value = 15",
        "}",
    ]
    config = workdir / "dovecot.conf"
    config.write_text("\n".join(lines) + "\n")
    return config


def compile_script(workdir: Path, script: str) -> subprocess.CompletedProcess[str]:
    path = workdir / "before.sieve"
    path.write_text(script, encoding="utf-8")
    return subprocess.run(
        ["sievec", "-c", str(_config(workdir)), str(path), str(workdir / "before.svbin")],
        capture_output=True,
        text=True,
        check=False,
    )


def run_script(
    workdir: Path,
    script: str,
    headers: str = "From: Ann <ann@remote.test>\n",
    envelope_from: str = "ann@remote.test",
) -> str:
    """sieve-test's report of what ``script`` does with a message carrying ``headers``."""
    path = workdir / "before.sieve"
    path.write_text(script, encoding="utf-8")
    message = workdir / "message.eml"
    message.write_text(
        f"{headers}To: joe@example.test\nSubject: hello\nMessage-ID: <1@remote.test>\n\nhi\n"
    )
    for item in workdir.iterdir():
        item.chmod(0o666)
    result = subprocess.run(
        [
            "sieve-test",
            "-c",
            str(_config(workdir)),
            "-a",
            "joe@example.test",
            "-f",
            envelope_from,
            str(path),
            str(message),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def actions(report: str) -> list[str]:
    """The actions sieve-test lists, the implicit keep included; not the duplicate
    tracking that every script does (test_every_message_is_tracked_for_duplicates)."""
    return [a for a in re.findall(r"^ \* (.+)$", report, re.M) if a != "track duplicate"]


def vacation_of(report: str) -> dict[str, str] | None:
    """The vacation action sieve-test reports: its subject, from and message text."""
    if "send vacation message" not in report:
        return None
    fields = dict(re.findall(r"=> (\w+)\s*: (.*)", report))
    body = re.search(r"START MESSAGE\n(.*)\nEND MESSAGE", report, re.S)
    assert body is not None
    fields["body"] = body.group(1)
    return fields


# -- quoting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("plain", '"plain"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ('\\"', '"\\\\\\""'),
        ("two\nlines", '"two\nlines"'),
        ("${var}", '"${var}"'),
    ],
)
def test_sieve_string_escapes_quote_and_backslash_only(text: str, quoted: str) -> None:
    assert sieve_string(text) == quoted


# -- what is rendered ----------------------------------------------------------------------


def test_spam_rule_follows_the_users_settings() -> None:
    script = before_script(replace(USER, reply_enabled=False, spam_threshold=60), TODAY)
    assert 'spamtest :percent :value "gt" :comparator "i;ascii-numeric" "60"' in script
    assert 'fileinto :create :flags "\\\\Seen" "Junk";' in script

    unread = before_script(replace(USER, reply_enabled=False, spam_mark_as_read=False), TODAY)
    assert 'fileinto :create "Junk";' in unread
    assert "imap4flags" not in unread

    assert "spamtest" not in before_script(replace(USER, spam_enabled=False), TODAY)


def test_without_rules_only_duplicates_are_dropped() -> None:
    script = before_script(replace(USER, spam_enabled=False, reply_enabled=False), TODAY)
    assert script == (
        "# Generated by Roost for each delivery from the user's settings; do not edit.\n"
        'require ["duplicate"];\n'
        "# A message this mailbox already stored (same Message-ID) is not stored again.\n"
        "if duplicate :seconds 7200 {\n"
        "    discard;\n"
        "    stop;\n"
        "}\n"
    )


def test_every_message_is_tracked_for_duplicates(workdir: Path) -> None:
    """A retried delivery (Dovecot died before answering) is recognised by Message-ID."""
    script = before_script(replace(USER, spam_enabled=False, reply_enabled=False), TODAY)
    report = run_script(workdir, script)
    assert re.findall(r"^ \* (.+)$", report, re.M)[0] == "track duplicate"


@pytest.mark.parametrize(
    ("start", "end", "active"),
    [
        (TODAY, TODAY, True),
        (TODAY - timedelta(days=3), TODAY + timedelta(days=3), True),
        (TODAY + timedelta(days=1), date(2999, 12, 31), False),
        (date(1900, 1, 1), TODAY - timedelta(days=1), False),
    ],
)
def test_reply_only_inside_its_date_window(start: date, end: date, active: bool) -> None:
    user = replace(USER, reply_startdate=start, reply_enddate=end)
    assert ("vacation " in before_script(user, TODAY)) is active


def test_disabled_reply_is_not_rendered() -> None:
    assert "vacation" not in before_script(replace(USER, reply_enabled=False), TODAY)


def test_reply_without_subject_or_name_leaves_them_to_pigeonhole() -> None:
    script = before_script(replace(USER, reply_subject=None, displayed_name=""), TODAY)
    assert "vacation :days 1\n" in script
    assert ":subject" not in script and ":from" not in script


def test_script_id_changes_with_the_text() -> None:
    first = before_script(USER, TODAY)
    second = before_script(replace(USER, reply_body="Back on Tuesday."), TODAY)
    assert script_id(first) == script_id(before_script(USER, TODAY))
    assert script_id(first) != script_id(second)
    assert re.fullmatch(r"roost-[0-9a-f]{24}", script_id(first))


# -- what Pigeonhole makes of it -------------------------------------------------------------


@needs_pigeonhole
def test_rendered_scripts_compile(workdir: Path) -> None:
    for user in (
        USER,
        replace(USER, spam_mark_as_read=False),
        replace(USER, spam_enabled=False),
        replace(USER, reply_enabled=False),
        replace(USER, reply_subject=None, displayed_name=""),
    ):
        result = compile_script(workdir, before_script(user, TODAY))
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""  # not even a warning


@needs_pigeonhole
def test_reply_is_sent_with_the_users_texts(workdir: Path) -> None:
    vacation = vacation_of(run_script(workdir, before_script(USER, TODAY)))
    assert vacation is not None
    assert vacation["seconds"] == "86400"  # :days 1
    assert vacation["subject"] == "Away"
    assert vacation["from"] == "Joe Bloggs <joe@example.test>"
    assert vacation["body"] == "Back on Monday."


@needs_pigeonhole
def test_hostile_texts_stay_text(workdir: Path) -> None:
    user = replace(USER, displayed_name=HOSTILE, reply_subject=HOSTILE, reply_body=HOSTILE)
    script = before_script(user, TODAY)
    assert compile_script(workdir, script).returncode == 0

    report = run_script(workdir, script)
    vacation = vacation_of(report)
    assert vacation is not None
    assert vacation["body"] == HOSTILE
    # A header is one line: the line break became a space.
    assert vacation["subject"] == HOSTILE.replace("\n", " ")
    # The display name is quoted for RFC 5322 inside the Sieve string.
    assert vacation["from"].endswith(" <joe@example.test>")
    # Only the reply, and the implicit keep: nothing discarded, nothing else added.
    assert actions(report) == ["send vacation message:", "store message in folder: INBOX"]


@needs_pigeonhole
def test_control_characters_and_carriage_returns_are_dropped(workdir: Path) -> None:
    user = replace(USER, reply_subject="A\rB\x00C", reply_body="one\r\ntwo\rthree\x07\x1b")
    script = before_script(user, TODAY)
    assert compile_script(workdir, script).returncode == 0
    vacation = vacation_of(run_script(workdir, script))
    assert vacation is not None
    assert vacation["subject"] == "A BC"
    assert vacation["body"] == "one\ntwo\nthree"


@needs_pigeonhole
def test_non_ascii_display_name_is_encoded(workdir: Path) -> None:
    script = before_script(replace(USER, displayed_name="Zoë Ünal"), TODAY)
    vacation = vacation_of(run_script(workdir, script))
    assert vacation is not None
    assert vacation["from"] == "=?utf-8?b?Wm/DqyDDnG5hbA==?= <joe@example.test>"


@needs_pigeonhole
@pytest.mark.parametrize(
    ("headers", "envelope_from"),
    [
        ("From: Robot <noreply@remote.test>\n", "bounces@remote.test"),
        ("From: Robot <No-Reply@remote.test>\n", "bounces@remote.test"),
        ("From: Ann <ann@remote.test>\nReply-To: donotreply@remote.test\n", "ann@remote.test"),
        ("From: Ann <ann@remote.test>\n", "do-not-reply@remote.test"),
        # Programs, as sent and as Postfix's SRS rewrites outside senders (docs/routing.md).
        ("From: ann@remote.test\n", "MAILER-DAEMON@remote.test"),
        ("From: ann@remote.test\n", "SRS0=kwFy=JQ=remote.test=MAILER-DAEMON@example.test"),
        ("From: ann@remote.test\n", "owner-news@remote.test"),
        ("From: ann@remote.test\n", "SRS0=ab12=CD=remote.test=owner-news@example.test"),
        ("From: ann@remote.test\n", "SRS0=ab12=CD=remote.test=LISTSERV@example.test"),
        ("From: ann@remote.test\n", "news-request@remote.test"),
        ("From: ann@remote.test\n", "SRS0=ab12=CD=remote.test=news-request@example.test"),
    ],
)
def test_no_reply_senders_get_no_reply(workdir: Path, headers: str, envelope_from: str) -> None:
    report = run_script(workdir, before_script(USER, TODAY), headers, envelope_from)
    assert actions(report) == ["store message in folder: INBOX"]


@needs_pigeonhole
def test_people_behind_srs_get_their_reply(workdir: Path) -> None:
    srs = "SRS0=ab12=CD=remote.test=ann@example.test"
    report = run_script(workdir, before_script(USER, TODAY), envelope_from=srs)
    assert actions(report) == ["send vacation message:", "store message in folder: INBOX"]


@needs_pigeonhole
def test_spam_goes_to_junk_before_any_reply(workdir: Path) -> None:
    report = run_script(
        workdir,
        before_script(USER, TODAY),
        "From: ann@remote.test\nX-Spam-Level: " + "*" * 13 + "\n",
    )
    assert actions(report) == ["store message in folder: Junk"]
    assert "add IMAP flags: \\seen" in report
