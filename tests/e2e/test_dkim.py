"""DKIM signing end to end: `roost dkim generate` makes a key, the records `roost dkim show`
prints are served by the test DNS, mail submitted to an outside receiver arrives signed,
and dkimpy verifies each signature against the key it looks up in that DNS: the domain's
own, an alternative's (its own d=, the domain's key) and an IDN domain's (punycode d=).
A domain without a key sends unsigned mail."""

from __future__ import annotations

import subprocess
import time
import uuid
from email import message_from_bytes

import dkim as dkimpy
import pytest

from tests.e2e.conftest import REMOTE_DOMAIN, Receiver
from tests.e2e.local_dns import add_records
from tests.e2e.stack import DOMAIN, RSPAMD_OPTIONS, Stack
from tests.e2e.test_inbound import SENDER, message

pytestmark = pytest.mark.e2e

ALTERNATIVE = "alt-dkim.test"
IDN = "bücher-dkim.test"
IDN_ASCII = IDN.encode("idna").decode("ascii")
UNSIGNED = "plain-dkim.test"
PASSWORD = "dkim-pw-1"


@pytest.fixture(scope="module")
def stack(scanning_stack: Stack) -> Stack:
    """The session's scanner stack (tests/e2e/conftest.py), whose Rspamd reads its
    selector map (a rotation's switch) every second; no other module there signs mail."""
    assert "map_watch_interval = 1s;" in scanning_stack.files[RSPAMD_OPTIONS]
    assert "DKIM_SELECTOR" not in scanning_stack.settings  # the default, dkim
    return scanning_stack


@pytest.fixture(scope="module")
def published(stack: Stack) -> dict[str, str]:
    """Keys for DOMAIN (with an alternative) and the IDN domain, their records in the DNS;
    returns the DKIM record text of each signing domain, as published."""
    stack.roost("domain", IDN)
    stack.roost("domain", UNSIGNED)
    stack.roost("alternative", "add", ALTERNATIVE, DOMAIN)
    texts: dict[str, str] = {}
    for domain in (DOMAIN, IDN):
        generated = stack.roost("dkim", "generate", domain).stdout.splitlines()
        assert generated[0] == f"DKIM key generated for {domain}; publish these records:"
        records = stack.roost("dkim", "show", domain).stdout
        assert records.splitlines() == generated[1:]
        add_records(records)
        for line in records.splitlines():
            if "._domainkey." in line:
                name, _, data = line.partition(" 600 IN TXT ")
                texts[name.split("._domainkey.")[1].rstrip(".")] = data
    assert set(texts) == {DOMAIN, ALTERNATIVE, IDN_ASCII}
    return texts


def send_out(stack: Stack, receiver: Receiver, login: str, sender: str, subject: str) -> bytes:
    """Submit a message from ``sender`` to the outside receiver; its bytes as received."""
    rcpt = f"friend@{REMOTE_DOMAIN}"
    with stack.submission() as client:
        client.login(login, PASSWORD)
        client.sendmail(sender, [rcpt], message(sender, rcpt, subject))
    deadline = time.monotonic() + 30
    while True:
        found = [
            raw
            for raw, item in zip(receiver.raw, receiver.envelopes, strict=True)
            if item[2]["Subject"] == subject
        ]
        if found:
            return found[0]
        assert time.monotonic() < deadline, stack.log_tail()
        time.sleep(0.3)


def signature_tags(raw: bytes) -> dict[str, str]:
    """The tags of the message's DKIM-Signature header (RFC 6376 section 3.5)."""
    value = message_from_bytes(raw)["DKIM-Signature"]
    assert value is not None, raw[:1500]
    tags = {}
    for part in str(value).split(";"):
        key, _, tag = part.strip().partition("=")
        if key:
            tags[key.strip()] = "".join(tag.split())
    return tags


@pytest.mark.parametrize(
    ("local_domain", "from_domain"),
    [(DOMAIN, DOMAIN), (DOMAIN, ALTERNATIVE), (IDN, IDN_ASCII)],
    ids=["domain", "alternative", "idn"],
)
def test_submitted_mail_is_signed_and_verifies_against_the_published_key(
    stack: Stack,
    receiver: Receiver,
    published: dict[str, str],
    local_domain: str,
    from_domain: str,
) -> None:
    local = f"signer-{from_domain.split('.')[0]}"
    stack.add_user(local, PASSWORD, local_domain)
    login = f"{local}@{local_domain.encode('idna').decode('ascii')}"
    sender = f"{local}@{from_domain}"
    raw = send_out(stack, receiver, login, sender, f"signed {uuid.uuid4()}")
    assert b"DKIM-Signature:" in raw, raw[:1500]
    tags = signature_tags(raw)
    assert (tags["d"], tags["s"], tags["a"]) == (from_domain, "dkim", "rsa-sha256"), tags
    # dkimpy looks the key up in DNS (the test DNS, by /etc/resolv.conf) and checks the
    # signature over the message exactly as it reached the outside receiver.
    assert dkimpy.verify(raw), raw[:1500]
    assert from_domain in published


def test_a_domain_without_a_key_sends_unsigned_mail(
    stack: Stack, receiver: Receiver, published: dict[str, str]
) -> None:
    login = stack.add_user("nokey", PASSWORD, UNSIGNED)
    raw = send_out(stack, receiver, login, login, f"unsigned {uuid.uuid4()}")
    assert b"DKIM-Signature:" not in raw
    assert UNSIGNED not in published


def test_a_new_key_signs_at_once(
    stack: Stack, receiver: Receiver, published: dict[str, str]
) -> None:
    """`roost dkim generate` hands the key to Rspamd before it returns: the very next
    message is signed with the new key (and fails against the old record)."""
    login = stack.add_user("rotate", PASSWORD, UNSIGNED)
    stack.roost("dkim", "generate", UNSIGNED)
    raw = send_out(stack, receiver, login, login, f"new key {uuid.uuid4()}")
    assert signature_tags(raw)["d"] == UNSIGNED
    assert not dkimpy.verify(raw)  # not published yet: NXDOMAIN
    add_records(stack.roost("dkim", "show", UNSIGNED).stdout)
    assert dkimpy.verify(raw)


def test_inbound_mail_is_arc_sealed_under_the_recipients_domain(
    stack: Stack, published: dict[str, str]
) -> None:
    """ARC (RFC 8617) with the same keys: mail from outside to a domain with a key is
    sealed under that domain, so a forward of it carries Roost's verdict onwards.

    Every test client is on loopback, which Rspamd counts as local (outgoing) whatever the
    address; so Rspamd is asked directly, as for a message from a public address."""
    user = f"sealed@{DOMAIN}"
    result = subprocess.run(
        [
            "rspamc",
            "-h",
            str(stack.root / "run" / "rspamd" / "controller.sock"),
            "-i",
            "192.0.2.25",
            "-F",
            SENDER,
            "-r",
            user,
        ],
        input=message(SENDER, user, f"sealed {uuid.uuid4()}"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # The seal itself is a header the milter adds; rspamc shows the symbol with its options.
    sealed = [line for line in result.stdout.splitlines() if "ARC_SIGNED" in line]
    assert sealed, result.stdout
    assert f"[{DOMAIN}:s=dkim:i=1]" in sealed[0], sealed
    assert "DKIM_SIGNED" not in result.stdout  # inbound mail is sealed, never DKIM-signed


def test_a_rotation_signs_with_the_new_key_once_its_record_is_live(
    stack: Stack, receiver: Receiver
) -> None:
    domain = "rotate-dkim.test"
    stack.roost("domain", domain)
    login = stack.add_user("rotating", PASSWORD, domain)
    stack.roost("dkim", "generate", domain)
    add_records(stack.roost("dkim", "show", domain).stdout)
    published = stack.roost("dkim", "rotate", domain).stdout.splitlines()
    assert "a new key under the selector dkim2" in published[0]
    # Not in DNS yet: no switch, mail still signed with the first key.
    waiting = stack.roost("dkim", "rotate", domain, check=False)
    assert waiting.returncode == 1, waiting.stdout
    raw = send_out(stack, receiver, login, login, f"before {uuid.uuid4()}")
    assert signature_tags(raw)["s"] == "dkim" and dkimpy.verify(raw)
    add_records("\n".join(published[1:]))
    assert "signing with dkim2 now" in stack.roost("dkim", "rotate", domain).stdout
    deadline = time.monotonic() + 30
    while True:
        raw = send_out(stack, receiver, login, login, f"after {uuid.uuid4()}")
        if signature_tags(raw)["s"] == "dkim2":
            break
        assert time.monotonic() < deadline, "Rspamd did not take the new selector"
        time.sleep(1)
    assert signature_tags(raw)["d"] == domain and dkimpy.verify(raw)
    retired = stack.roost("dkim", "rotate", domain).stdout.splitlines()
    assert retired[1:] == [f"dkim._domainkey.{domain}. TXT"]
    raw = send_out(stack, receiver, login, login, f"retired {uuid.uuid4()}")
    assert signature_tags(raw)["s"] == "dkim2" and dkimpy.verify(raw)
