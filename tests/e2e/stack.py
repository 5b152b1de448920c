"""A whole Roost stack for end-to-end tests: ``roost up`` on its own loopback address.

Each stack has its own ROOT and binds the standard ports on its own address (ROOST_E2E_NET.N),
so stacks never collide. Everything is driven through the real command line, the way a user
would: the settings file, ``roost up``, ``roost user ...``.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import re
import secrets
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: Every address the e2e tests own is in this /24, so two test runs (say, two developers'
#: sessions) on one machine can use different ones: ROOST_E2E_NET=127.0.1 ./test.sh
E2E_NET = os.environ.get("ROOST_E2E_NET", "127.0.0")
E2E_BASE = Path(f"/tmp/roost-e2e-{E2E_NET}")


def e2e_address(host: int) -> str:
    return f"{E2E_NET}.{host}"


#: Every test stack's Rspamd shares one cache of compiled Hyperscan databases (an
#: override, as a user would write it): each stack would otherwise spend seconds of CPU
#: compiling the same rules again. The files are named by the rules' hash, so sharing is safe.
RSPAMD_OPTIONS = "overrides/rspamd/options.inc"


def shared_hyperscan_cache() -> str:
    cache = make_base() / "rspamd-hyperscan"
    cache.mkdir(mode=0o755, exist_ok=True)
    shutil.chown(cache, "_rspamd", "_rspamd")
    return f'hs_cache_dir = "{cache}";\n'


DOMAIN = "example.test"
HOSTNAME = "mail.example.test"
# Outside clients connect from this network: not loopback's 127.0.0.1, so not trusted.
OUTSIDE = "127.80.0.1"


def make_base() -> Path:
    """A 0755 base directory: Postfix and Dovecot drop privileges and must traverse ROOT."""
    E2E_BASE.mkdir(mode=0o755, exist_ok=True)
    os.chmod(E2E_BASE, 0o755)
    return E2E_BASE


def wait_for_port(host: str, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port}") from None
            time.sleep(0.2)


@dataclass
class Stack:
    name: str
    address: str
    settings: dict[str, str] = field(default_factory=dict)
    #: files written under ROOT before the first start, e.g. overrides
    files: dict[str, str] = field(default_factory=dict)
    #: environment of `roost up` beyond the tests' own (e.g. SSL_CERT_FILE for a test CA)
    environment: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.root = make_base() / self.name
        self.env_file = make_base() / f"{self.name}.env"
        self.log_file = make_base() / f"{self.name}.log"
        self.admin_password = secrets.token_urlsafe(12)
        base = {
            "ROOT": str(self.root),
            "BIND_ADDRESS4": self.address,
            "DOMAIN": DOMAIN,
            "HOSTNAMES": HOSTNAME,
            "SECRET_KEY": secrets.token_hex(16),
            "TLS_FLAVOR": "cert",
            "PORTS": "25,80,110,143,443,465,587,993,995,4190",
            "MESSAGE_SIZE_LIMIT": "2000000",
            "RECIPIENT_DELIMITER": "+",
            "INITIAL_ADMIN_ACCOUNT": "admin",
            "INITIAL_ADMIN_DOMAIN": DOMAIN,
            "INITIAL_ADMIN_PW": self.admin_password,
            "INITIAL_ADMIN_MODE": "ifmissing",
            "LOG_LEVEL": "INFO",
            # The host's resolver, which is the tests' DNS (tests/e2e/local_dns.py): a
            # stack's own Unbound would ask the root servers. test_outbound_tls runs one
            # that asks the tests' servers only.
            "DNS_RESOLVER": "system",
        }
        base.update(self.settings)
        self.settings = base

    # -- lifecycle ---------------------------------------------------------------------
    def write_env(self) -> None:
        lines = [f"{key}={value}" for key, value in self.settings.items()]
        self.env_file.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 90.0) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        self.log_file.write_bytes(b"")
        self.root.mkdir(mode=0o755)
        files = {RSPAMD_OPTIONS: shared_hyperscan_cache()} | self.files
        for relative, text in files.items():
            path = self.root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        self.write_env()
        self.start_again(timeout)

    def start_again(self, timeout: float = 90.0) -> None:
        log = self.log_file.open("ab")
        self.process = subprocess.Popen(
            self.roost_argv("up"), stdout=log, stderr=subprocess.STDOUT, env=self.environ()
        )
        log.close()
        deadline = time.monotonic() + timeout
        while self.roost("status", check=False).returncode != 0:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"roost up exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"stack {self.name} not ready:\n{self.log_tail()}")
            time.sleep(0.5)

    def stop(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in self.settings}
        env.pop("ROOST_ENV", None)
        return env | self.environment

    def roost_argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "roost", "--env", str(self.env_file), *args]

    def roost(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.roost_argv(*args),
            capture_output=True,
            text=True,
            input=stdin,
            env=self.environ(),
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"roost {' '.join(args)} failed ({result.returncode}): {result.stderr}"
            )
        return result

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern, re.M)
        while True:
            match = regex.search(self.log_text())
            if match:
                return match
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line matches {pattern!r}:\n{self.log_tail()}")
            time.sleep(0.2)

    # -- users -------------------------------------------------------------------------
    def add_user(self, local: str, password: str, domain: str = DOMAIN) -> str:
        self.roost("user", local, domain, "-", stdin=password + "\n")
        return f"{local}@{domain}"

    # -- clients -----------------------------------------------------------------------
    @property
    def ca_file(self) -> Path:
        return self.root / "certs" / "cert.pem"

    def tls_context(self, check_hostname: bool = False) -> ssl.SSLContext:
        """Trust exactly the stack's own certificate.

        smtplib and poplib check the name against the IP they connect to, which the
        certificate does not carry; IMAP checks the real host name (``imap()``).
        """
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.check_hostname = check_hostname
        return context

    def smtp(self, port: int = 25, source: str = OUTSIDE) -> smtplib.SMTP:
        client = smtplib.SMTP(self.address, port, source_address=(source, 0), timeout=30)
        client.ehlo("client.outside.test")
        return client

    def smtps(self, source: str = OUTSIDE) -> smtplib.SMTP_SSL:
        client = smtplib.SMTP_SSL(
            self.address,
            465,
            source_address=(source, 0),
            timeout=30,
            context=self.tls_context(),
            local_hostname="client.outside.test",
        )
        # smtplib checks the certificate name against the host it was given.
        return client

    def submission(self, source: str = OUTSIDE) -> smtplib.SMTP:
        client = self.smtp(587, source)
        client.starttls(context=self.tls_context())
        client.ehlo("client.outside.test")
        return client

    def imap(self, source: str = OUTSIDE) -> imaplib.IMAP4_SSL:
        """IMAP on 993 from ``source``, checking the certificate against HOSTNAMES[0]."""
        return _BoundIMAP4_SSL(self.address, source, self.tls_context(check_hostname=True))

    def search(self, user: str, password: str, subject: str, fetch: bool = False) -> list[bytes]:
        """Messages in the user's INBOX whose subject contains ``subject``.

        Compares the Subject headers here rather than with IMAP SEARCH, whose matching
        full-text search changes (word-based, not substrings).
        """
        client = self.imap()
        try:
            client.login(user, password)
            _, count = client.select("INBOX", readonly=True)
            if int(count[0] or 0) == 0:
                return []
            _, data = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            wanted = subject.encode()
            ids = [
                item[0].split()[0]
                for item in data
                if isinstance(item, tuple) and wanted in item[1].replace(b"\r\n ", b" ")
            ]
            if not fetch:
                return ids
            return [client.fetch(i, "(RFC822)")[1][0][1] for i in ids]
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                client.logout()

    def wait_for_message(
        self, user: str, password: str, subject: str, timeout: float = 20.0
    ) -> bytes:
        """Poll the user's INBOX over IMAP until a message with ``subject`` is there."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.search(user, password, subject, fetch=True)
            if found:
                return found[-1]
            if time.monotonic() > deadline:
                raise AssertionError(f"{subject!r} did not arrive for {user}:\n{self.log_tail()}")
            time.sleep(0.5)

    def count_messages(self, user: str, password: str, subject: str) -> int:
        return len(self.search(user, password, subject))


class _BoundIMAP4_SSL(imaplib.IMAP4_SSL):
    """IMAP4_SSL that connects from a chosen source address and checks the cert name."""

    def __init__(self, address: str, source: str, context: ssl.SSLContext) -> None:
        self._address = address
        self._source = source
        super().__init__(address, 993, ssl_context=context, timeout=30)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = socket.create_connection(
            (self._address, 993), timeout, source_address=(self._source, 0)
        )
        return self.ssl_context.wrap_socket(sock, server_hostname=HOSTNAME)


@contextlib.contextmanager
def running(stack: Stack) -> Iterator[Stack]:
    stack.start()
    try:
        yield stack
    finally:
        if stack.process is not None and stack.process.poll() is None:
            stack.stop()
