"""Quotas through the real daemons: limits from the store, refusals, usage written back."""

from __future__ import annotations

import re
import time
import uuid

import pytest

from tests.e2e.conftest import REMOTE_DOMAIN, Receiver
from tests.e2e.stack import Stack
from tests.e2e.test_inbound import message

pytestmark = pytest.mark.e2e

PASSWORD = "quota-pw-1"


def quota_rows(stack: Stack, *args: str) -> dict[str, tuple[int, int]]:
    """``roost quota``'s lines as email -> (bytes used, quota)."""
    rows = {}
    for line in stack.roost("quota", *args).stdout.splitlines():
        email, used, quota = line.split("\t")
        rows[email] = (int(used), int(quota))
    return rows


def test_quota_defaults_caps_and_changes(stack: Stack) -> None:
    """DEFAULT_QUOTA for new users, within the domain's max_quota_bytes, checked on change."""
    plain = stack.add_user("plain", PASSWORD)
    stack.roost("domain", "capped.test", "--max-quota-bytes", "5000000")
    capped = stack.add_user("bea", PASSWORD, domain="capped.test")

    def refused(quota: str) -> str:
        result = stack.roost("quota", capped, quota, check=False)
        assert result.returncode == 2
        return result.stderr.strip()

    assert refused("6000000") == (
        f"roost: error: quota for '{capped}': 6000000 bytes is above the 5000000 bytes domain "
        "'capped.test' allows (its max_quota_bytes)"
    )
    assert refused("0") == (
        f"roost: error: quota for '{capped}': unlimited is above the 5000000 bytes domain "
        "'capped.test' allows (its max_quota_bytes)"
    )
    stack.roost("quota", plain, "0")  # no cap in example.test: unlimited is allowed
    rows = quota_rows(stack)
    assert rows[plain] == (0, 0)
    assert rows[capped] == (0, 5000000)  # DEFAULT_QUOTA (10^9), capped by the domain

    # Unlimited is not untracked: the usage still reaches the store.
    sender = f"ann-{uuid.uuid4().hex[:8]}@{REMOTE_DOMAIN}"
    subject = f"counted {uuid.uuid4()}"
    with stack.smtp() as client:
        client.sendmail(sender, [plain], message(sender, plain, subject))
    stack.wait_for_message(plain, PASSWORD, subject)
    deadline = time.monotonic() + 10
    while quota_rows(stack, plain)[plain][0] == 0:
        assert time.monotonic() < deadline, quota_rows(stack, plain)
        time.sleep(0.5)


def test_mail_over_quota_bounces_and_usage_is_recorded(stack: Stack, receiver: Receiver) -> None:
    user = stack.add_user("full", PASSWORD)
    stack.roost("quota", user, "3000")
    sender = f"ann-{uuid.uuid4().hex[:8]}@{REMOTE_DOMAIN}"
    small, large = f"fits {uuid.uuid4()}", f"too large {uuid.uuid4()}"
    with stack.smtp() as client:
        client.sendmail(sender, [user], message(sender, user, small))
        client.sendmail(sender, [user], message(sender, user, large, body="x" * 5000))
    stack.wait_for_message(user, PASSWORD, small)

    # The large one is returned to its sender with Dovecot's reason (RFC 3463 5.2.2).
    deadline = time.monotonic() + 30
    while not (bounces := [m for _, to, m in receiver.envelopes if to == [sender]]):
        assert time.monotonic() < deadline, f"no bounce for {sender}:\n{stack.log_tail()}"
        time.sleep(0.3)
    report = bounces[0].as_string()
    assert "5.2.2" in report and "Quota exceeded" in report
    assert large in report
    assert stack.count_messages(user, PASSWORD, large) == 0

    client = stack.imap()
    try:
        client.login(user, PASSWORD)
        _, roots = client.getquotaroot("INBOX")
    finally:
        client.logout()
    # Maildir++ quota counts the message files as stored (LF line ends), in every folder.
    home = stack.root / "mail" / user
    used = sum(
        path.stat().st_size for path in home.glob("**/*") if path.parent.name in ("new", "cur")
    )
    assert used > 0
    # IMAP QUOTA (RFC 9208) counts kibibytes, which Dovecot rounds up: 3000 bytes is 3.
    assert re.search(rb"STORAGE \d+ 3\)", roots[1][0]), roots

    # Dovecot reported the usage; the gate wrote it to the store for `roost quota`.
    deadline = time.monotonic() + 10
    while quota_rows(stack, user)[user] != (used, 3000):
        assert time.monotonic() < deadline, quota_rows(stack, user)
        time.sleep(0.5)
