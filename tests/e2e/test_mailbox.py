"""Mailboxes through the real daemons: special folders, Sieve at delivery, search, IDN paths."""

from __future__ import annotations

import contextlib
import imaplib
import re
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import SPAM_MARK, SPAM_MARK_SCORE
from tests.e2e.stack import HOSTNAME, Stack
from tests.e2e.test_inbound import message
from tests.unit.test_services_dovecot_smoke import ManageSieve

pytestmark = pytest.mark.e2e

SENDER = "someone@sender.test"


def deliver(stack: Stack, rcpt: str, subject: str, body: str = "Hello.", headers: str = "") -> str:
    """Send from outside on port 25; return the Message-ID's inside."""
    text = message(SENDER, rcpt, subject, body)
    message_id = re.search(r"Message-ID: <(.+?)>", text)
    assert message_id is not None
    with stack.smtp() as client:
        client.sendmail(SENDER, [rcpt], headers + text)
    return message_id.group(1)


@pytest.fixture
def imap_session(stack: Stack) -> Iterator[imaplib.IMAP4_SSL]:
    client = stack.imap()
    yield client
    with contextlib.suppress(imaplib.IMAP4.error, OSError):
        client.logout()


def wait_for_folder(
    client: imaplib.IMAP4_SSL, folder: str, subject: str, timeout: float = 20
) -> list[bytes]:
    """Numbers of the messages in ``folder`` with ``subject``, once there is one."""
    deadline = time.monotonic() + timeout
    while True:
        # The folder may not exist until the delivery that files into it has happened.
        status, _ = client.select(folder, readonly=True)
        if status == "OK":
            _, data = client.search(None, "SUBJECT", f'"{subject}"')
            if data[0]:
                return data[0].split()
        assert time.monotonic() < deadline, f"{subject!r} never reached {folder}"
        time.sleep(0.5)


def test_special_folders_exist_and_are_subscribed(
    stack: Stack, imap_session: imaplib.IMAP4_SSL
) -> None:
    user = stack.add_user("folders", "folders-pw-1")
    imap_session.login(user, "folders-pw-1")
    _, subscribed = imap_session.lsub()
    names = {line.decode().rsplit(" ", 1)[-1].strip('"') for line in subscribed}
    assert {"Sent", "Drafts", "Trash", "Junk"} <= names
    _, listed = imap_session.list()
    uses = b"\n".join(listed)
    for use in (b"\\Sent", b"\\Drafts", b"\\Trash", b"\\Junk"):
        assert use in uses


def test_delivery_leaves_no_stray_folders(stack: Stack, imap_session: imaplib.IMAP4_SSL) -> None:
    """The duplicate check's lock files stay out of the Maildir, where Maildir++ would
    show a directory .dovecot.lda-dupes.locks as a folder "dovecot.lda-dupes.locks"."""
    user = stack.add_user("tidy", "tidy-pw-1")
    subject = f"tidy {uuid.uuid4()}"
    deliver(stack, user, subject)
    deliver(stack, user, f"{subject} again")
    imap_session.login(user, "tidy-pw-1")
    assert wait_for_folder(imap_session, "INBOX", f"{subject} again")
    _, listed = imap_session.list()
    names = {line.decode().rsplit(" ", 1)[-1].strip('"') for line in listed}
    assert names == {"INBOX", "Sent", "Drafts", "Trash", "Junk"}, names
    home = stack.root / "mail" / user
    assert not [entry.name for entry in home.iterdir() if entry.name.endswith(".locks")]


def test_spam_score_files_into_junk_marked_read(
    stack: Stack, imap_session: imaplib.IMAP4_SSL
) -> None:
    """Rspamd scores the message; Mailu's rule files it: X-Spam-Level stars out of 15,
    above the user's 80 %: Junk, \\Seen. A sender's own X-Spam-Level counts for nothing."""
    user = stack.add_user("spammed", "spammed-pw-1")
    spam, ham = f"{SPAM_MARK} {uuid.uuid4()}", f"ham {uuid.uuid4()}"
    deliver(stack, user, spam)
    deliver(stack, user, ham, headers="X-Spam-Level: " + "*" * 15 + "\r\n")
    imap_session.login(user, "spammed-pw-1")
    found = wait_for_folder(imap_session, "Junk", spam)
    _, flags = imap_session.fetch(found[0], "(FLAGS)")
    assert b"\\Seen" in flags[0]
    _, data = imap_session.fetch(found[0], "(BODY.PEEK[HEADER.FIELDS (X-Spam-Level)])")
    # Rspamd's stars: about SPAM_MARK_SCORE of them, above 80 % of 15.
    stars = data[0][1].count(b"*")
    assert 12 < stars <= SPAM_MARK_SCORE + 1, data
    assert wait_for_folder(imap_session, "INBOX", ham)


def test_managesieve_script_takes_effect_on_the_next_delivery(
    stack: Stack, imap_session: imaplib.IMAP4_SSL
) -> None:
    user = stack.add_user("sorter", "sorter-pw-1")
    sieve = ManageSieve(
        stack.tls_context(check_hostname=True),
        stack.address,
        server_hostname=HOSTNAME,
        source="127.80.0.1",
    )
    try:
        sieve.starttls()
        assert sieve.authenticate(user, "sorter-pw-1").startswith("OK")
        script = (
            'require ["fileinto", "mailbox"];\r\n'
            'if header :contains "subject" "[newsletter]" {\r\n'
            '  fileinto :create "Newsletters";\r\n}\r\n'
        )
        assert sieve.putscript("sorting", script).startswith("OK")
        assert sieve.command('SETACTIVE "sorting"').startswith("OK")
    finally:
        sieve.close()

    subject = f"[newsletter] {uuid.uuid4()}"
    deliver(stack, user, subject)
    imap_session.login(user, "sorter-pw-1")
    assert wait_for_folder(imap_session, "Newsletters", subject)


def test_search_finds_exactly_the_messages_with_the_text(
    stack: Stack, imap_session: imaplib.IMAP4_SSL
) -> None:
    """Dovecot's own search, which Roost keeps whatever FULL_TEXT_SEARCH says. These are
    searches Debian 12's Xapian index answers wrongly (docs/mailboxes.md, "Searching")."""
    user = stack.add_user("finder", "finder-pw-1")
    tag = uuid.uuid4().hex[:8]
    deliver(stack, user, f"{tag} batch 2", body="Invoice 2024-07 final, from hello+x@bb.test")
    deliver(stack, user, f"{tag} batch 3", body="Nothing to see here.")
    imap_session.login(user, "finder-pw-1")
    wait_for_folder(imap_session, "INBOX", f"{tag} batch 3")
    wait_for_folder(imap_session, "INBOX", f"{tag} batch 2")

    def found(*criteria: str) -> list[bytes]:
        _, data = imap_session.search(None, *criteria)
        return data[0].split()

    first = found("SUBJECT", f'"{tag} batch 2"')
    assert len(first) == 1
    for criteria in (
        ("BODY", '"invoice 2024-07 final"'),
        ("TEXT", '"hello+x@bb.test"'),
        ("BODY", "2024-07"),
    ):
        assert found(*criteria) == first, criteria
    assert not (stack.root / "mail" / user / "xapian-indexes").exists()


def test_internationalised_domain_has_a_punycode_mailbox(
    stack: Stack, imap_session: imaplib.IMAP4_SSL
) -> None:
    stack.roost("user", "leser", "bücher.test", "-", stdin="leser-pw-1\n")
    user = "leser@xn--bcher-kva.test"
    subject = f"idn {uuid.uuid4()}"
    deliver(stack, user, subject)
    imap_session.login(user, "leser-pw-1")
    assert wait_for_folder(imap_session, "INBOX", subject)
    assert (stack.root / "mail" / user / "cur").is_dir()
