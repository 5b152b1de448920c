"""Aliases, wildcards and the recipient delimiter through the real daemons.

Resolution follows Mailu's: an exact alias before a wildcard, the longest wildcard first,
and the recipient delimiter's extension dropped when nothing matches the full local part.
"""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.stack import DOMAIN, Stack
from tests.e2e.test_inbound import message

pytestmark = pytest.mark.e2e


def deliver(stack: Stack, rcpt: str, subject: str) -> None:
    with stack.smtp() as client:
        client.sendmail("a@sender.test", [rcpt], message("a@sender.test", rcpt, subject))


def test_alias_with_detail_and_catch_all_deliver(stack: Stack) -> None:
    domain = f"alias-{uuid.uuid4().hex[:6]}.test"
    stack.roost("domain", domain)
    joe = stack.add_user("joe", "joe-pw-1", domain)
    catchall = stack.add_user("catchall", "catchall-pw-1", domain)
    stack.roost("alias", "team", domain, joe)
    stack.roost("alias", "%", domain, catchall, "--wildcard")

    for rcpt, owner, password in (
        (f"team@{domain}", joe, "joe-pw-1"),
        (f"team+test@{domain}", joe, "joe-pw-1"),
        (f"joe+test@{domain}", joe, "joe-pw-1"),
        (f"random@{domain}", catchall, "catchall-pw-1"),
        (f"random+x@{domain}", catchall, "catchall-pw-1"),
    ):
        subject = f"to {rcpt} {uuid.uuid4()}"
        deliver(stack, rcpt, subject)
        raw = stack.wait_for_message(owner, password, subject)
        assert subject.encode() in raw


def test_a_change_made_with_the_cli_is_seen_by_the_next_transaction(stack: Stack) -> None:
    """No restart: the CLI tells the gate, which rebuilds its index before answering."""
    local = f"fresh{uuid.uuid4().hex[:6]}"
    with stack.smtp() as client:
        client.mail("a@sender.test")
        assert client.rcpt(f"{local}@{DOMAIN}")[0] == 550
    user = stack.add_user(local, "fresh-pw-1")
    with stack.smtp() as client:
        client.mail("a@sender.test")
        assert client.rcpt(user)[0] == 250
    stack.roost("user-delete", "--really", user)
    with stack.smtp() as client:
        client.mail("a@sender.test")
        assert client.rcpt(user)[0] == 550
