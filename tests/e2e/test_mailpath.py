"""The mail path's own policy, through the real daemons (docs/ARCHITECTURE.md, docs/routing.md):

- port 25 refuses envelope senders of our domains (the gate's ``senderaccess``, as Mailu's
  ``/internal/postfix/sender/access``), while bounces and RELAYNETS still get through;
- mail Dovecot sends (Sieve redirect, vacation) counts against the user's MESSAGE_RATELIMIT
  on a Postfix listener of its own, although it comes from loopback (mynetworks);
- the ``turtle`` transport spaces deliveries to one domain by its rate delay.

One stack with MESSAGE_RATELIMIT=3/hour, RELAYNETS, and a short turtle delay as an override.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from tests.e2e.conftest import REMOTE_DOMAIN, Receiver, require_root
from tests.e2e.stack import DOMAIN, HOSTNAME, Stack, e2e_address, running
from tests.e2e.test_inbound import message
from tests.unit.test_services_dovecot_smoke import ManageSieve

pytestmark = pytest.mark.e2e

OUTSIDE_CLIENT = "127.80.40.1"
#: In the stack's RELAYNETS; 127.80.x.x stays outside.
RELAYNET_CLIENT = "127.82.0.7"
ALTERNATIVE = "alt-mailpath.test"
#: An outside domain that overrides/postfix/transport.map sends through turtle (the Mailu
#: FAQ's way to slow delivery to one receiver).
SLOW_DOMAIN = "slow.test"
TURTLE_ADDRESS = e2e_address(31)
TURTLE_PORT = 2526
TURTLE_DELAY = 2  # seconds, overrides/postfix/postfix.cf
RATE = 3  # MESSAGE_RATELIMIT per hour


def tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def mp_stack() -> Iterator[Stack]:
    require_root()
    stack = Stack(
        "mailpath",
        e2e_address(30),
        settings={"MESSAGE_RATELIMIT": f"{RATE}/hour", "RELAYNETS": "127.82.0.0/16"},
        files={
            "overrides/postfix/postfix.cf": f"turtle_destination_rate_delay = {TURTLE_DELAY}s\n",
            "overrides/postfix/transport.map": (
                f"{SLOW_DOMAIN} turtle:[{TURTLE_ADDRESS}]:{TURTLE_PORT}\n"
            ),
        },
    )
    with running(stack) as started:
        started.roost("alternative", "add", ALTERNATIVE, DOMAIN)
        yield started


def rcpt_answer(stack: Stack, sender: str, rcpt: str, source: str) -> tuple[int, bytes]:
    with stack.smtp(source=source) as client:
        client.mail(sender)
        return client.rcpt(rcpt)


# -- forged local senders on port 25 ------------------------------------------------------------


def test_port_25_refuses_our_domains_as_senders(mp_stack: Stack) -> None:
    user = mp_stack.add_user("target", "target-pw-1")
    for sender in (f"ceo@{DOMAIN}", f"target@{DOMAIN}", f"CEO@{ALTERNATIVE}", f"x+y@{DOMAIN}"):
        code, text = rcpt_answer(mp_stack, sender, user, OUTSIDE_CLIENT)
        assert code == 554, (sender, text)
        assert text.startswith(b"5.7.1 ") and b"Sender address rejected" in text, text
    # Outside senders are welcome (relayed domains too: tests/unit/test_gate_socketmap.py).
    assert rcpt_answer(mp_stack, f"someone@{REMOTE_DOMAIN}", user, OUTSIDE_CLIENT)[0] == 250


def test_bounces_and_relaynets_still_get_through(mp_stack: Stack) -> None:
    user = mp_stack.add_user("bounced", "bounced-pw-1")
    bounce, relayed = f"bounce {tag()}", f"from the office {tag()}"
    with mp_stack.smtp(source=OUTSIDE_CLIENT) as client:
        client.sendmail("", [user], message(f"MAILER-DAEMON@{REMOTE_DOMAIN}", user, bounce))
    with mp_stack.smtp(source=RELAYNET_CLIENT) as client:
        client.sendmail(f"printer@{DOMAIN}", [user], message(f"printer@{DOMAIN}", user, relayed))
    mp_stack.wait_for_message(user, "bounced-pw-1", bounce)
    mp_stack.wait_for_message(user, "bounced-pw-1", relayed)


def test_authenticated_submission_may_still_use_our_domains(mp_stack: Stack) -> None:
    user = mp_stack.add_user("author", "author-pw-1")
    subject = f"submitted {tag()}"
    with mp_stack.submission(OUTSIDE_CLIENT) as client:
        client.login(user, "author-pw-1")
        client.sendmail(user, [user], message(user, user, subject))
    mp_stack.wait_for_message(user, "author-pw-1", subject)


# -- mail Dovecot sends counts against MESSAGE_RATELIMIT -------------------------------------


def deliver_from_outside(stack: Stack, sender: str, rcpt: str, subject: str) -> None:
    with stack.smtp(source=OUTSIDE_CLIENT) as client:
        client.sendmail(sender, [rcpt], message(sender, rcpt, subject))


def refusals_for(stack: Stack, sender: str) -> int:
    """How often the Sieve listener refused a message from ``sender`` over the limit."""
    pattern = re.compile(
        rf"postfix/sieve/smtpd\[\d+\]: \S+: reject: (?:DATA|BDAT) from \S+: 550 5\.7\.1 "
        rf"<{re.escape(sender)}>: Sender address rejected: You are sending too many emails"
    )
    return len(pattern.findall(stack.log_text()))


def wait_until(condition: object, stack: Stack, what: str, timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what}:\n{stack.log_tail(80)}"
        time.sleep(0.3)


def test_a_sieve_redirect_storm_is_limited(mp_stack: Stack, receiver: Receiver) -> None:
    user = mp_stack.add_user("fan", "fan-pw-1")
    friend = f"friend-{tag()}@{REMOTE_DOMAIN}"
    sieve = ManageSieve(
        mp_stack.tls_context(check_hostname=True),
        mp_stack.address,
        server_hostname=HOSTNAME,
        source=OUTSIDE_CLIENT,
    )
    try:
        sieve.starttls()
        assert sieve.authenticate(user, "fan-pw-1").startswith("OK")
        assert sieve.putscript("fwd", f'redirect "{friend}";\r\n').startswith("OK")
        assert sieve.command('SETACTIVE "fwd"').startswith("OK")
    finally:
        sieve.close()

    for number in range(RATE + 2):
        deliver_from_outside(mp_stack, f"news{number}@sender.test", user, f"storm {number}")

    def redirected() -> list[tuple[str, list[str], object]]:
        return [item for item in receiver.envelopes if item[1] == [friend]]

    wait_until(lambda: len(redirected()) >= RATE, mp_stack, "the redirects within the limit")
    wait_until(lambda: refusals_for(mp_stack, user) >= 2, mp_stack, "the redirects over it")
    time.sleep(1)
    assert len(redirected()) == RATE
    # They leave from the user's own address, which the limit is counted by.
    assert {mail_from for mail_from, _, _ in redirected()} == {user}
    # What was not redirected is kept at once (implicit keep): a storm holds up no one's
    # incoming mail. What was redirected is not: redirect cancels the keep (RFC 5228).
    wait_until(
        lambda: mp_stack.count_messages(user, "fan-pw-1", "storm") == 2,
        mp_stack,
        "every message in the mailbox",
        timeout=15,
    )


def test_a_vacation_storm_is_limited(mp_stack: Stack, receiver: Receiver) -> None:
    user = mp_stack.add_user("holiday", "holiday-pw-1")
    mp_stack.roost("autoreply", user, "--subject", "Away", "--body", "-", stdin="Back soon.")
    senders = [f"asker{number}-{tag()}@{REMOTE_DOMAIN}" for number in range(RATE + 2)]
    for sender in senders:  # one reply per sender and day: five senders, five replies due
        deliver_from_outside(mp_stack, sender, user, f"question {tag()}")

    def replies() -> list[tuple[str, list[str], object]]:
        return [item for item in receiver.envelopes if item[1][0] in senders]

    wait_until(lambda: len(replies()) >= RATE, mp_stack, "the replies within the limit")
    wait_until(lambda: refusals_for(mp_stack, user) >= 2, mp_stack, "the replies over it")
    time.sleep(1)
    assert len(replies()) == RATE
    wait_until(
        lambda: mp_stack.count_messages(user, "holiday-pw-1", "question") == RATE + 2,
        mp_stack,
        "every question in the mailbox",
        timeout=15,
    )


# -- turtle ---------------------------------------------------------------------------------------


class Timed(Receiver):
    """Notes when each message arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[float, list[str]]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: object, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.arrivals.append((time.monotonic(), list(envelope.rcpt_tos)))
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture(scope="module")
def slow_receiver() -> Iterator[Timed]:
    handler = Timed()
    controller = Controller(handler, hostname=TURTLE_ADDRESS, port=TURTLE_PORT)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


def test_turtle_spaces_deliveries_to_one_domain(mp_stack: Stack, slow_receiver: Timed) -> None:
    """Three messages, one recipient each, to one domain: they leave TURTLE_DELAY apart.

    With Mailu's turtle_destination_recipient_limit = 1 the rate delay counts per
    recipient (postconf(5)), and all three would arrive in the same second.
    """
    rcpts = [f"r{number}-{tag()}@{SLOW_DOMAIN}" for number in range(3)]
    for rcpt in rcpts:  # outbound mail, from a RELAYNETS client (MESSAGE_RATELIMIT is per login)
        with mp_stack.smtp(source=RELAYNET_CLIENT) as client:
            sender = f"printer@{DOMAIN}"
            client.sendmail(sender, [rcpt], message(sender, rcpt, f"slow {tag()}"))

    def arrived() -> list[float]:
        return sorted(when for when, tos in slow_receiver.arrivals if tos[0] in rcpts)

    wait_until(lambda: len(arrived()) == 3, mp_stack, "the turtle deliveries", timeout=60)
    times = arrived()
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # qmgr(8) counts the delay from each delivery's start, in whole seconds of its own clock,
    # and arrival adds the connection's time, which varies on a loaded host: allow a second
    # less. Without the limit the gaps are near zero.
    assert all(gap >= TURTLE_DELAY - 1 for gap in gaps), gaps
    assert "postfix-turtle/smtp" in mp_stack.log_text()
