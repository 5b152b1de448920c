"""Fixtures for end-to-end tests: a running stack and an outside SMTP receiver."""

from __future__ import annotations

import os
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from tests.e2e.stack import Stack, running

pytestmark = pytest.mark.e2e

# The outside world: an MX for remote.test on its own loopback address.
RECEIVER_ADDRESS = "127.0.9.1"
RECEIVER_PORT = 25
REMOTE_DOMAIN = "remote.test"


class Receiver:
    """Collects what reaches the outside SMTP server."""

    def __init__(self) -> None:
        self.envelopes: list[tuple[str, list[str], Message]] = []

    async def handle_DATA(self, server: object, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.envelopes.append(
            (envelope.mail_from or "", list(envelope.rcpt_tos), message_from_bytes(content))
        )
        return "250 OK"

    def by_subject(self, subject: str) -> list[tuple[str, list[str], Message]]:
        return [item for item in self.envelopes if item[2]["Subject"] == subject]


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
    if os.geteuid() != 0:
        pytest.skip("end-to-end tests start Postfix, Dovecot and nginx and need root")


@pytest.fixture(scope="session")
def stack(receiver: Receiver) -> Iterator[Stack]:
    """The shared stack on 127.0.0.2; tests create their own users in it."""
    require_root()
    transport = f"{REMOTE_DOMAIN} smtp:[{RECEIVER_ADDRESS}]:{RECEIVER_PORT}\n"
    with running(
        Stack("main", "127.0.0.2", files={"overrides/postfix/transport.map": transport})
    ) as started:
        yield started
