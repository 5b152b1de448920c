"""Reading delivered mail over IMAP (993, 143+STARTTLS) and POP3 (995); ManageSieve login."""

from __future__ import annotations

import base64
import imaplib
import poplib
import socket
import uuid

import pytest

from tests.e2e.stack import OUTSIDE, Stack
from tests.e2e.test_inbound import message

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def mailbox(stack: Stack) -> tuple[str, str, str]:
    """A user with one delivered message; returns (address, password, subject)."""
    user = stack.add_user("readme", "read-pw-1")
    subject = f"to read {uuid.uuid4()}"
    with stack.smtp() as client:
        client.sendmail("a@sender.test", [user], message("a@sender.test", user, subject))
    stack.wait_for_message(user, "read-pw-1", subject)
    return user, "read-pw-1", subject


def test_imap_993_reads_the_message(stack: Stack, mailbox: tuple[str, str, str]) -> None:
    user, password, subject = mailbox
    client = stack.imap()
    client.login(user, password)
    client.select("INBOX", readonly=True)
    _, data = client.search(None, "SUBJECT", f'"{subject}"')
    assert len(data[0].split()) == 1
    _, folders = client.list()
    names = b"\n".join(folders)
    for special in (b"Sent", b"Drafts", b"Trash", b"Junk"):
        assert special in names
    client.logout()


def test_imap_143_needs_starttls_then_reads(stack: Stack, mailbox: tuple[str, str, str]) -> None:
    user, password, subject = mailbox
    client = imaplib.IMAP4(stack.address, 143, timeout=30)
    assert "LOGINDISABLED" in client.capabilities
    client.starttls(ssl_context=stack.tls_context())
    client.login(user, password)
    client.select("INBOX", readonly=True)
    _, data = client.search(None, "SUBJECT", f'"{subject}"')
    assert len(data[0].split()) == 1
    client.logout()


def test_pop3_995_reads_the_message(stack: Stack, mailbox: tuple[str, str, str]) -> None:
    user, password, subject = mailbox
    client = poplib.POP3_SSL(stack.address, 995, context=stack.tls_context(), timeout=30)
    client.user(user)
    client.pass_(password)
    count, _ = client.stat()
    assert count >= 1
    found = any(subject.encode() in b"\n".join(client.top(i, 0)[1]) for i in range(1, count + 1))
    client.quit()
    assert found


def sieve_login(stack: Stack, user: str, password: str, source: str = OUTSIDE) -> bytes:
    """ManageSieve (RFC 5804): STARTTLS, then AUTHENTICATE "PLAIN"; returns the reply line."""
    sock = socket.create_connection((stack.address, 4190), 30, source_address=(source, 0))
    reader = sock.makefile("rb")

    def read_response(stream) -> bytes:  # type: ignore[no-untyped-def]
        while True:
            line = stream.readline()
            if not line or line.startswith((b"OK", b"NO", b"BYE")):
                return line

    read_response(reader)
    sock.sendall(b"STARTTLS\r\n")
    assert read_response(reader).startswith(b"OK")
    tls = stack.tls_context().wrap_socket(sock, server_hostname="mail.example.test")
    tls_reader = tls.makefile("rb")
    read_response(tls_reader)  # capabilities again after STARTTLS
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    tls.sendall(f'AUTHENTICATE "PLAIN" "{token}"\r\n'.encode())
    reply = read_response(tls_reader)
    tls.close()
    return reply


def test_managesieve_accepts_the_login(stack: Stack, mailbox: tuple[str, str, str]) -> None:
    user, password, _ = mailbox
    assert sieve_login(stack, user, password).startswith(b"OK")
