"""DMARC aggregate reports end to end (DMARC_SEND_REPORTS): mail from outside domains that
publish a DMARC policy with ``rua=`` is noted by Rspamd; ``roost dmarc-report`` sends the
day's reports through Roost's Postfix, DKIM-signed, from POSTMASTER@DOMAIN, to the rua
address only where its domain agrees to take reports about the policy domain (RFC 7489
section 7.1), and no more reports a day than DMARC_REPORTS_PER_DAY, the domains with the
most messages first.

The mail comes in on Postfix's front listener with XCLIENT naming a public address, as
nginx hands it over: Rspamd treats every 127/8 client as local and notes nothing for it.
"""

from __future__ import annotations

import gzip
import smtplib
import time
import uuid
from datetime import date
from email.message import Message

import dkim as dkimpy
import pytest

from roost.layout import POSTFIX_FRONT_PORT
from tests.e2e.conftest import Receiver
from tests.e2e.local_dns import add_records
from tests.e2e.stack import DOMAIN, Stack
from tests.e2e.test_inbound import message

pytestmark = pytest.mark.e2e

#: The outside senders' public address, which their SPF records name.
SENDER_IP = "198.51.100.23"
#: Policy domains and where their rua= points. The first rua domain agrees to take reports
#: about its policy domain (RFC 7489 section 7.1), the second never says so.
AGREED = "dmarc-agreed.test"
AGREED_RUA = "reports-agreed.test"
UNAGREED = "dmarc-unagreed.test"
UNAGREED_RUA = "reports-unagreed.test"
#: Two more policy domains for the cap, both with an agreeing rua domain.
BIG = "dmarc-big.test"
SMALL = "dmarc-small.test"
CAP_RUA = "reports-cap.test"
PASSWORD = "dmarc-pw-1"


def policy_records(domain: str, rua_domain: str, agreed: bool) -> str:
    lines = [
        f"{domain}. 300 IN MX 10 mx.sender.test.",
        f'{domain}. 300 IN TXT "v=spf1 ip4:{SENDER_IP} -all"',
        f'_dmarc.{domain}. 300 IN TXT "v=DMARC1; p=none; rua=mailto:dmarc@{rua_domain}"',
    ]
    if agreed:
        lines.append(f'{domain}._report._dmarc.{rua_domain}. 300 IN TXT "v=DMARC1"')
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def stack(receiver: Receiver, options_stack: Stack) -> Stack:
    """The session's options stack (tests/e2e/conftest.py) with DMARC_SEND_REPORTS on and
    the outside world's policy records in the test DNS."""
    assert options_stack.settings["DMARC_SEND_REPORTS"] == "true"
    add_records(
        policy_records(AGREED, AGREED_RUA, agreed=True)
        + policy_records(UNAGREED, UNAGREED_RUA, agreed=False)
        + policy_records(BIG, CAP_RUA, agreed=True)
        + policy_records(SMALL, CAP_RUA, agreed=True)
        + "".join(
            f"{rua}. 300 IN MX 10 mx.remote.test.\n" for rua in (AGREED_RUA, UNAGREED_RUA, CAP_RUA)
        )
    )
    # The reports leave signed with DOMAIN's key (under the stack's own selector, see
    # options_stack), which receivers find in DNS.
    options_stack.roost("dkim", "generate", DOMAIN)
    add_records(options_stack.roost("dkim", "show", DOMAIN).stdout)
    return options_stack


def send_from_outside(stack: Stack, sender: str, rcpt: str, count: int) -> None:
    """``count`` messages from ``sender`` as a mail server at SENDER_IP delivers them."""
    for n in range(count):
        with smtplib.SMTP(
            stack.address, POSTFIX_FRONT_PORT, source_address=(stack.address, 0), timeout=30
        ) as client:
            client.ehlo("mx.sender.test")
            code, reply = client.docmd(
                "XCLIENT", f"ADDR={SENDER_IP} NAME=mx.sender.test HELO=mx.sender.test"
            )
            assert code == 220, reply
            client.ehlo("mx.sender.test")
            subject = f"dmarc {n} {uuid.uuid4()}"
            client.sendmail(sender, [rcpt], message(sender, rcpt, subject))


def today() -> str:
    return date.today().strftime("%Y%m%d")


def wait_dry_run(stack: Stack, domains: set[str], timeout: float = 30) -> str:
    """`roost dmarc-report --dry-run` for today, once it lists every one of ``domains``
    (Rspamd writes its rows into Redis just after the scan)."""
    deadline = time.monotonic() + timeout
    while True:
        out = stack.roost("dmarc-report", "--dry-run", today()).stdout
        listed = {
            line.split(": ", 1)[1].split(" ", 1)[0]
            for line in out.splitlines()
            if line.startswith("  would send: ")
        }
        if domains <= listed:
            return out
        assert time.monotonic() < deadline, (out, stack.log_tail())
        time.sleep(0.5)


def reports_to(receiver: Receiver, address: str) -> list[tuple[bytes, Message]]:
    return [
        (raw, item[2])
        for raw, item in zip(receiver.raw, receiver.envelopes, strict=True)
        if address in item[1]
    ]


def wait_report(receiver: Receiver, address: str, stack: Stack) -> tuple[bytes, Message]:
    deadline = time.monotonic() + 30
    while not reports_to(receiver, address):
        assert time.monotonic() < deadline, stack.log_tail()
        time.sleep(0.3)
    (found,) = reports_to(receiver, address)
    return found


def report_xml(mail: Message) -> str:
    """The report's gzip'd XML attachment (RFC 7489 section 7.2.1.1), uncompressed."""
    parts = [part for part in mail.walk() if part.get_content_type() == "application/gzip"]
    assert len(parts) == 1, mail.as_string()[:2000]
    payload = parts[0].get_payload(decode=True)
    assert isinstance(payload, bytes)
    assert (parts[0].get_filename() or "").endswith(".xml.gz")
    return gzip.decompress(payload).decode()


def counts(xml: str) -> int:
    return sum(int(part.split("</count>")[0]) for part in xml.split("<count>")[1:])


def test_reports_go_signed_from_postmaster_only_to_an_agreeing_rua(
    stack: Stack, receiver: Receiver
) -> None:
    rcpt = stack.add_user("dmarc-rcpt", PASSWORD)
    send_from_outside(stack, f"news@{AGREED}", rcpt, 3)
    send_from_outside(stack, f"news@{UNAGREED}", rcpt, 2)
    listed = wait_dry_run(stack, {AGREED, UNAGREED})
    assert f"{AGREED} (rua mailto:dmarc@{AGREED_RUA}): 3 messages" in listed, listed
    assert f"{UNAGREED} (rua mailto:dmarc@{UNAGREED_RUA}): 2 messages" in listed, listed
    # The dry run sent nothing and left the data for the real run.
    time.sleep(1)
    assert not reports_to(receiver, f"dmarc@{AGREED_RUA}")

    sent = stack.roost("dmarc-report", today())
    summary = sent.stdout.splitlines()[0]
    assert summary.startswith(f"DMARC reports for {today()}: 1 sent, 0 failed, 1 skipped"), (
        sent.stdout
    )
    # rspamadm looked for the rua domain's agreement and did not find it.
    assert f"_report._dmarc.{UNAGREED_RUA}" in sent.stdout, sent.stdout
    assert f"exclude mailto:dmarc@{UNAGREED_RUA}" in sent.stdout, sent.stdout
    assert f"problem: {UNAGREED}: no report sent" in sent.stdout, sent.stdout

    raw, mail = wait_report(receiver, f"dmarc@{AGREED_RUA}", stack)
    assert mail["From"].endswith(f"<postmaster@{DOMAIN}>"), mail["From"]
    assert f"Report Domain: {AGREED}" in " ".join(mail["Subject"].split())
    xml = report_xml(mail)
    assert f"<domain>{AGREED}</domain>" in xml, xml
    assert f"<source_ip>{SENDER_IP}</source_ip>" in xml, xml
    assert counts(xml) == 3, xml
    assert "<spf>pass</spf>" in xml, xml
    # Signed by Rspamd as our own outgoing mail, with DOMAIN's published key.
    assert dkimpy.verify(raw), raw[:1500]
    # Nothing went to the rua whose domain never agreed, and the day's data is gone.
    time.sleep(2)
    assert not reports_to(receiver, f"dmarc@{UNAGREED_RUA}")
    again = stack.roost("dmarc-report", today()).stdout
    assert (
        again == f"DMARC reports for {today()}: none (no mail from a domain that asks for them)\n"
    )


def test_the_daily_cap_sends_the_domains_with_the_most_messages(
    stack: Stack, receiver: Receiver
) -> None:
    rcpt = stack.add_user("dmarc-cap", PASSWORD)
    send_from_outside(stack, f"news@{BIG}", rcpt, 3)
    send_from_outside(stack, f"news@{SMALL}", rcpt, 1)
    wait_dry_run(stack, {BIG, SMALL})
    # The administrator lowers the cap in the settings file; the next run obeys it.
    stack.settings["DMARC_REPORTS_PER_DAY"] = "1"
    stack.write_env()
    try:
        sent = stack.roost("dmarc-report", today()).stdout
    finally:
        del stack.settings["DMARC_REPORTS_PER_DAY"]
        stack.write_env()
    lines = sent.splitlines()
    assert lines[0].startswith(f"DMARC reports for {today()}: 1 sent, 0 failed, 0 skipped"), sent
    assert "1 over DMARC_REPORTS_PER_DAY=1 not sent" in lines[0], sent
    assert f"  dropped: {SMALL} (rua mailto:dmarc@{CAP_RUA}): 1 message, 1 row" in lines, sent
    _, mail = wait_report(receiver, f"dmarc@{CAP_RUA}", stack)
    xml = report_xml(mail)
    assert f"<domain>{BIG}</domain>" in xml, xml
    assert counts(xml) == 3, xml
    time.sleep(2)
    assert len(reports_to(receiver, f"dmarc@{CAP_RUA}")) == 1


def test_the_daily_process_runs_under_the_stack(stack: Stack) -> None:
    """The supervised sender started with the stack and caught up the latest day due."""
    stack.wait_for_log(r"dmarc-reports\s*\| .*DMARC reports for \d{8}: ", timeout=30)
    assert (stack.root / "dmarc-reports" / "last-sent").read_text().strip().isdigit()
