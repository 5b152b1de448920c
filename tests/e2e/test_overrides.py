"""Overrides as Mailu users write them (Mailu FAQ "How can I override settings?",
https://mailu.io/master/faq.html): each one takes effect after a restart, and a broken one
stops the start with one line naming its file and line.

One stack of its own: it is restarted, and finally left stopped by the broken overrides.
"""

from __future__ import annotations

import re
import smtplib
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller

from tests.e2e.conftest import Receiver, require_root
from tests.e2e.stack import DOMAIN, HOSTNAME, Stack, e2e_address, running

pytestmark = pytest.mark.e2e

ADDRESS = e2e_address(12)
#: sender.test's MX in the test DNS (tests/e2e/local_dns.py); this module plays it.
SENDER_TEST_MX = e2e_address(92)
EXTRA_PORT = 2526

OVERRIDES = {
    "postfix/postfix.cf": (
        "# Mailu's format: one 'name = value' per line, fed to postconf -e\n"
        "smtpd_banner = $myhostname ESMTP overridden banner\n"
    ),
    "postfix/postfix.master": (
        f"{ADDRESS}:{EXTRA_PORT}/inet = {ADDRESS}:{EXTRA_PORT} inet n - n - - smtpd "
        "-o syslog_name=postfix/extra\n"
    ),
    # The Mailu FAQ's examples, word for word but for the domains.
    "postfix/transport.map": "yahoo.com   polite:\norange.fr   turtle:\n"
    "remote.test polite:\nsender.test turtle:\n",
    "postfix/tls_policy.map": "remote.test may\nsender.test encrypt\n",
    "dovecot/dovecot.conf": "login_greeting = Overridden IMAP greeting\n",
    "nginx/extra.conf": 'location = /override-test {\n    return 200 "served by an override";\n}\n',
}


def write_overrides(stack: Stack, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = stack.root / "overrides" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def restart(stack: Stack) -> None:
    assert stack.stop() == 0
    stack.start_again()


def imap_greeting(stack: Stack) -> bytes:
    client = stack.imap()
    try:
        return client.welcome
    finally:
        client.logout()


def https_get(stack: Stack, path: str) -> tuple[int, str]:
    result = subprocess.run(
        [
            "curl",
            "-s",
            "--cacert",
            str(stack.ca_file),
            "--resolve",
            f"{HOSTNAME}:443:{stack.address}",
            "-w",
            "\n%{http_code}",
            f"https://{HOSTNAME}{path}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    body, _, code = result.stdout.rpartition("\n")
    return int(code), body


def send_from_loopback(stack: Stack, rcpt: str) -> tuple[str, str]:
    """Send from 127.0.0.1 (which may relay); return the queue id and the Message-ID."""
    message_id = f"{uuid.uuid4()}@{DOMAIN}"
    sender = f"app@{DOMAIN}"
    with stack.smtp(source="127.0.0.1") as client:
        client.sendmail(
            sender,
            [rcpt],
            f"From: {sender}\r\nTo: {rcpt}\r\nSubject: override\r\n"
            f"Message-ID: <{message_id}>\r\n\r\nhello\r\n",
        )
    found = stack.wait_for_log(rf"postfix/cleanup\[\d+\]: (\w+): message-id=<{message_id}>")
    return found.group(1), f"<{message_id}>"


def greeting(address: str, port: int) -> bytes:
    """The SMTP server's 220 text."""
    client = smtplib.SMTP(timeout=30)
    try:
        code, text = client.connect(address, port)
    finally:
        client.close()
    assert code == 220, text
    return text


def postmap_query(stack: Stack, key: str, table: str) -> str:
    return subprocess.run(
        ["postmap", "-c", str(stack.root / "etc" / "postfix"), "-q", key, table],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()


@pytest.fixture(scope="module")
def overridden() -> Iterator[Stack]:
    require_root()
    with running(Stack("overrides", ADDRESS)) as started:
        yield started


@pytest.fixture(scope="module")
def sender_test_mx() -> Iterator[Receiver]:
    """A receiver that offers no STARTTLS, for the 'encrypt' policy to refuse."""
    handler = Receiver()
    controller = Controller(handler, hostname=SENDER_TEST_MX, port=25)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


def test_overrides_take_effect_after_a_restart(
    overridden: Stack, receiver: Receiver, sender_test_mx: Receiver
) -> None:
    stack = overridden
    assert b"Overridden" not in imap_greeting(stack)
    assert https_get(stack, "/override-test")[0] == 404
    write_overrides(stack, OVERRIDES)
    restart(stack)

    # postfix.cf, line by line through postconf: the banner Postfix shows on submission.
    # Port 25's banner is nginx's (the Mailu FAQ: banner overrides do not apply there).
    assert greeting(stack.address, 587).endswith(b"ESMTP overridden banner")
    assert b"overridden" not in greeting(stack.address, 25)
    # postfix.master: a whole new service.
    assert greeting(stack.address, EXTRA_PORT).endswith(b"ESMTP overridden banner")

    # transport.map and tls_policy.map, compiled with postmap and used by Postfix.
    table = f"lmdb:{stack.root}/etc/postfix/transport.map"
    for domain, transport in (("yahoo.com", "polite:"), ("orange.fr", "turtle:")):
        assert postmap_query(stack, domain, table) == transport
    polite, message_id = send_from_loopback(stack, "x@remote.test")
    # The log of a stack is kept across runs: find this message's lines by its queue id.
    stack.wait_for_log(rf"postfix-polite/smtp\[\d+\]: {polite}: to=<x@remote\.test>.*status=sent")
    assert [m for _, _, m in receiver.envelopes if m["Message-ID"] == message_id]
    # sender.test: the turtle transport, and "encrypt" refuses its MX without STARTTLS.
    turtle, _ = send_from_loopback(stack, "y@sender.test")
    stack.wait_for_log(
        rf"postfix-turtle/smtp\[\d+\]: {turtle}: to=<y@sender\.test>.*status=deferred "
        r"\(TLS is required, but was not offered",
        20,
    )
    assert not sender_test_mx.envelopes

    # dovecot.conf, included last.
    assert imap_greeting(stack).endswith(b"Overridden IMAP greeting")
    # nginx/*.conf, inside the HTTPS server.
    assert https_get(stack, "/override-test") == (200, "served by an override")


#: (override file, its broken text, what the one error line must say)
BROKEN = [
    (
        "postfix/postfix.cf",
        "# fine\nnot a setting\n",
        r"postfix\.cf, line 2: expected 'name = value'",
    ),
    (
        "postfix/postfix.cf",
        "smtpd_bannr = typo\n",
        r"postfix\.cf, line 1: Postfix has no parameter 'smtpd_bannr'",
    ),
    (
        "postfix/postfix.master",
        "\nsmtp inet n - n - - smtpd\n",
        r"postfix\.master, line 2: expected 'service/type = entry'",
    ),
    (
        "postfix/transport.map",
        "ok.test polite:\nno-value-here\n",
        r"transport\.map: postmap refused it: .*line 2",
    ),
    (
        "dovecot/dovecot.conf",
        "mail_max_userip_connections = 20\nno_such_setting = 1\n",
        r"dovecot\.conf.* line 2",
    ),
    (
        "nginx/extra.conf",
        "location = /x { return 200; }\nno_such_directive on;\n",
        r"extra\.conf:2",
    ),
]


def test_a_broken_override_stops_the_start_with_its_file_and_line(overridden: Stack) -> None:
    stack = overridden
    assert stack.stop() == 0
    for relative, text, expected in BROKEN:
        path = stack.root / "overrides" / relative
        good = path.read_text() if path.exists() else None
        path.write_text(text)
        try:
            result = subprocess.run(
                stack.roost_argv("up"),
                capture_output=True,
                text=True,
                timeout=120,
                env=stack.environ(),
            )
        finally:
            if good is None:
                path.unlink()
            else:
                path.write_text(good)
        assert result.returncode == 2, result.stdout + result.stderr
        errors = result.stderr.splitlines()
        assert len(errors) == 1, result.stderr
        assert errors[0].startswith("roost: error: ") and str(path) in errors[0], errors[0]
        assert re.search(expected, errors[0]), errors[0]
