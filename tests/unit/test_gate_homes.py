"""roost.gate.homes: a user's home is a directory inside ROOT/mail, whatever the address."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from roost.gate.homes import MailHomes
from roost.layout import Layout, UnsafeHome, home_path
from tests.unit.test_cli_support import make_stack


def test_home_is_the_address_inside_the_mail_directory(tmp_path: Path) -> None:
    mail = tmp_path / "mail"
    mail.mkdir()
    assert home_path(mail, "joe@example.com") == mail.resolve() / "joe@example.com"


@pytest.mark.parametrize(
    "email",
    [
        "/etc/cron.d/x@example.com",  # an absolute part replaces the mail directory
        "../x@example.com",
        "../../etc/x@example.com",
        "a/../../x@example.com",
        "..",
        ".",
        "",
        "a\0b@example.com",
    ],
)
def test_home_outside_the_mail_directory_is_refused(tmp_path: Path, email: str) -> None:
    mail = tmp_path / "mail"
    mail.mkdir()
    with pytest.raises(UnsafeHome):
        home_path(mail, email)


def test_a_symlink_out_of_the_mail_directory_is_refused(tmp_path: Path) -> None:
    mail = tmp_path / "mail"
    mail.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (mail / "joe@example.com").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafeHome):
        home_path(mail, "joe@example.com")


def test_mail_homes_never_creates_a_directory_outside_root(tmp_path: Path) -> None:
    """The gate (root) creates homes: an address with a leading '/' must not reach /etc."""
    stack = make_stack(tmp_path, migrate=False)
    layout = Layout(stack.settings)
    layout.mail.mkdir(parents=True)
    outside = tmp_path / "outside"  # stands for /etc/cron.d: it exists
    outside.mkdir()
    homes = MailHomes(layout)
    with pytest.raises(UnsafeHome):
        homes.ensure(f"{outside}/x@example.com")
    assert list(outside.iterdir()) == []
    homes.ensure("joe@example.com")
    made = layout.mail / "joe@example.com"
    assert made.is_dir()
    assert os.stat(made).st_mode & 0o777 == 0o700
