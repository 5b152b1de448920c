"""Fixtures for end-to-end tests: a running stack and an outside SMTP receiver."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from tests.e2e.local_dns import private_resolv_conf, start_dns
from tests.e2e.stack import (
    RSPAMD_OPTIONS,
    Stack,
    e2e_address,
    make_base,
    running,
    shared_hyperscan_cache,
)
from tests.unit.eicar import signature_database

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


# Shared stacks. Each stack start costs seconds of CPU (Rspamd above all), so modules whose
# tests need no stack of their own share one for the whole session. Tests on a shared stack
# make their own users and names, and never stop daemons or count what others may add.

#: Settings of the shared web stack. The welcome text is set but WELCOME stays false, as
#: test_welcome's silent case needs; API is on for test_anonmail (it only adds /api).
#: No random part: test modules import this file again as tests.e2e.conftest, a second
#: copy, and the copies must agree.
WEB_WELCOME_SUBJECT = "Welcome aboard the e2e stacks"
WEB_WELCOME_BODY = "Your mailbox at example.test is ready. Read the FAQ first."
WEB_API_TOKEN = secrets.token_hex(16)


@pytest.fixture(scope="session")
def web_stack(receiver: Receiver) -> Iterator[Stack]:
    """The stack of the web modules (browser, sign-in, two-factor, anonymous aliases...):
    default settings apart from the API, on an address no module stack uses."""
    require_root()
    settings = {
        "API": "true",
        "API_TOKEN": WEB_API_TOKEN,
        "WELCOME_SUBJECT": WEB_WELCOME_SUBJECT,
        "WELCOME_BODY": WEB_WELCOME_BODY,
    }
    with running(Stack("web", e2e_address(65), settings=settings)) as started:
        yield started


@pytest.fixture(scope="session")
def scanning_stack() -> Iterator[Stack]:
    """The stack of the attachment scanners (test_macros, test_antivirus), which test_dkim
    shares: Rspamd hands Office documents to olefy and every part to clamd. Each scanner
    module takes its scanner away only by renaming that scanner's socket, and puts it back;
    test_dkim's keys and domains are its own, and nothing else there signs or checks."""
    require_root()
    # test_dkim: Rspamd reads its selector map (a rotation's switch) every second instead
    # of every five minutes.
    options = shared_hyperscan_cache() + "map_watch_interval = 1s;\n"
    database = signature_database(make_base() / "antivirus-db")
    settings = {
        "SCAN_MACROS": "true",
        "ANTIVIRUS": "clamav",
        "ANTIVIRUS_UPDATES": "false",
        "ANTIVIRUS_DATABASE": str(database),
    }
    files = {RSPAMD_OPTIONS: options}
    with running(Stack("scanning", e2e_address(18), settings=settings, files=files)) as started:
        yield started


#: The web front proxy of test_web_proxy_auth_e2e, and a stranger that claims to be it.
PROXY_ADDRESS = e2e_address(81)
STRANGER_ADDRESS = e2e_address(82)


def world_suffixes() -> str:
    """Rspamd's options naming a public suffix list that also knows ``.test``.

    rspamadm parses each rua as a URL and drops one whose host has no known public suffix
    (RFC 6761's ``.test`` is in no list), so the test world's suffix list is Debian's with
    ``test`` added, as the real world's lists hold ``com`` and ``org``.
    """
    listed = make_base() / "public-suffixes-with-test.dat"
    debian = "/usr/share/rspamd/effective_tld_names.dat"
    with open(debian, encoding="utf-8") as source:
        listed.write_text(source.read() + "\n// the tests' own world\ntest\n", encoding="utf-8")
    listed.chmod(0o644)
    return f'url_tld = "{listed}";\n'


@pytest.fixture(scope="session")
def options_stack() -> Iterator[Stack]:
    """The stack of options that leave each other's tests alone:

    - WELCOME=true (test_welcome: users made on the admin page get the welcome);
    - sign-in by a whitelisted proxy's header (test_web_proxy_auth_e2e; its logout URL
      would break the sign-out the web stack's modules check);
    - DMARC reports (test_dmarc_reports), signed under a selector of their own: the other
      modules here sign nothing they check, and their mail comes from loopback, for which
      Rspamd notes no DMARC data, so the day's report data is test_dmarc_reports' alone;
    - MTA-STS (test_doctor_e2e): nginx serves the policy to mta-sts.example.test, in mode
      testing (a name more in HOSTNAMES changes nothing else).
    """
    require_root()
    settings = {
        "WELCOME": "true",
        "WELCOME_SUBJECT": WEB_WELCOME_SUBJECT,
        "WELCOME_BODY": WEB_WELCOME_BODY,
        "PROXY_AUTH_WHITELIST": f"{PROXY_ADDRESS}/32",
        "PROXY_AUTH_LOGOUT_URL": "https://sso.example.test/logout",
        "DMARC_SEND_REPORTS": "true",
        # A selector of its own: other tests publish keys of DOMAIN under the default one,
        # and the test DNS answers every record a test added, so a shared name would be
        # ambiguous.
        "DKIM_SELECTOR": "dmarcreports",
        "HOSTNAMES": "mail.example.test,mta-sts.example.test",
        "MTA_STS_MODE": "testing",
    }
    files = {RSPAMD_OPTIONS: shared_hyperscan_cache() + world_suffixes()}
    with running(Stack("options", e2e_address(15), settings=settings, files=files)) as started:
        yield started
