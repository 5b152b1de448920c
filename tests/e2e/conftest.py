"""Fixtures for end-to-end tests: a running stack and an outside SMTP receiver."""

from __future__ import annotations

import os
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from tests.e2e.local_dns import private_resolv_conf, start_dns
from tests.e2e.stack import Stack, e2e_address, running

pytestmark = pytest.mark.e2e

# Before any thread starts: the daemons must see the test DNS, not the machine's resolver.
IN_PRIVATE_NAMESPACE = private_resolv_conf()

# The outside world: remote.test's MX (tests/e2e/local_dns.py) on its own loopback address.
RECEIVER_ADDRESS = e2e_address(91)
RECEIVER_PORT = 25
REMOTE_DOMAIN = "remote.test"


class Receiver:
    """Collects what reaches the outside SMTP server."""

    def __init__(self) -> None:
        self.envelopes: list[tuple[str, list[str], Message]] = []
        #: each message's bytes as received, in the same order (signatures need them)
        self.raw: list[bytes] = []

    async def handle_DATA(self, server: object, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.raw.append(content)
        self.envelopes.append(
            (envelope.mail_from or "", list(envelope.rcpt_tos), message_from_bytes(content))
        )
        return "250 OK"

    def by_subject(self, subject: str) -> list[tuple[str, list[str], Message]]:
        return [item for item in self.envelopes if item[2]["Subject"] == subject]


@pytest.fixture(scope="session", autouse=True)
def dns() -> Iterator[None]:
    servers = start_dns()
    try:
        yield
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    handler = Receiver()
    controller = Controller(handler, hostname=RECEIVER_ADDRESS, port=RECEIVER_PORT)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


def require_root() -> None:
    """Skip without root, saying so; on CI (``CI=true``), which runs as root, fail instead,
    so that a suite that silently ran none of its end-to-end tests cannot pass there."""
    if os.geteuid() != 0 or not IN_PRIVATE_NAMESPACE:
        reason = "end-to-end tests start Postfix, Dovecot and nginx and need root"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: run the suite as root)")
        pytest.skip(reason)


#: An Rspamd rule of the tests' own, added through overrides/rspamd like a user's rule:
#: a Subject starting with SPAM_MARK scores SPAM_MARK_SCORE points, so a test can send mail
#: that Rspamd itself scores as spam (below its reject threshold of 15).
SPAM_MARK = "spam-marked"
SPAM_MARK_SCORE = 14.0
SPAM_RULE_FILES = {
    "overrides/rspamd/multimap.conf": (
        "ROOST_TEST_SPAM_MARK {\n"
        '    type = "header";\n'
        '    header = "Subject";\n'
        "    regexp = true;\n"
        '    map = "${LOCAL_CONFDIR}/local.d/roost_test_spam.map";\n'
        f"    score = {SPAM_MARK_SCORE};\n"
        "}\n"
    ),
    "overrides/rspamd/roost_test_spam.map": f"/^{SPAM_MARK} /\n",
}


@pytest.fixture(scope="session")
def stack(receiver: Receiver) -> Iterator[Stack]:
    """The shared stack; tests create their own users in it."""
    require_root()
    with running(Stack("main", e2e_address(2), files=SPAM_RULE_FILES)) as started:
        yield started
