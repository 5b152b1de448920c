"""A real Dovecot from the rendered configuration, against a small stand-in for the gate.

The stand-in answers ``/auth/email`` and ``/dovecot/userdb/<user>`` for a few users and
records every request, so the tests see both sides: what a client is told, and what the
Lua passdb/userdb asked the gate. Dovecot's dicts are the gate's own code (the dict
protocol server and :class:`MailboxDict`) over a directory of those users. Logins use real
clients (imaplib, poplib, smtplib's LMTP) and small ones written here for ManageSieve and
Dovecot's auth protocol.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import imaplib
import ipaddress
import json
import os
import poplib
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from roost.core.directory import Directory, UserEntry
from roost.gate.dictproxy import DictError, start_dict_server
from roost.gate.routes import MailboxDict
from roost.gate.secret import write_secret
from roost.gate.userdbfile import UserdbFile
from roost.layout import GATE_HTTP_PORT, Layout
from roost.services.dovecot import DovecotService
from roost.settings import Settings

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="Dovecot must start as root")

BIND = "127.0.6.1"
#: A second loopback address for clients, so Dovecot does not treat them as local
#: (a connection from its own address counts as secured even without TLS).
CLIENT = "127.0.6.2"
ALICE, ALICE_PW = "alice@example.com", "secret"
#: A password that needs every kind of percent-encoding: space, "%", non-ASCII, "+".
BOB, BOB_PW = "bob@example.com", "p a%s\u00e9+\u2603 ss"
#: Two messages of quota.
CAROL, CAROL_PW = "carol@example.com", "carol-pw"
#: 2000 bytes of quota, filled over IMAP.
ERIN, ERIN_PW = "erin@example.com", "erin-pw"
#: Her before script cannot be read: the gate's dict fails her lookups.
DANA, DANA_PW = "dana@example.com", "dana-pw"
LIMITED = "limited@example.com"
BROKEN = "broken@example.com"
RATE_LIMITED = "Temporary authentication failure (rate-limit)"


def write_certificate(cert_file: Path, key_file: Path) -> None:
    """A self-signed certificate for localhost and the test address; clients trust it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(BIND))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file.parent.mkdir(parents=True, exist_ok=True)
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)


@dataclass
class GateStandIn:
    """Answers like the gate, from a dict of users; records (path, headers) of each request."""

    passwords: dict[str, str]
    quotas: dict[str, int]
    #: login name -> canonical address (an alternative domain's address, say)
    aliases: dict[str, str]
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    #: What the real gate demands on its TCP port (roost.gate.secret); "" checks nothing.
    secret: str = ""

    def auth_answer(self, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        user = unquote(headers.get("auth-user", ""))
        password = unquote(headers.get("auth-pass", ""))
        if user == BROKEN:
            return 500, {}
        if user == LIMITED:
            return 200, {"Auth-Status": RATE_LIMITED, "Auth-Wait": "0"}
        canonical = self.aliases.get(user, user)
        if canonical in self.passwords and self.passwords[canonical] == password:
            return 200, {"Auth-Status": "OK", "Auth-User": canonical, "Auth-User-Exists": "True"}
        return 200, {
            "Auth-Status": "Authentication credentials invalid",
            "Auth-User-Exists": str(canonical in self.passwords),
            "Auth-Wait": "0",
        }

    def userdb_answer(self, user: str) -> tuple[int, dict[str, str], bytes]:
        if user not in self.passwords:
            return 404, {}, b""
        # Escapes of every kind the Lua decoder must read, in a field it ignores.
        body = {
            "user": user,
            "quota_rule": f"*:bytes={self.quotas[user]}",
            "note": 'caf\u00e9 \U0001f600 "quoted" back\\slash /\t',
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """HTTP/1.1 with persistent connections, as Dovecot's client uses it."""
        try:
            while request_line := await reader.readline():
                _method, target, _version = request_line.decode("latin-1").split()
                headers: dict[str, str] = {}
                while line := (await reader.readline()).decode("latin-1").rstrip("\r\n"):
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                self.requests.append((target, headers))
                body = b""
                if self.secret and headers.get("x-roost-secret") != self.secret:
                    status, answer = 403, {}
                elif target == "/auth/email":
                    status, answer = self.auth_answer(headers)
                elif target.startswith("/dovecot/userdb/"):
                    user = unquote(target[len("/dovecot/userdb/") :])
                    status, answer, body = self.userdb_answer(user)
                else:
                    status, answer = 404, {}
                head = f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
                for name, value in {**answer, "Content-Length": str(len(body))}.items():
                    head += f"{name}: {value}\r\n"
                writer.write(head.encode("latin-1") + b"\r\n" + body)
                await writer.drain()
        finally:
            writer.close()

    def auth_requests(self, user: str) -> list[dict[str, str]]:
        return [
            headers
            for target, headers in self.requests
            if target == "/auth/email" and unquote(headers.get("auth-user", "")) == user
        ]


@dataclass
class StandInIndex:
    """What :class:`MailboxDict` reads: the directory the gate would have loaded."""

    directory: Directory


@dataclass
class RecordedUsage:
    """Takes quota_clone's figures where the gate's writer would store them."""

    figures: dict[str, int] = field(default_factory=dict)

    def note(self, email: str, used: int) -> None:
        self.figures[email] = used


class FailingForDana(MailboxDict):
    """The gate's dict, failing as it would if it could not answer for one user."""

    def lookup(self, user: str, key: str) -> str | None:
        if user == DANA:
            raise DictError("cannot answer for now")
        return super().lookup(user, key)


@dataclass
class RunningDovecot:
    layout: Layout
    gate: GateStandIn
    log_file: Path
    tls: ssl.SSLContext
    usage: RecordedUsage = field(default_factory=RecordedUsage)
    #: The gate's userdb file, as the gate writes it (empty until a home exists).
    userdb_file: UserdbFile | None = None

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 10) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.log())
            if found is not None:
                return found
            assert time.monotonic() < deadline, f"no {pattern!r} in the log:\n{self.log()}"
            time.sleep(0.1)


def start_gate(
    gate: GateStandIn, mailbox_dict: MailboxDict, dict_socket: Path
) -> Callable[[], None]:
    """Serve the stand-in and the dict in a thread; return the stop function."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(
        asyncio.start_server(gate.handle, BIND, GATE_HTTP_PORT), loop
    ).result(timeout=10)
    dict_socket.parent.mkdir(parents=True, exist_ok=True)
    dict_server = asyncio.run_coroutine_threadsafe(
        start_dict_server(mailbox_dict, dict_socket), loop
    ).result(timeout=10)
    dict_socket.chmod(0o666)  # Dovecot's mail processes run as the mail user

    def stop() -> None:
        async def close() -> None:
            for listening in (server, dict_server):
                listening.close()
                await listening.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)

    return stop


def wait_ready(service: DovecotService, process: subprocess.Popen[bytes], log: Path) -> None:
    readiness = service.readiness()
    deadline = time.monotonic() + 20
    while True:
        assert process.poll() is None, f"Dovecot exited:\n{log.read_text()}"
        waiting = [path for path in readiness.unix_sockets if not path.exists()]
        for address, port in readiness.tcp:
            try:
                socket.create_connection((address, port), timeout=1).close()
            except OSError:
                waiting.append(Path(f"{address}:{port}"))
        if not waiting:
            return
        assert time.monotonic() < deadline, f"not ready: {waiting}\n{log.read_text()}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def running() -> Iterator[RunningDovecot]:
    base = Path(tempfile.mkdtemp(prefix="rds", dir="/tmp"))
    base.chmod(0o755)
    settings = Settings(
        ROOT=base / "root",
        DOMAIN="example.com",
        HOSTNAMES=("mail.example.com",),
        BIND_ADDRESS4=BIND,
        PORTS=(25, 143, 993, 995, 4190),
        RECIPIENT_DELIMITER="+",
    )
    layout = Layout(settings)
    write_certificate(layout.cert_file, layout.key_file)
    gate = GateStandIn(
        passwords={ALICE: ALICE_PW, BOB: BOB_PW, CAROL: CAROL_PW, DANA: DANA_PW, ERIN: ERIN_PW},
        quotas={ALICE: 1_000_000, BOB: 1_000_000, CAROL: 3_000, DANA: 1_000_000, ERIN: 2_000},
        aliases={"alice@alias.example": ALICE},
    )
    directory = Directory.build(
        domains=["example.com"],
        users=[
            UserEntry(email, email.split("@")[0], "example.com", "unused")
            for email in gate.passwords
        ],
    )
    usage = RecordedUsage()
    mailbox_dict = FailingForDana(StandInIndex(directory), usage)  # type: ignore[arg-type]
    # As GateService.render does before Dovecot starts: the Lua script sends this secret.
    gate.secret = write_secret(layout.gate_http_secret)
    stop_gate = start_gate(gate, mailbox_dict, layout.gate_dict)
    service = DovecotService(layout)
    service.render()
    # As the gate does at its first index load, before Dovecot starts.
    userdb_file = UserdbFile(layout.gate_userdb, layout.mail)
    asyncio.run(userdb_file.loaded(directory))
    log_file = base / "dovecot.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(service.command(), stdout=log, stderr=subprocess.STDOUT)
    tls = ssl.create_default_context(cafile=str(layout.cert_file))
    try:
        wait_ready(service, process, log_file)
        yield RunningDovecot(layout, gate, log_file, tls, usage, userdb_file)
    finally:
        process.terminate()
        process.wait(timeout=20)
        stop_gate()
        shutil.rmtree(base)


# -- small clients -------------------------------------------------------------------------


class IMAP4From(imaplib.IMAP4):
    """imaplib's plaintext client, connecting from CLIENT."""

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout, (CLIENT, 0))


def imaps(running: RunningDovecot) -> imaplib.IMAP4_SSL:
    return imaplib.IMAP4_SSL(BIND, 993, ssl_context=running.tls, timeout=10)


def imap_plain_auth(client: imaplib.IMAP4, user: str, password: str) -> tuple[str, Any]:
    """AUTHENTICATE PLAIN: any bytes in the password (LOGIN would need ASCII)."""
    secret = b"\0" + user.encode() + b"\0" + password.encode()
    return client.authenticate("PLAIN", lambda _challenge: secret)


class ManageSieve:
    """Just enough RFC 5804: STARTTLS, AUTHENTICATE PLAIN, PUTSCRIPT, SETACTIVE.

    The end-to-end tests use it too, against a whole stack's address and host name.
    """

    def __init__(
        self,
        tls: ssl.SSLContext,
        address: str = BIND,
        source: str = CLIENT,
        server_hostname: str = "localhost",
    ) -> None:
        self.tls = tls
        self.server_hostname = server_hostname
        self.sock: socket.socket = socket.create_connection((address, 4190), 10, (source, 0))
        self.file = self.sock.makefile("rb")
        self.capabilities = self.response()[1]

    def response(self) -> tuple[str, list[str]]:
        lines = []
        while True:
            line = self.file.readline().decode().rstrip("\r\n")
            assert line, "connection closed"
            for status in ("OK", "NO", "BYE"):
                if line == status or line.startswith(status + " "):
                    return line, lines
            lines.append(line)

    def command(self, text: str) -> str:
        self.sock.sendall(text.encode() + b"\r\n")
        return self.response()[0]

    def starttls(self) -> None:
        assert self.command("STARTTLS").startswith("OK")
        self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.server_hostname)
        self.file = self.sock.makefile("rb")
        self.capabilities = self.response()[1]

    def authenticate(self, user: str, password: str) -> str:
        secret = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        return self.command(f'AUTHENTICATE "PLAIN" "{secret}"')

    def putscript(self, name: str, script: str) -> str:
        data = script.encode()
        return self.command(f'PUTSCRIPT "{name}" {{{len(data)}+}}\r\n{script}')

    def close(self) -> None:
        self.command("LOGOUT")
        self.sock.close()


class DovecotAuthClient:
    """Dovecot's auth client protocol, as Postfix speaks it on the SASL socket."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rwb")
        self.send(f"VERSION\t1\t2\nCPID\t{os.getpid()}")
        self.handshake = []
        while (line := self.readline()) != "DONE":
            self.handshake.append(line)
        self.next_id = 1

    def send(self, text: str) -> None:
        self.file.write(text.encode() + b"\n")
        self.file.flush()

    def readline(self) -> str:
        return self.file.readline().decode().rstrip("\n")

    def plain(self, user: str, password: str, *, client_ip: str, secured: bool) -> str:
        """One AUTH PLAIN with Postfix's parameters; the reply's first field (OK/FAIL)."""
        resp = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        flags = "\tsecured" if secured else ""
        self.send(
            f"AUTH\t{self.next_id}\tPLAIN\tservice=smtp\tnologin\tlip={BIND}"
            f"\trip={client_ip}{flags}\tresp={resp}"
        )
        self.next_id += 1
        return self.readline()

    def close(self) -> None:
        self.sock.close()


def lmtp_deliver(
    running: RunningDovecot,
    rcpt: str,
    subject: str,
    body: str = "hello",
    headers: dict[str, str] | None = None,
) -> None:
    message = EmailMessage()
    message["From"] = "sender@example.net"
    message["To"] = rcpt
    message["Subject"] = subject
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    with smtplib.LMTP(str(running.layout.lmtp_socket)) as lmtp:
        lmtp.sendmail("sender@example.net", [rcpt], message.as_bytes())


def subjects(running: RunningDovecot, user: str, password: str, mailbox: str) -> list[str]:
    with imaps(running) as client:
        imap_plain_auth(client, user, password)
        client.select(mailbox, readonly=True)
        _, data = client.search(None, "ALL")
        found = []
        for number in data[0].split():
            _, parts = client.fetch(number, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            header = parts[0][1].decode().strip()
            found.append(header.removeprefix("Subject: "))
        return found


# -- tests ---------------------------------------------------------------------------------


def test_imaps_login_reaches_the_gate_with_the_client_details(running: RunningDovecot) -> None:
    with imaps(running) as client:
        local_ip, local_port = client.sock.getsockname()[:2]
        assert client.login("Alice@Example.COM", ALICE_PW)[0] == "OK"
        _, folders = client.list()
        _, quota = client.getquotaroot("INBOX")

    listed = {line.decode().rsplit(" ", 1)[-1]: line.decode() for line in folders}
    for mailbox, use in (
        ("Sent", "\\Sent"),
        ("Drafts", "\\Drafts"),
        ("Trash", "\\Trash"),
        ("Junk", "\\Junk"),
    ):
        assert use in listed[mailbox]
    # 1 000 000 bytes from the userdb's quota_rule, in kibibytes.
    assert re.search(rb"STORAGE 0 97[67]\)", quota[1][0])

    asked = running.gate.auth_requests(ALICE)[-1]
    assert asked["auth-method"] == "plain"
    assert asked["auth-user"] == "alice%40example.com"  # lowercased: auth_username_format
    assert asked["auth-protocol"] == "imap"
    assert asked["auth-port"] == "993"
    assert asked["client-ip"] == local_ip
    assert asked["client-port"] == str(local_port)
    assert asked["auth-ssl"] == "on"
    assert "/dovecot/userdb/alice@example.com" in [target for target, _ in running.gate.requests]


def test_login_at_an_alternative_domain_becomes_the_canonical_user(
    running: RunningDovecot,
) -> None:
    lmtp_deliver(running, ALICE, "for the canonical mailbox")

    with imaps(running) as client:
        client.login("alice@alias.example", ALICE_PW)
        _, data = client.select("INBOX", readonly=True)
        assert int(data[0]) >= 1
    running.wait_for_log(r"Login: user=<alice@example\.com>, method=PLAIN")
    assert not (running.layout.mail / "alice@alias.example").exists()


def test_imap_143_requires_starttls_before_login(running: RunningDovecot) -> None:
    with IMAP4From(BIND, 143, timeout=10) as client:
        assert "LOGINDISABLED" in client.capabilities
        with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
            imap_plain_auth(client, ALICE, ALICE_PW)
        client.starttls(ssl_context=running.tls)
        assert client.login(ALICE, ALICE_PW)[0] == "OK"
        local_port = client.sock.getsockname()[1]

    asked = running.gate.auth_requests(ALICE)[-1]
    assert asked["auth-port"] == "143"
    assert asked["client-ip"] == CLIENT
    assert asked["client-port"] == str(local_port)
    assert asked["auth-ssl"] == "on"


def test_password_is_percent_encoded_for_the_gate(running: RunningDovecot) -> None:
    with imaps(running) as client:
        assert imap_plain_auth(client, BOB, BOB_PW)[0] == "OK"

    asked = running.gate.auth_requests(BOB)[-1]
    assert asked["auth-pass"] == quote(BOB_PW, safe="")
    assert asked["auth-pass"].startswith("p%20a%25s%C3%A9%2B%E2%98%83")


def test_pop3s_login(running: RunningDovecot) -> None:
    client = poplib.POP3_SSL(BIND, 995, context=running.tls, timeout=10)
    try:
        client.user(ALICE)
        assert client.pass_(ALICE_PW).startswith(b"+OK")
        client.stat()
    finally:
        client.quit()

    asked = running.gate.auth_requests(ALICE)[-1]
    assert asked["auth-protocol"] == "pop3"
    assert asked["auth-port"] == "995"


def test_managesieve_script_files_delivered_mail(running: RunningDovecot) -> None:
    sieve = ManageSieve(running.tls)
    try:
        assert '"STARTTLS"' in sieve.capabilities
        sieve.starttls()
        assert sieve.authenticate(BOB, BOB_PW).startswith("OK")
        script = (
            'require "fileinto";\nif header :contains "subject" "sorted" {\n  fileinto "Junk";\n}\n'
        )
        assert sieve.putscript("roost", script).startswith("OK")
        assert sieve.command('SETACTIVE "roost"').startswith("OK")
    finally:
        sieve.close()

    asked = running.gate.auth_requests(BOB)[-1]
    assert asked["auth-protocol"] == "sieve"
    assert asked["auth-port"] == "4190"
    home = running.layout.mail / BOB
    assert (home / ".dovecot.sieve").resolve() == home / "sieve" / "roost.sieve"

    lmtp_deliver(running, BOB, "sorted by sieve")
    lmtp_deliver(running, BOB, "plain delivery")
    assert subjects(running, BOB, BOB_PW, "Junk") == ["sorted by sieve"]
    assert "plain delivery" in subjects(running, BOB, BOB_PW, "INBOX")


def test_managesieve_refuses_login_before_starttls(running: RunningDovecot) -> None:
    sieve = ManageSieve(running.tls)
    try:
        assert sieve.authenticate(BOB, BOB_PW).startswith("NO")
    finally:
        sieve.close()


def test_lmtp_delivers_to_the_maildir_and_strips_the_detail(running: RunningDovecot) -> None:
    lmtp_deliver(running, "alice+news@example.com", "detail delivery")

    assert "detail delivery" in subjects(running, ALICE, ALICE_PW, "INBOX")
    new = list((running.layout.mail / ALICE / "new").iterdir())
    cur = list((running.layout.mail / ALICE / "cur").iterdir())
    assert any(b"detail delivery" in path.read_bytes() for path in new + cur)
    assert "/dovecot/userdb/alice@example.com" in [target for target, _ in running.gate.requests]


def test_lmtp_refuses_an_unknown_user(running: RunningDovecot) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        lmtp_deliver(running, "nobody@example.com", "lost")
    code, _ = refused.value.recipients["nobody@example.com"]
    assert code == 550


def test_quota_from_the_userdb_is_enforced(running: RunningDovecot) -> None:
    lmtp_deliver(running, CAROL, "small")
    with pytest.raises((smtplib.SMTPDataError, smtplib.SMTPRecipientsRefused)) as full:
        lmtp_deliver(running, CAROL, "large", body="x" * 5000)
    assert b"Quota exceeded" in str(full.value).encode()
    assert subjects(running, CAROL, CAROL_PW, "INBOX") == ["small"]


def test_before_script_from_the_gates_dict_files_spam(running: RunningDovecot) -> None:
    """13 of 15 stars is 86 %, above the default threshold of 80: Junk, marked read."""
    lmtp_deliver(running, BOB, "spam by score", headers={"X-Spam-Level": "*" * 13})
    lmtp_deliver(running, BOB, "ham by score", headers={"X-Spam-Level": "*" * 12})

    assert "spam by score" in subjects(running, BOB, BOB_PW, "Junk")
    assert "ham by score" in subjects(running, BOB, BOB_PW, "INBOX")
    with imaps(running) as client:
        imap_plain_auth(client, BOB, BOB_PW)
        client.select("Junk", readonly=True)
        _, found = client.search(None, "SEEN", "SUBJECT", '"spam by score"')
        assert len(found[0].split()) == 1
    running.wait_for_log(
        r"lmtp\(bob@example\.com\).*fileinto action: stored mail into "
        r"mailbox 'Junk'"
    )


def test_quota_clone_reports_the_mailbox_size_to_the_gate(running: RunningDovecot) -> None:
    lmtp_deliver(running, ALICE, "counted", body="x" * 2000)

    # The figure quota_clone sends is Dovecot's Maildir++ quota: the sizes of the message
    # files in every folder, as stored.
    home = running.layout.mail / ALICE
    total = sum(
        path.stat().st_size for path in home.glob("**/*") if path.parent.name in ("new", "cur")
    )
    assert total > 2000
    deadline = time.monotonic() + 5
    while running.usage.figures.get(ALICE) != total and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running.usage.figures.get(ALICE) == total


def test_unreadable_before_script_defers_delivery(running: RunningDovecot) -> None:
    """No script, no delivery: a temporary failure, so Postfix keeps the message queued."""
    with pytest.raises(smtplib.SMTPDataError) as deferred:
        lmtp_deliver(running, DANA, "waits in the queue")
    assert deferred.value.smtp_code == 451
    assert b"Sieve" in deferred.value.smtp_error
    assert subjects(running, DANA, DANA_PW, "INBOX") == []


def test_imap_append_over_quota_is_refused(running: RunningDovecot) -> None:
    """Saving stops at the limit: a message that would cross it is refused, with no grace."""

    def append(size: int) -> tuple[str, list[Any]]:
        message = f"Subject: {size}\r\n\r\n".encode() + b"x" * size
        return client.append("INBOX", None, None, message)

    with imaps(running) as client:
        imap_plain_auth(client, ERIN, ERIN_PW)
        assert append(1800)[0] == "OK"  # 1817 of 2000 bytes
        status, answer = append(200)  # 2034 would be over
        assert status == "NO" and answer[0].startswith(b"[OVERQUOTA] Quota exceeded")
        assert append(150)[0] == "OK"  # 1984 fits


def test_sasl_for_postfix(running: RunningDovecot) -> None:
    client = DovecotAuthClient(running.layout.dovecot_auth_socket)
    try:
        assert "MECH\tPLAIN\tplaintext" in client.handshake
        assert "MECH\tLOGIN\tplaintext" in client.handshake
        reply = client.plain(ALICE, ALICE_PW, client_ip="192.0.2.25", secured=True)
        asked = running.gate.auth_requests(ALICE)[-1]
        # Without TLS between client and Postfix, the gate is told so.
        assert client.plain(ALICE, ALICE_PW, client_ip="192.0.2.25", secured=False).startswith(
            "OK\t2"
        )
        assert "auth-ssl" not in running.gate.auth_requests(ALICE)[-1]
    finally:
        client.close()

    assert reply.split("\t")[:2] == ["OK", "1"]
    assert "user=alice@example.com" in reply.split("\t")
    assert asked["auth-protocol"] == "smtp"
    assert asked["client-ip"] == "192.0.2.25"
    assert asked["auth-ssl"] == "on"
    # Postfix names no ports; Dovecot's "0" is not passed on as if it were one.
    assert "auth-port" not in asked
    assert "client-port" not in asked


def test_failures_reach_every_client_as_their_protocol_says(running: RunningDovecot) -> None:
    """Run together: each failure costs Dovecot's fixed 2 s delay."""

    def imap_wrong() -> str:
        with imaps(running) as client:
            with pytest.raises(imaplib.IMAP4.error) as error:
                client.login(ALICE, "wrong")
            return str(error.value)

    def imap_rate_limited() -> str:
        with imaps(running) as client:
            with pytest.raises(imaplib.IMAP4.error) as error:
                client.login(LIMITED, "whatever")
            return str(error.value)

    def imap_gate_broken() -> str:
        with imaps(running) as client:
            with pytest.raises(imaplib.IMAP4.error) as error:
                client.login(BROKEN, "whatever")
            return str(error.value)

    def pop3_wrong() -> str:
        client = poplib.POP3_SSL(BIND, 995, context=running.tls, timeout=10)
        try:
            client.user(BOB)
            with pytest.raises(poplib.error_proto) as error:
                client.pass_("wrong")
            return str(error.value)
        finally:
            client.close()

    def sieve_wrong() -> str:
        sieve = ManageSieve(running.tls)
        try:
            sieve.starttls()
            return sieve.authenticate(BOB, "wrong")
        finally:
            sieve.close()

    def sasl_wrong() -> str:
        client = DovecotAuthClient(running.layout.dovecot_auth_socket)
        try:
            return client.plain("nobody@example.com", "x", client_ip="192.0.2.26", secured=True)
        finally:
            client.close()

    checks = [imap_wrong, imap_rate_limited, imap_gate_broken, pop3_wrong, sieve_wrong, sasl_wrong]
    with ThreadPoolExecutor(len(checks)) as pool:
        results = dict(
            zip(
                [check.__name__ for check in checks],
                pool.map(lambda check: check(), checks),
                strict=True,
            )
        )

    assert "AUTHENTICATIONFAILED" in results["imap_wrong"]
    # A rate limit and an unreachable gate are temporary: the client should retry later.
    assert "UNAVAILABLE" in results["imap_rate_limited"]
    assert "UNAVAILABLE" in results["imap_gate_broken"]
    assert results["pop3_wrong"].startswith("b'-ERR")
    assert "Temporary" not in results["pop3_wrong"]
    assert results["sieve_wrong"].startswith("NO")
    assert results["sasl_wrong"].startswith("FAIL\t")
    assert running.gate.auth_requests(LIMITED), "the rate-limited login never asked the gate"

    # fail2ban's view: the login processes name the user and both ends.
    running.wait_for_log(
        r"imap-login: Info: Disconnected.*\(auth failed, 1 attempts[^)]*\): "
        rf"user=<{re.escape(ALICE)}>, method=PLAIN, rip=127\.0\.0\.1, rport=\d+, "
        rf"lip={re.escape(BIND)}, lport=993"
    )


def test_a_user_in_the_gates_userdb_file_is_not_asked_over_http(running: RunningDovecot) -> None:
    """Once a user's home exists the gate's file answers for them, changes included."""
    assert running.userdb_file is not None
    lmtp_deliver(running, BOB, "makes the home")  # the gate's userdb: home and user
    bigger = Directory.build(
        domains=["example.com"],
        users=[UserEntry(BOB, "bob", "example.com", "unused", quota_bytes=5_000_000)],
    )
    asyncio.run(running.userdb_file.loaded(bigger))
    written = running.layout.gate_userdb.read_text()
    assert written == f"{BOB}:::::::userdb_quota_rule=*:bytes=5000000\n"

    def userdb_asked() -> int:
        return sum(target.startswith("/dovecot/userdb/") for target, _ in running.gate.requests)

    deadline = time.monotonic() + 10
    while True:  # Dovecot looks at the file at most once a second
        with imaps(running) as client:
            imap_plain_auth(client, BOB, BOB_PW)
            _, quota = client.getquotaroot("INBOX")
        if re.search(rb"STORAGE \d+ 488[23]\)", quota[1][0] or b""):  # 5 000 000 bytes in KiB
            break
        assert time.monotonic() < deadline, quota
        time.sleep(0.3)
    asked = userdb_asked()
    lmtp_deliver(running, BOB, "from the file")
    assert userdb_asked() == asked
    assert running.gate.auth_requests(BOB)  # the login itself is still the gate's
