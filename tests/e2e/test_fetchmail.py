"""Fetched accounts end to end (FETCHMAIL_ENABLED): a stack fetches from a real IMAP and
POP3 server over TLS, a Dovecot of the test's own on its own loopback address with a
certificate for ``imap.peer.test`` (the test DNS names it).

The fetcher trusts that certificate only because FETCHMAIL_OPTIONS names it
(``sslcertfile``), as an administrator would name a private CA: certificates are checked.
"""

from __future__ import annotations

import email
import html
import pwd
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from roost.layout import Layout
from roost.settings import load_settings
from roost.store import work
from roost.store.entities import fetch as fetch_entity
from roost.store.models import Fetch
from tests.e2e.conftest import require_root
from tests.e2e.local_dns import add_records
from tests.e2e.stack import (
    DOMAIN,
    HOSTNAME,
    Stack,
    e2e_address,
    make_base,
    running,
    wait_for_port,
)

pytestmark = pytest.mark.e2e

PEER_ADDRESS = e2e_address(141)
PEER_HOST = "imap.peer.test"
PEER_BASE = make_base() / "fetch-peer"
PEER_CA = PEER_BASE / "cert.pem"
#: A remote password with what could end a run control string and start options. (A line
#: break, refused by IMAP's LOGIN, is in the unit tests: tests/unit/test_fetchmail.py.)
HOSTILE_PASSWORD = 'pw "quoted"\\ ; poll: evil.test with password "x" é'
PASSWORD = "fetch-pw-1"


@dataclass
class Peer:
    """The remote server: Dovecot with IMAP and POP3 (implicit TLS and STARTTLS)."""

    base: Path
    process: subprocess.Popen[bytes] | None = None

    def maildir(self, user: str, folder: str = "") -> Path:
        return self.base / "mail" / user / "Maildir" / (f".{folder}" if folder else "")

    def put(self, user: str, subject: str, folder: str = "") -> None:
        """A message in the user's folder, as delivered there."""
        box = self.maildir(user, folder)
        for part in ("new", "cur", "tmp"):
            (box / part).mkdir(parents=True, exist_ok=True)
        text = (
            f"From: someone@outside.test\r\nTo: {user}@peer.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{uuid.uuid4()}@outside.test>\r\n\r\nfetched text\r\n"
        )
        (box / "new" / f"{time.time_ns()}.{uuid.uuid4().hex}.peer").write_text(text)
        subprocess.run(["chown", "-R", "mail:mail", str(self.base / "mail")], check=True)

    def count(self, user: str, folder: str = "") -> int:
        box = self.maildir(user, folder)
        return sum(len(list((box / part).iterdir())) for part in ("new", "cur"))


PEER_CONF = """\
base_dir = {base}/run
state_dir = {base}/state
instance_name = roost-fetch-peer
listen = {address}
protocols = imap pop3
log_path = {base}/dovecot.log
ssl = required
ssl_cert = <{base}/cert.pem
ssl_key = <{base}/key.pem
auth_mechanisms = plain login
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = {base}/users
}}
userdb {{
  driver = static
  args = uid=mail gid=mail home={base}/mail/%u
}}
mail_location = maildir:~/Maildir
first_valid_uid = {mail_uid}
pop3_uidl_format = %08Xu%08Xv
service imap-login {{
  inet_listener imap {{
    port = 143
  }}
  inet_listener imaps {{
    port = 993
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 110
  }}
  inet_listener pop3s {{
    port = 995
    ssl = yes
  }}
}}
"""


def start_peer(users: dict[str, str]) -> Peer:
    if PEER_BASE.exists():
        shutil.rmtree(PEER_BASE)
    for name in ("run", "state", "mail"):
        (PEER_BASE / name).mkdir(parents=True)
    PEER_BASE.chmod(0o755)
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "2", "-subj", f"/CN={PEER_HOST}",
            "-addext", f"subjectAltName=DNS:{PEER_HOST}",
            "-keyout", str(PEER_BASE / "key.pem"), "-out", str(PEER_CA),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    PEER_CA.chmod(0o644)
    conf = PEER_BASE / "dovecot.conf"
    mail_uid = pwd.getpwnam("mail").pw_uid
    conf.write_text(PEER_CONF.format(base=PEER_BASE, address=PEER_ADDRESS, mail_uid=mail_uid))
    # Hashed: the hostile password's colon and quotes cannot stand in the file as they are.
    lines = [
        f"{user}:"
        + subprocess.run(
            ["doveadm", "-c", str(conf), "pw", "-s", "SHA512-CRYPT", "-p", password],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for user, password in users.items()
    ]
    (PEER_BASE / "users").write_text("\n".join(lines) + "\n")
    add_records(f"{PEER_HOST}. 300 IN A {PEER_ADDRESS}\n")
    peer = Peer(PEER_BASE)
    peer.process = subprocess.Popen(["dovecot", "-F", "-c", str(conf)])
    for port in (993, 995, 143, 110):
        wait_for_port(PEER_ADDRESS, port, timeout=20)
    return peer


@pytest.fixture(scope="module")
def peer() -> Iterator[Peer]:
    require_root()
    started = start_peer({"alice": PASSWORD, "bob": PASSWORD, "carol": HOSTILE_PASSWORD})
    try:
        yield started
    finally:
        assert started.process is not None
        started.process.terminate()
        started.process.wait(20)


@pytest.fixture(scope="module")
def stack(peer: Peer) -> Iterator[Stack]:
    settings = {
        "FETCHMAIL_ENABLED": "true",
        "FETCHMAIL_DELAY": "3",
        "FETCHMAIL_OPTIONS": f'sslcertfile "{PEER_CA}"',
    }
    with running(Stack("fetchmail", e2e_address(140), settings=settings)) as started:
        yield started


def add_account(stack: Stack, email_address: str, **values: object) -> int:
    """A fetched account of the peer's, made through the fetch entity's rules."""
    settings = load_settings(env_file=stack.env_file, environ={})
    values = {"host": PEER_HOST, "password": PASSWORD} | values
    with work.change(settings) as db:
        row = fetch_entity.add_fetch(
            db,
            email_address,
            fetch_entity.FetchSettings(**values),  # type: ignore[arg-type]
        )
        db.flush()
        return row.id


def state(stack: Stack, fetch_id: int) -> tuple[object, str | None]:
    settings = load_settings(env_file=stack.env_file, environ={})
    with work.read(settings) as db:
        row = db.get(Fetch, fetch_id)
        assert row is not None
        return row.last_check, row.error


def wait_checks(stack: Stack, fetch_id: int, rounds: int = 1, timeout: float = 40) -> str | None:
    """Wait until the account has been checked ``rounds`` more times; its error."""
    seen = state(stack, fetch_id)[0]
    deadline = time.monotonic() + timeout
    while True:
        when, error = state(stack, fetch_id)
        if when is not None and when != seen:
            rounds -= 1
            seen = when
            if rounds == 0:
                return error
        assert time.monotonic() < deadline, stack.log_tail()
        time.sleep(0.5)


def subjects(stack: Stack, user: str, tag: str) -> list[str]:
    found = stack.search(user, PASSWORD, tag, fetch=True)
    return sorted(email.message_from_bytes(raw)["Subject"] for raw in found)


def test_imap_keeps_the_originals_and_fetches_each_message_once(stack: Stack, peer: Peer) -> None:
    tag = uuid.uuid4().hex[:8]
    user = stack.add_user("ivy", PASSWORD)
    peer.put("alice", f"{tag} one")
    peer.put("alice", f"{tag} two")
    peer.put("alice", f"{tag} archived", folder="Archiv&AOk-")
    fetch_id = add_account(
        stack, user, protocol="imap", username="alice", keep=True, folders=("INBOX", "Archivé")
    )
    assert wait_checks(stack, fetch_id) is None
    assert subjects(stack, user, tag) == [f"{tag} archived", f"{tag} one", f"{tag} two"]
    # Kept on the server, and not fetched again by the next round.
    assert peer.count("alice") == 2 and peer.count("alice", "Archiv&AOk-") == 1
    peer.put("alice", f"{tag} three")
    assert wait_checks(stack, fetch_id) is None
    assert subjects(stack, user, tag) == [
        f"{tag} archived",
        f"{tag} one",
        f"{tag} three",
        f"{tag} two",
    ]
    assert wait_checks(stack, fetch_id) is None
    assert len(subjects(stack, user, tag)) == 4
    # Delivered by LMTP, not scanned: Rspamd's headers are not there.
    raw = stack.search(user, PASSWORD, f"{tag} one", fetch=True)[0]
    assert b"X-Spamd-Bar" not in raw


def test_pop3_with_starttls_deletes_the_originals_and_scans(stack: Stack, peer: Peer) -> None:
    tag = uuid.uuid4().hex[:8]
    user = stack.add_user("poppy", PASSWORD)
    peer.put("bob", f"{tag} first")
    peer.put("bob", f"{tag} second")
    fetch_id = add_account(
        stack, user, protocol="pop3", username="bob", tls=False, keep=False, scan=True
    )
    assert wait_checks(stack, fetch_id) is None
    assert peer.count("bob") == 0
    assert subjects(stack, user, tag) == [f"{tag} first", f"{tag} second"]
    raw = stack.search(user, PASSWORD, f"{tag} first", fetch=True)[0]
    assert b"X-Spamd-Bar" in raw  # through Postfix, scanned by Rspamd
    assert wait_checks(stack, fetch_id) is None
    assert len(subjects(stack, user, tag)) == 2


def test_pop3_keeps_a_hostile_passwords_messages_and_remembers_them(
    stack: Stack, peer: Peer
) -> None:
    tag = uuid.uuid4().hex[:8]
    user = stack.add_user("hedy", PASSWORD)
    peer.put("carol", f"{tag} hostile")
    fetch_id = add_account(
        stack, user, protocol="pop3", username="carol", password=HOSTILE_PASSWORD, keep=True
    )
    assert wait_checks(stack, fetch_id) is None
    assert subjects(stack, user, tag) == [f"{tag} hostile"]
    assert peer.count("carol") == 1
    # The next rounds know the message by its UIDL (RFC 1939) and leave it.
    assert wait_checks(stack, fetch_id, rounds=2) is None
    assert subjects(stack, user, tag) == [f"{tag} hostile"]
    assert HOSTILE_PASSWORD not in stack.log_text()
    # fetchmail ran as Postfix's user: the UID memory it wrote is that user's.
    settings = load_settings(env_file=stack.env_file, environ={})
    idfile = Layout(settings).fetchmail_idfile(fetch_id)
    assert pwd.getpwuid(idfile.stat().st_uid).pw_name == "postfix"


def test_a_wrong_password_is_shown_to_the_user(stack: Stack, peer: Peer) -> None:
    user = stack.add_user("wanda", PASSWORD)
    fetch_id = add_account(
        stack, user, protocol="imap", username="alice", password="not-the-password", keep=True
    )
    error = wait_checks(stack, fetch_id)
    assert error is not None
    assert error.startswith("the server refused the user name or password: "), error
    assert "alice@imap.peer.test" in error
    # The user's page, as the administrator sees it acting for them (the user's own first
    # sign-in asks for a new password first).
    with httpx.Client(verify=False, base_url=f"https://{stack.address}") as client:
        headers = {"Host": HOSTNAME}
        page = client.get("/sso/login", headers=headers)
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        admin = {"email": f"admin@{DOMAIN}", "password": stack.admin_password}
        client.post("/sso/login", headers=headers, data=admin | {"csrf_token": token})
        listing = client.get(f"/admin/fetch/list/{user}", headers=headers)
    assert listing.status_code == 200, listing.text
    assert html.escape(error) in listing.text
    assert "not-the-password" not in stack.log_text()


def test_the_fetcher_runs_only_when_enabled(stack: Stack) -> None:
    assert "fetchmail" in stack.roost("status").stdout
