"""One rule book: a bad value is refused alike by the CLI and by config-import.

Each case runs the same value through a CLI verb and through ``config-import --update``
and checks that both refuse it with the same message (the CLI's ``roost: error: <m>``, the
importer's ``- <path> : <m>``), and that nothing was stored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from roost.store.configio import ConfigValidationError, import_config
from roost.store.models import User
from tests.unit.test_cli_support import Stack, error_line, make_stack

CLI_ERROR = "roost: error: "


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    stack = make_stack(tmp_path)
    for args in (("domain", "example.com", "-q", "1000000"), ("user", "joe", "example.com", "pw")):
        result = stack.roost(*args)
        assert result.exit_code == 0, result.stderr
    return stack


def cli_message(stack: Stack, *args: str, input: str | None = None) -> str:
    line = error_line(stack.roost(*args, input=input))
    assert line.startswith(CLI_ERROR), line
    return line[len(CLI_ERROR) :]


def import_message(stack: Stack, user: dict[str, object], field: str) -> str:
    """Import one user item with --update; return the one error's message at ``field``."""
    document = json.dumps({"user": [user]})
    result = stack.roost("config-import", "--update", input=document)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert lines[0] == "[ValidationError] 1 errors occurred during input validation", lines
    prefix = f"- user[0].{field} : "
    assert lines[1].startswith(prefix), lines
    return lines[1][len(prefix) :]


def stored(stack: Stack) -> User:
    with stack.session() as session:
        user = session.get(User, "joe@example.com")
        assert user is not None
        return user


def test_auto_reply_body_with_a_control_character(stack: Stack) -> None:
    body = "Away\x07 until Monday"
    via_cli = cli_message(stack, "autoreply", "joe@example.com", "--body", body)
    via_import = import_message(
        stack, {"email": "joe@example.com", "reply_body": body}, "reply_body"
    )
    assert via_cli == via_import == "auto-reply body must not contain control characters"
    assert stored(stack).reply_body is None


def test_auto_reply_ending_before_it_starts(stack: Stack) -> None:
    via_cli = cli_message(
        stack,
        "autoreply",
        "joe@example.com",
        "--body",
        "away",
        "--start",
        "2030-08-01",
        "--end",
        "2030-07-01",
    )
    via_import = import_message(
        stack,
        {
            "email": "joe@example.com",
            "reply_startdate": "2030-08-01",
            "reply_enddate": "2030-07-01",
        },
        "reply_enddate",
    )
    assert via_cli == via_import == "auto-reply ends (2030-07-01) before it starts (2030-08-01)"
    assert stored(stack).reply_enddate.isoformat() == "2999-12-31"


def test_auto_reply_subject_too_long(stack: Stack) -> None:
    subject = "x" * 256
    via_cli = cli_message(stack, "autoreply", "joe@example.com", "--subject", subject)
    via_import = import_message(
        stack, {"email": "joe@example.com", "reply_subject": subject}, "reply_subject"
    )
    assert via_cli == via_import == "auto-reply subject is 256 characters; at most 255"


def test_auto_reply_subject_on_two_lines(stack: Stack) -> None:
    subject = "Away\nBcc: someone@example.net"
    via_cli = cli_message(stack, "autoreply", "joe@example.com", "--subject", subject)
    via_import = import_message(
        stack, {"email": "joe@example.com", "reply_subject": subject}, "reply_subject"
    )
    assert (
        via_cli == via_import == ("auto-reply subject must be one line without control characters")
    )


def test_quota_above_the_domain_cap(stack: Stack) -> None:
    via_cli = cli_message(stack, "quota", "joe@example.com", "2000000")
    via_import = import_message(
        stack, {"email": "joe@example.com", "quota_bytes": 2000000}, "quota_bytes"
    )
    assert (
        via_cli
        == via_import
        == (
            "quota for 'joe@example.com': 2000000 bytes is above the 1000000 bytes domain "
            "'example.com' allows (its max_quota_bytes)"
        )
    )
    assert stored(stack).quota_bytes == 1000000


def test_negative_quota(stack: Stack) -> None:
    via_cli = cli_message(stack, "quota", "joe@example.com", "-5")
    via_import = import_message(
        stack, {"email": "joe@example.com", "quota_bytes": -5}, "quota_bytes"
    )
    assert via_cli == via_import == "quota -5: accepts 0 (unlimited) or a number of bytes"


@pytest.mark.parametrize(
    ("local", "message"),
    [
        ("jo e", "'jo e': local part contains the character ' '"),
        ("jo..e", "'jo..e': local part contains '..'"),
        (
            "/etc/cron.d/x",
            "'/etc/cron.d/x': local part contains '/', which Roost refuses "
            "(each mailbox is a directory named after its address)",
        ),
    ],
)
def test_bad_local_part(stack: Stack, local: str, message: str) -> None:
    via_cli = cli_message(stack, "user", local, "example.com", "pw")
    via_user_import = cli_message(stack, "user-import", local, "example.com", "{PLAIN}pw")
    via_import = import_message(
        stack, {"email": f"{local}@example.com", "password": "{PLAIN}pw"}, "email"
    )
    assert via_cli == via_user_import == via_import == message
    with stack.session() as session:
        assert [u.email for u in session.query(User)] == ["joe@example.com"]


def test_domain_limit_that_is_below_minus_one(stack: Stack) -> None:
    via_cli = cli_message(stack, "setlimits", "example.com", "-2", "-1", "0")
    document = json.dumps({"domain": [{"name": "example.com", "max_users": -2}]})
    result = stack.roost("config-import", "--update", input=document)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[1] == f"- domain[0].max_users : {via_cli}"
    assert via_cli == "max_users -2: accepts -1 (unlimited) or a count"


# -- config-import on its own (issue: same defaults and a new server) ------------------------


def test_imported_user_without_quota_gets_the_capped_default(stack: Stack) -> None:
    """DEFAULT_QUOTA is 1 GB; the domain allows 1 MB: the new user gets 1 MB, as in the CLI."""
    document = json.dumps({"user": [{"email": "ann@example.com", "password": "{PLAIN}pw"}]})
    result = stack.roost("config-import", "--update", input=document)
    assert result.exit_code == 0, result.stderr
    with stack.session() as session:
        ann = session.get(User, "ann@example.com")
        assert ann is not None and ann.quota_bytes == 1000000
    assert stored(stack).quota_bytes == 1000000  # made by `roost user`


def test_import_with_domain_limits_checked_on_request(stack: Stack) -> None:
    """Mailu's import ignores max_users; the rule is one flag away (check_limits)."""
    with stack.session() as session:
        session.get(User, "joe@example.com").domain.max_users = 1  # type: ignore[union-attr]
    document = {"user": [{"email": "ann@example.com", "password": "{PLAIN}pw"}]}
    with pytest.raises(ConfigValidationError) as caught, stack.session() as session:
        import_config(session, stack.settings, document, update=True, check_limits=True)
    assert caught.value.errors == [
        ("user[0].email", "domain 'example.com' already has its maximum of 1 users")
    ]
    with stack.session() as session:
        import_config(session, stack.settings, document, update=True)
        assert session.get(User, "ann@example.com") is not None


def test_import_into_a_new_server_initialises_the_store(tmp_path: Path) -> None:
    new = make_stack(tmp_path / "new", migrate=False)
    document = json.dumps(
        {
            "domain": [{"name": "example.com"}],
            "user": [{"email": "joe@example.com", "password": "{PLAIN}pw"}],
        }
    )
    dry = new.roost("config-import", "--dry-run", input=document)
    assert dry.exit_code == 2 and "run roost init first" in dry.stderr
    result = new.roost("config-import", input=document)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "Created: domain(1), user(1)"
    assert result.stdout.startswith("roost: created the store ")
    exported = yaml.safe_load(new.roost("config-export").stdout)
    assert [u["email"] for u in exported["user"]] == ["joe@example.com"]


def test_export_refuses_to_write_through_a_symlink(stack: Stack, tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me\n", encoding="utf-8")
    link = tmp_path / "export.yaml"
    link.symlink_to(target)
    message = cli_message(stack, "config-export", "-o", str(link))
    assert message == f"cannot write {link}: it is a symbolic link"
    assert target.read_text(encoding="utf-8") == "keep me\n"


def test_export_file_is_private_from_the_start(stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "export.yaml"
    out.write_text("old\n", encoding="utf-8")
    os.chmod(out, 0o644)
    result = stack.roost("config-export", "--secrets", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert os.stat(out).st_mode & 0o777 == 0o600
    assert "joe@example.com" in out.read_text(encoding="utf-8")
