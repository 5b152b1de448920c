"""Who may send what, and how mail leaves (Mailu's sender rules; docs/routing.md):
allow_spoofing, WILDCARD_SENDERS, MESSAGE_RATELIMIT, RELAYHOST with credentials, RELAYNETS.

allow_spoofing needs no setting and uses the shared stack; the rest runs on one extra stack
whose settings turn all of it on at once.
"""

from __future__ import annotations

import smtplib
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from tests.e2e.conftest import Receiver, require_root
from tests.e2e.stack import DOMAIN, Stack, e2e_address, running
from tests.e2e.test_inbound import message

pytestmark = pytest.mark.e2e

CLIENT = "127.80.30.1"
SMARTHOST_ADDRESS = e2e_address(11)
SMARTHOST_PORT = 2525
RELAY_USER = "relay-login"
RELAY_PASSWORD = "relay-secret-1"
#: Clients in RELAYNETS of the extra stack; 127.80.x.x stays outside.
RELAYNET_CLIENT = "127.81.0.5"


def tag() -> str:
    return uuid.uuid4().hex[:8]


def refusal(error: smtplib.SMTPException) -> tuple[int, bytes]:
    """The code and text of a refused MAIL, RCPT or DATA, whichever smtplib raised."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return next(iter(error.recipients.values()))
    return error.smtp_code, error.smtp_error  # type: ignore[attr-defined]


def send_as(stack: Stack, login: str, password: str, sender: str, rcpts: list[str]) -> str:
    """Submit on 587 as ``login`` with envelope sender ``sender``; return the subject."""
    subject = f"from {sender} by {login} {tag()}"
    with stack.submission(CLIENT) as client:
        client.login(login, password)
        client.sendmail(sender, rcpts, message(sender, ", ".join(rcpts), subject))
    return subject


# -- allow_spoofing (shared stack) ---------------------------------------------------------------


def test_allow_spoofing_covers_the_users_own_domain_only(stack: Stack) -> None:
    domain = f"spoof-{tag()}.test"
    stack.roost("domain", domain)
    boss = stack.add_user("boss", "boss-pw-1", domain)
    bob = stack.add_user("bob", "bob-pw-1", domain)
    elsewhere = f"admin@{DOMAIN}"  # a user of another of the stack's domains
    stack.roost(
        "config-import",
        "--update",
        "-",
        stdin=f"user:\n  - email: {boss}\n    allow_spoofing: true\n",
    )

    subject = send_as(stack, boss, "boss-pw-1", bob, [bob])
    stack.wait_for_message(bob, "bob-pw-1", subject)
    for sender in (elsewhere, "someone@remote.test"):
        with pytest.raises(smtplib.SMTPException) as refused:
            send_as(stack, boss, "boss-pw-1", sender, [bob])
        code, text = refusal(refused.value)
        assert code == 553 and b"Sender address rejected: not owned by user" in text
    with pytest.raises(smtplib.SMTPException):
        send_as(stack, bob, "bob-pw-1", boss, [bob])  # the others may not spoof the boss


# -- the extra stack: WILDCARD_SENDERS, MESSAGE_RATELIMIT, RELAYHOST, RELAYNETS ----------------


@dataclass
class Smarthost(Receiver):
    """The RELAYHOST: STARTTLS, then AUTH, then mail; remembers who logged in."""

    logins: list[tuple[str, bytes, bytes, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def authenticate(
        self, server: object, session: Session, envelope: Envelope, mechanism: str, data: object
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((mechanism, data.login, data.password, session.ssl is not None))
        ok = (data.login, data.password) == (RELAY_USER.encode(), RELAY_PASSWORD.encode())
        return AuthResult(success=ok)

    def wait(self, subject: str, timeout: float = 20.0) -> tuple[str, list[str]]:
        deadline = time.monotonic() + timeout
        while not self.by_subject(subject):
            assert time.monotonic() < deadline, f"{subject!r} did not reach the smarthost"
            time.sleep(0.2)
        mail_from, rcpts, _ = self.by_subject(subject)[0]
        return mail_from, rcpts


@pytest.fixture(scope="module")
def senders_stack() -> Iterator[Stack]:
    require_root()
    stack = Stack(
        "senders",
        e2e_address(10),
        settings={
            "WILDCARD_SENDERS": f"wild@{DOMAIN}",
            "MESSAGE_RATELIMIT": "3/hour",
            "MESSAGE_RATELIMIT_EXEMPTION": f"exempt@{DOMAIN}",
            "RELAYHOST": f"[{SMARTHOST_ADDRESS}]:{SMARTHOST_PORT}",
            "RELAYUSER": RELAY_USER,
            "RELAYPASSWORD": RELAY_PASSWORD,
            "RELAYNETS": "127.81.0.0/16",
        },
    )
    with running(stack) as started:
        yield started


@pytest.fixture(scope="module")
def smarthost(senders_stack: Stack) -> Iterator[Smarthost]:
    # The smarthost borrows the stack's own certificate: Postfix encrypts (level "may")
    # but does not check who it talks to.
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(senders_stack.ca_file, senders_stack.root / "certs" / "key.pem")
    handler = Smarthost()
    controller = Controller(
        handler,
        hostname=SMARTHOST_ADDRESS,
        port=SMARTHOST_PORT,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=handler.authenticate,
    )
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


def test_relayhost_gets_outbound_mail_with_relayuser_credentials(
    senders_stack: Stack, smarthost: Smarthost
) -> None:
    ann = senders_stack.add_user("ann", "ann-pw-relay1")
    subject = send_as(senders_stack, ann, "ann-pw-relay1", ann, ["friend@remote.test"])
    assert smarthost.wait(subject) == (ann, ["friend@remote.test"])
    mechanism, login, password, over_tls = smarthost.logins[-1]
    assert (login, password, over_tls) == (RELAY_USER.encode(), RELAY_PASSWORD.encode(), True)
    assert mechanism in ("PLAIN", "LOGIN")


def test_wildcard_senders_may_send_as_anyone(senders_stack: Stack, smarthost: Smarthost) -> None:
    wild = senders_stack.add_user("wild", "wild-pw-1")
    ann = f"ann@{DOMAIN}"
    for sender in ("someone@remote.test", f"nobody-{tag()}@elsewhere.test"):
        subject = send_as(senders_stack, wild, "wild-pw-1", sender, ["friend@remote.test"])
        mail_from, _ = smarthost.wait(subject)
        # A foreign sender leaves with an SRS address of ours, so SPF holds at the next hop.
        local, _, domain = sender.rpartition("@")
        assert mail_from.startswith("SRS0=")
        assert mail_from.endswith(f"={domain}={local}@{DOMAIN}")
    plain = senders_stack.add_user("plain", "plain-pw-1")
    with pytest.raises(smtplib.SMTPException) as refused:
        send_as(senders_stack, plain, "plain-pw-1", "someone@remote.test", [ann])
    assert refusal(refused.value)[0] == 553


def test_message_ratelimit_per_login_counts_messages_and_honours_exemptions(
    senders_stack: Stack,
) -> None:
    rate = senders_stack.add_user("rate", "rate-pw-1")
    exempt = senders_stack.add_user("exempt", "exempt-pw-1")
    # Three messages fit MESSAGE_RATELIMIT=3/hour, whatever their number of recipients.
    send_as(senders_stack, rate, "rate-pw-1", rate, [rate, f"rate+a@{DOMAIN}", f"rate+b@{DOMAIN}"])
    for _ in range(2):
        send_as(senders_stack, rate, "rate-pw-1", rate, [rate])
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send_as(senders_stack, rate, "rate-pw-1", rate, [rate])
    code, text = refusal(refused.value)
    assert code == 450
    assert text.startswith(b"4.2.1 ")
    assert text.endswith(b"You are sending too many emails too fast.")
    for _ in range(5):
        send_as(senders_stack, exempt, "exempt-pw-1", exempt, [exempt])


def test_relaynets_relay_without_login_and_others_may_not(
    senders_stack: Stack, smarthost: Smarthost
) -> None:
    subject = f"from relaynets {tag()}"
    with senders_stack.smtp(source=RELAYNET_CLIENT) as client:
        client.sendmail(
            "printer@office.test",
            ["friend@remote.test"],
            message("printer@office.test", "friend@remote.test", subject),
        )
    smarthost.wait(subject)
    with senders_stack.smtp(source=CLIENT) as client:
        client.mail("printer@office.test")
        code, text = client.rcpt("friend@remote.test")
    assert code == 554 and b"Relay access denied" in text
