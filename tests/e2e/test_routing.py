"""Where mail goes, through the real daemons (Mailu's routing rules; docs/routing.md):
alternative domains, relayed domains and backup MX, forwarding with SRS, disabled users and
internationalised domains."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from email.message import Message

import pytest
from aiosmtpd.controller import Controller

from tests.e2e.conftest import REMOTE_DOMAIN, Receiver
from tests.e2e.stack import DOMAIN, Stack, e2e_address
from tests.e2e.test_inbound import message

pytestmark = pytest.mark.e2e

#: The "main server" a relayed domain points to: another SMTP server of the test's own.
NEXT_HOP_ADDRESS = e2e_address(20)
NEXT_HOP_PORT = 2525
#: Outside clients of this module log in from here (their own rate-limit network).
CLIENT = "127.80.20.1"


def tag() -> str:
    return uuid.uuid4().hex[:8]


def wait_for_envelope(
    receiver: Receiver, subject: str, timeout: float = 20.0
) -> tuple[str, list[str], Message]:
    deadline = time.monotonic() + timeout
    while not receiver.by_subject(subject):
        if time.monotonic() > deadline:
            raise AssertionError(f"{subject!r} did not reach the outside server")
        time.sleep(0.2)
    return receiver.by_subject(subject)[0]


def send_in(stack: Stack, sender: str, rcpt: str, subject: str) -> None:
    """Mail from the internet, on port 25."""
    with stack.smtp(source=CLIENT) as client:
        client.sendmail(sender, [rcpt], message(sender, rcpt, subject))


def rcpt_answer(stack: Stack, rcpt: str, sender: str = "a@sender.test") -> tuple[int, bytes]:
    with stack.smtp(source=CLIENT) as client:
        client.mail(sender)
        return client.rcpt(rcpt)


def new_domain(stack: Stack, prefix: str) -> str:
    domain = f"{prefix}-{tag()}.test"
    stack.roost("domain", domain)
    return domain


@pytest.fixture(scope="module")
def next_hop() -> Iterator[Receiver]:
    handler = Receiver()
    controller = Controller(handler, hostname=NEXT_HOP_ADDRESS, port=NEXT_HOP_PORT)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


# -- alternative domains -----------------------------------------------------------------------


def test_an_alternative_domain_is_the_primary_for_mail_logins_and_senders(stack: Stack) -> None:
    primary = new_domain(stack, "primary")
    alternative = f"alt-{tag()}.test"
    stack.roost("alternative", "add", alternative, primary)
    joe = stack.add_user("joe", "joe-pw-alt1", primary)
    ann = stack.add_user("ann", "ann-pw-alt1", primary)

    subject = f"to the alternative {tag()}"
    send_in(stack, "a@sender.test", f"joe@{alternative}", subject)
    stack.wait_for_message(joe, "joe-pw-alt1", subject)

    # The alternative spelling logs in to the same mailbox.
    client = stack.imap(CLIENT)
    try:
        client.login(f"joe@{alternative}", "joe-pw-alt1")
        client.select("INBOX", readonly=True)
        assert client.search(None, "SUBJECT", f'"{subject}"')[1][0]
    finally:
        client.logout()

    # Either spelling may send as either spelling.
    for login, sender in ((joe, f"joe@{alternative}"), (f"joe@{alternative}", joe)):
        subject = f"from {sender} as {login} {tag()}"
        with stack.submission(CLIENT) as client:
            client.login(login, "joe-pw-alt1")
            client.sendmail(sender, [ann], message(sender, ann, subject))
        stack.wait_for_message(ann, "ann-pw-alt1", subject)


# -- relayed domains and backup MX -------------------------------------------------------------


def test_a_relayed_domain_goes_to_its_next_hop_for_any_recipient(
    stack: Stack, next_hop: Receiver
) -> None:
    """The Mailu FAQ's backup MX: our domain is relayed to the main server, which the MX
    records list first; the backup accepts mail for every address and passes it on."""
    relayed = f"relayed-{tag()}.test"
    stack.roost("relay", "add", relayed, f"{NEXT_HOP_ADDRESS}:{NEXT_HOP_PORT}")
    rcpt = f"anyone-{tag()}@{relayed}"  # nobody checks the recipient here
    subject = f"relayed {tag()}"
    send_in(stack, "someone@remote.test", rcpt, subject)
    mail_from, rcpts, _ = wait_for_envelope(next_hop, subject)
    assert rcpts == [rcpt]
    # The sender's domain is not ours: the next hop sees it rewritten (SRS).
    assert mail_from.startswith("SRS0=") and mail_from.endswith(f"=remote.test=someone@{DOMAIN}")


def test_a_relayed_domain_with_mx_target_finds_the_host_in_dns(
    stack: Stack, receiver: Receiver
) -> None:
    relayed = f"mxrelay-{tag()}.test"
    stack.roost("relay", "add", relayed, "mx:mx.remote.test")  # no MX there: its A record
    subject = f"relayed by mx {tag()}"
    send_in(stack, "a@sender.test", f"x@{relayed}", subject)
    assert wait_for_envelope(receiver, subject)[1] == [f"x@{relayed}"]


def test_a_relay_target_that_cannot_work_is_refused_by_the_cli(stack: Stack) -> None:
    result = stack.roost("relay", "add", f"bad-{tag()}.test", "mx:[2001:db8::1]", check=False)
    assert result.returncode == 2
    assert "mx: cannot be used with a [bracketed] host" in result.stderr


# -- forwarding and SRS ------------------------------------------------------------------------


def test_forward_keeping_a_copy_to_an_outside_address_with_srs(
    stack: Stack, receiver: Receiver
) -> None:
    domain = new_domain(stack, "fwd")
    ann = stack.add_user("ann", "ann-pw-fwd1", domain)
    outside = f"ann-elsewhere-{tag()}@{REMOTE_DOMAIN}"
    stack.roost("forward", ann, outside)
    shown = stack.roost("forward", ann).stdout
    assert f"{ann}: forwarding on, keeps a copy" in shown and outside in shown

    subject = f"forwarded out {tag()}"
    send_in(stack, "friend@remote.test", ann, subject)
    stack.wait_for_message(ann, "ann-pw-fwd1", subject)
    srs_sender, rcpts, forwarded = wait_for_envelope(receiver, subject)
    assert rcpts == [outside]
    assert srs_sender.startswith("SRS0=")
    assert srs_sender.endswith(f"=remote.test=friend@{DOMAIN}")
    assert forwarded["From"] == "friend@remote.test"  # only the envelope is rewritten

    # A bounce to the SRS address goes back to the original sender...
    bounce = f"bounce of {subject}"
    with stack.smtp(source=CLIENT) as client:
        client.sendmail("", [srs_sender], message("MAILER-DAEMON@remote.test", srs_sender, bounce))
    mail_from, rcpts, _ = wait_for_envelope(receiver, bounce)
    assert (mail_from, rcpts) == ("<>", ["friend@remote.test"])  # aiosmtpd shows <> so
    # ...and a forged one is unknown.
    forged = "SRS0=AAAA=" + srs_sender.split("=", 2)[2]
    assert rcpt_answer(stack, forged, sender="")[0] == 550


def test_forward_without_copy_to_a_local_user(stack: Stack) -> None:
    domain = new_domain(stack, "fwdlocal")
    ann = stack.add_user("ann", "ann-pw-fwd2", domain)
    bob = stack.add_user("bob", "bob-pw-fwd2", domain)
    stack.roost("forward", ann, bob, "--no-keep")
    subject = f"forwarded in {tag()}"
    send_in(stack, "a@sender.test", ann, subject)
    stack.wait_for_message(bob, "bob-pw-fwd2", subject)
    assert stack.count_messages(ann, "ann-pw-fwd2", subject) == 0

    stack.roost("forward", ann, "--off")
    assert "forwarding off" in stack.roost("forward", ann).stdout
    subject = f"not forwarded {tag()}"
    send_in(stack, "a@sender.test", ann, subject)
    stack.wait_for_message(ann, "ann-pw-fwd2", subject)
    assert stack.count_messages(bob, "bob-pw-fwd2", subject) == 0


def test_the_forward_verb_names_what_is_wrong(stack: Stack) -> None:
    user = stack.add_user(f"verb{tag()}", "verb-pw-1")
    for arguments, error in (
        (["nobody@example.test", "x@remote.test"], "user 'nobody@example.test' does not exist"),
        ([user, "not-an-address"], "destination 'not-an-address': no @"),
        ([user, "x@remote.test", "--off"], "--off takes no DESTINATION"),
        ([user, " , "], "forwarding needs at least one destination address"),
    ):
        result = stack.roost("forward", *arguments, check=False)
        assert result.returncode == 2
        assert error in result.stderr
    # Nothing was changed by the refusals; --keep alone only sets the copy.
    stack.roost("forward", user, "--no-keep")
    assert f"{user}: forwarding off, keeps no copy" in stack.roost("forward", user).stdout


# -- disabled users ----------------------------------------------------------------------------


def test_a_disabled_user_gets_no_mail(stack: Stack) -> None:
    domain = new_domain(stack, "disabled")
    gone = stack.add_user("gone", "gone-pw-1", domain)
    ann = stack.add_user("ann", "ann-pw-dis1", domain)
    stack.roost("alias", "group", domain, f"{gone},{ann}")
    stack.roost("alias", "onlygone", domain, gone)
    stack.roost("user-delete", gone)  # Mailu's default: disable, keep the address

    for rcpt in (gone, f"gone+tag@{domain}", f"onlygone@{domain}"):
        code, text = rcpt_answer(stack, rcpt)
        assert (code, text[:6]) == (550, b"5.2.1 "), text
        assert text.endswith(b"Mailbox disabled")
    with stack.submission(CLIENT) as client:
        client.login(ann, "ann-pw-dis1")
        client.mail(ann)
        assert client.rcpt(gone)[0] == 550

    subject = f"to the group {tag()}"
    send_in(stack, "a@sender.test", f"group@{domain}", subject)
    stack.wait_for_message(ann, "ann-pw-dis1", subject)

    # That a disabled user can log in nowhere is test_auth.py's.


# -- internationalised domains -----------------------------------------------------------------


def test_a_unicode_domain_delivers_and_logs_in_with_punycode_on_the_wire(stack: Stack) -> None:
    unicode_domain = f"bücher-{tag()}.test"
    stack.roost("domain", unicode_domain)
    ascii_domain = unicode_domain.encode("idna").decode()
    kim = stack.add_user("kim", "kim-pw-idn1", unicode_domain)
    assert kim == f"kim@{unicode_domain}"
    assert f"kim@{unicode_domain}" in stack.roost("list", "users", unicode_domain).stdout

    subject = f"to an idn domain {tag()}"
    send_in(stack, "a@sender.test", f"kim@{ascii_domain}", subject)
    stack.wait_for_message(f"kim@{ascii_domain}", "kim-pw-idn1", subject)

    # No SMTPUTF8 (Dovecot's LMTP lacks it): senders use the punycode spelling instead.
    with stack.smtp(source=CLIENT) as client:
        assert not client.has_extn("smtputf8")
    with stack.submission(CLIENT) as client:
        assert not client.has_extn("smtputf8")

    # A login in Unicode (UTF-8 in SASL PLAIN) is the same account.
    plain = base64.b64encode(f"\0kim@{unicode_domain}\0kim-pw-idn1".encode()).decode()
    subject = f"sent after a unicode login {tag()}"
    with stack.submission(CLIENT) as client:
        assert client.docmd("AUTH", f"PLAIN {plain}")[0] == 235
        own = f"kim@{ascii_domain}"
        client.sendmail(own, [own], message(own, own, subject))
    stack.wait_for_message(own, "kim-pw-idn1", subject)
