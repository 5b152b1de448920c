"""Auto-replies through the real daemons: Dovecot's Sieve vacation, sent out by Postfix.

Mail comes from outside senders in remote.test, whose MX is the test's receiver, so a
reply is seen where the sender would see it. Whether Pigeonhole sent, or why it did not,
is read from Dovecot's log, where it says so for each message (by Message-ID).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import date, timedelta
from email.message import Message
from email.utils import getaddresses

import pytest

from tests.e2e.conftest import REMOTE_DOMAIN, Receiver
from tests.e2e.stack import DOMAIN, Stack

pytestmark = pytest.mark.e2e

PASSWORD = "away-pw-1"
#: Texts holding Sieve syntax: quotes that would end a string, commands, variables,
#: backslashes, and a lone "." line that would end a multi-line string.
NAME = 'Joe "The Boss" \\ ${name}"; discard; "'
SUBJECT = 'Out "; discard; " \\ ${subject}'
BODY = 'I am away.\n.\n"; discard; keep; "\\ ${body}\ntext:\nBack on Monday.'


def outside_sender(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}@{REMOTE_DOMAIN}"


def send(
    stack: Stack, rcpt: str, envelope_from: str, headers: str = "", from_header: str = ""
) -> str:
    """One message from outside on port 25; returns its Message-ID (without brackets)."""
    message_id = f"{uuid.uuid4()}@{REMOTE_DOMAIN}"
    text = (
        f"From: {from_header or envelope_from or 'robot@' + REMOTE_DOMAIN}\r\nTo: {rcpt}\r\n"
        f"Subject: question {message_id}\r\nMessage-ID: <{message_id}>\r\n{headers}\r\n"
        "Are you there?\r\n"
    )
    with stack.smtp() as client:
        client.sendmail(envelope_from, [rcpt], text)
    return message_id


def delivered(stack: Stack, user: str, message_id: str) -> str:
    """Wait until Pigeonhole has filed the message; return the log lines about it.

    Pigeonhole carries out the vacation action (or logs why not) before the implicit
    keep stores the message, so once it is stored the decision is in the log.
    """
    pattern = (
        rf"lmtp\({re.escape(user)}\).*msgid=<{re.escape(message_id)}>: "
        r"stored mail into mailbox 'INBOX'"
    )
    stack.wait_for_log(pattern, timeout=30)
    return "\n".join(
        line for line in stack.log_text().splitlines() if f"msgid=<{message_id}>" in line
    )


def replies_to(receiver: Receiver, sender: str) -> list[tuple[str, list[str], Message]]:
    return [item for item in receiver.envelopes if item[1] == [sender]]


def wait_for_reply(receiver: Receiver, sender: str, stack: Stack) -> Message:
    deadline = time.monotonic() + 30
    while not replies_to(receiver, sender):
        assert time.monotonic() < deadline, f"no reply to {sender}:\n{stack.log_tail()}"
        time.sleep(0.3)
    return replies_to(receiver, sender)[0][2]


@pytest.fixture(scope="module")
def away(stack: Stack) -> str:
    """A user on holiday, whose display name, subject and body try to inject Sieve."""
    user = stack.add_user("away", PASSWORD)
    document = {"user": [{"email": user, "displayed_name": NAME}]}
    stack.roost("config-import", "--update", "-", stdin=json.dumps(document))
    stack.roost("autoreply", user, "--subject", SUBJECT, "--body", "-", stdin=BODY)
    return user


def test_reply_reaches_the_sender_once_a_day(stack: Stack, receiver: Receiver, away: str) -> None:
    sender = outside_sender("ann")
    first = send(stack, away, sender)
    reply = wait_for_reply(receiver, sender, stack)

    envelope_from = replies_to(receiver, sender)[0][0]
    assert envelope_from == away  # sieve_vacation_send_from_recipient
    [(name, address)] = getaddresses([str(reply["From"])])
    assert (name, address) == (NAME, away)
    assert str(reply["Subject"]) == SUBJECT
    assert str(reply["Auto-Submitted"]).startswith("auto-replied")  # RFC 3834 §5
    assert reply["In-Reply-To"] == f"<{first}>"
    payload = reply.get_payload(decode=True)
    assert isinstance(payload, bytes)
    assert payload.decode().replace("\r\n", "\n").rstrip("\n") == BODY
    # Nothing in the texts changed what happens to the message itself.
    assert "stored mail into mailbox 'INBOX'" in delivered(stack, away, first)

    second = send(stack, away, sender)
    assert "discarded duplicate vacation response" in delivered(stack, away, second)
    assert len(replies_to(receiver, sender)) == 1


#: (what the case is, envelope sender, From header, extra headers, Pigeonhole's log reason;
#: None where Roost's own rule, not Pigeonhole, keeps the reply from being sent)
NO_REPLY_CASES = [
    (
        "mailing list",
        "list",
        "",
        "List-Id: <news.remote.test>\r\n",
        "discarding vacation response to mailinglist recipient",
    ),
    (
        "bulk mail",
        "bulk",
        "",
        "Precedence: bulk\r\n",
        "discarding vacation response to precedence=bulk message",
    ),
    (
        "list precedence",
        "plist",
        "",
        "Precedence: list\r\n",
        "discarding vacation response to precedence=list message",
    ),
    (
        "auto-submitted",
        "robot",
        "",
        "Auto-Submitted: auto-generated\r\n",
        "discarding vacation response to auto-submitted message",
    ),
    (
        "another auto-reply",
        "holiday",
        "",
        "Auto-Submitted: auto-replied\r\n",
        "discarding vacation response to auto-submitted message",
    ),
    # Postfix hands outside senders over SRS-rewritten, which hides them from Pigeonhole's
    # own check of system senders: Roost's script checks the SRS form too.
    ("mailer daemon", "MAILER-DAEMON", "", "", None),
    ("list owner", "owner-news", "", "", None),
    ("bounce", "", "", "", "discarded vacation reply to <>"),
    (
        "asks for none",
        "outlook",
        "",
        "X-Auto-Response-Suppress: OOF, AutoReply\r\n",
        "flag found in x-auto-response-suppress header",
    ),
    ("no-reply sender", "noreply", "", "", None),
    ("no-reply From", "news", f"No-Reply <no-reply@{REMOTE_DOMAIN}>", "", None),
    ("no-reply Reply-To", "shop", "", f"Reply-To: donotreply@{REMOTE_DOMAIN}\r\n", None),
]


def test_no_reply_to_lists_automatic_mail_or_no_reply_senders(
    stack: Stack, receiver: Receiver, away: str
) -> None:
    sent = []
    for case, tag, from_header, headers, reason in NO_REPLY_CASES:
        sender = (
            ""
            if not tag
            else (
                f"MAILER-DAEMON@{REMOTE_DOMAIN}" if tag == "MAILER-DAEMON" else outside_sender(tag)
            )
        )
        sent.append((case, sender, send(stack, away, sender, headers, from_header), reason))
    for case, sender, message_id, reason in sent:
        lines = delivered(stack, away, message_id)
        assert "sent vacation response" not in lines, case
        if reason is not None:
            assert reason in lines, (case, lines)
        if sender:
            assert replies_to(receiver, sender) == [], case


def test_mail_through_an_alias_is_answered_with_the_default_subject(
    stack: Stack, receiver: Receiver
) -> None:
    user = stack.add_user("helpdesk", PASSWORD)
    stack.roost("alias", "support", DOMAIN, user)
    stack.roost("autoreply", user, "--body", "We will answer within a day.")
    sender = outside_sender("customer")
    message_id = send(stack, f"support@{DOMAIN}", sender)
    reply = wait_for_reply(receiver, sender, stack)
    # Without --subject, Pigeonhole's: "Auto: " and the original subject.
    assert str(reply["Subject"]) == f"Auto: question {message_id}"
    assert getaddresses([str(reply["From"])]) == [("", user)]


def test_reply_waits_for_its_first_day(stack: Stack, receiver: Receiver) -> None:
    user = stack.add_user("later", PASSWORD)
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    stack.roost("autoreply", user, "--body", "Back soon.", "--start", tomorrow)
    shown = stack.roost("autoreply", user).stdout
    assert shown.splitlines()[0] == f"{user}: auto-reply on, but not today from {tomorrow}"

    sender = outside_sender("early")
    lines = delivered(stack, user, send(stack, user, sender))
    assert "vacation" not in lines
    assert replies_to(receiver, sender) == []


def test_autoreply_command_shows_and_refuses(stack: Stack, away: str) -> None:
    shown = stack.roost("autoreply", away).stdout
    assert shown == f"{away}: auto-reply on\nSubject: {SUBJECT}\n\n{BODY}\n"

    def error(*args: str) -> str:
        result = stack.roost("autoreply", *args, check=False)
        assert result.returncode == 2, result
        return result.stderr.strip()

    assert error(away, "--end", "2025-02-30") == (
        "roost: error: date '2025-02-30': accepts YYYY-MM-DD, such as 2025-07-31"
    )
    assert error(away, "--start", "2030-01-02", "--end", "2030-01-01") == (
        "roost: error: auto-reply ends (2030-01-01) before it starts (2030-01-02)"
    )
    assert error(away, "--subject", "two\nlines") == (
        "roost: error: auto-reply subject must be one line without control characters"
    )
    quiet = stack.add_user("quiet", PASSWORD)
    assert error(quiet, "--subject", "Away") == (
        f"roost: error: auto-reply for '{quiet}' needs a body (--body)"
    )
    stack.roost("autoreply", quiet, "--off")
    assert stack.roost("autoreply", quiet).stdout.startswith(f"{quiet}: auto-reply off\n")
