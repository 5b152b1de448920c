"""What the mail-path benchmarks share: an SMTP client, the bare Postfix → Rspamd →
Dovecot chain they compare Roost with, and counting of deliveries, CPU and memory.

The bare chain is the Debian packages Roost runs, configured here with minimal static
configs in a temporary directory on its own loopback address; ``Baseline`` gains a
submission listener (implicit TLS on 465, SASL through Dovecot's auth) when asked for one.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import resource
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.local_dns import private_resolv_conf, start_dns
from tests.e2e.stack import (
    DOMAIN,
    OUTSIDE,
    Stack,
    e2e_address,
    make_base,
    shared_hyperscan_cache,
    wait_for_port,
)

SENDER = "bench@sender.test"  # sender.test has an MX in the test DNS
BODY_LINE = "The quick brown fox jumps over the lazy dog, again and again and again.\r\n"


# -- the client ------------------------------------------------------------------------------
@dataclass
class Target:
    """Where and how the client sends: port 25 from an outside address by default; for
    submission, implicit TLS (``tls``) and AUTH PLAIN as ``login`` (user, password)."""

    host: str
    port: int = 25
    sender: str = SENDER
    tls: ssl.SSLContext | None = None
    login: tuple[str, str] | None = None
    #: body lines of about 80 bytes: 24 make a message of about 2 kB, 50 about 4 kB
    lines: int = 24


def message(number: int, recipient: str, sender: str = SENDER, lines: int = 24) -> bytes:
    body = "".join(f"{number:06d} {BODY_LINE}" for _ in range(lines))
    head = (
        f"From: Bench Sender <{sender}>\r\n"
        f"To: <{recipient}>\r\n"
        f"Subject: bench message {number}\r\n"
        f"Date: Sat, 05 Dec 2026 07:00:00 +0000\r\n"
        f"Message-ID: <bench-{number}-{os.getpid()}@sender.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    return (head + body).encode()


class SMTPError(Exception):
    pass


async def reply(reader: asyncio.StreamReader) -> tuple[int, str]:
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise SMTPError("connection closed")
        lines.append(line.decode(errors="replace").rstrip())
        if line[3:4] != b"-":
            return int(line[:3]), "\n".join(lines)


async def command(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes, want: int
) -> None:
    writer.write(line + b"\r\n")
    code, text = await reply(reader)
    if code != want:
        raise SMTPError(f"{line.decode()!r}: {text}")


async def session(target: Target, numbered: list[tuple[int, str]]) -> None:
    reader, writer = await asyncio.open_connection(
        target.host,
        target.port,
        local_addr=(OUTSIDE, 0),
        ssl=target.tls,
        server_hostname="" if target.tls else None,
    )
    try:
        code, text = await reply(reader)
        if code != 220:
            raise SMTPError(text)
        await command(reader, writer, b"EHLO client.outside.test", 250)
        if target.login is not None:
            user, password = target.login
            token = base64.b64encode(f"\0{user}\0{password}".encode())
            await command(reader, writer, b"AUTH PLAIN " + token, 235)
        for number, recipient in numbered:
            await command(reader, writer, f"MAIL FROM:<{target.sender}>".encode(), 250)
            await command(reader, writer, f"RCPT TO:<{recipient}>".encode(), 250)
            await command(reader, writer, b"DATA", 354)
            writer.write(message(number, recipient, target.sender, target.lines) + b"\r\n.\r\n")
            code, text = await reply(reader)
            if code != 250:
                raise SMTPError(f"message {number}: {text}")
        writer.write(b"QUIT\r\n")
        await writer.drain()
    finally:
        writer.close()


async def send_all(
    target: Target,
    recipients: list[str],
    count: int,
    concurrency: int,
    per_session: int,
    start: int,
) -> None:
    numbered = [(start + n, recipients[n % len(recipients)]) for n in range(count)]
    batches = [numbered[i : i + per_session] for i in range(0, count, per_session)]
    queue: asyncio.Queue[list[tuple[int, str]]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)

    async def worker() -> None:
        while not queue.empty():
            await session(target, queue.get_nowait())

    await asyncio.gather(*(worker() for _ in range(concurrency)))


# -- counting delivered mail -------------------------------------------------------------
def delivered(folders: list[Path]) -> int:
    total = 0
    for folder in folders:
        with contextlib.suppress(FileNotFoundError):
            total += len(os.listdir(folder))
    return total


# -- memory ------------------------------------------------------------------------------
def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children[int(fields[1])].append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def process_memory(pid: int) -> tuple[str, int, int] | None:
    """(name, RSS kB, PSS kB) of one process, None once it is gone or a kernel thread."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            argv = cmdline.read().split(b"\0")
        rss = pss = 0
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        return None
    if not argv or not argv[0]:
        return None
    return name_of(pid, argv), rss, pss


def name_of(pid: int, argv: list[bytes]) -> str:
    words = [a.decode(errors="replace") for a in argv if a]
    program = os.path.basename(words[0])
    if program.startswith("python"):
        if "gate" in words:
            return "roost gate"
        if "roost.web" in words:
            return "roost web"
        if "up" in words:
            return "roost runner"
        return "python " + " ".join(words[1:3])
    # Redis names itself "redis-server <address>" in one word: take the program's name.
    if os.path.basename(words[0].split()[0]).startswith("redis-server"):
        return "redis (Rspamd's)" if "rspamd-redis" in " ".join(words) else "redis (gate, web)"
    if words[0].startswith("rspamd:"):
        # "rspamd: rspamd_proxy process (socket ...)", "rspamd: main process; 30 msg/sec"
        return words[0].split("(")[0].split(";")[0].strip()
    try:
        with open(f"/proc/{pid}/comm") as comm:
            command = comm.read().strip()
        executable = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return program
    for daemon in ("dovecot", "postfix"):
        if f"/{daemon}" in executable:
            return f"{daemon} {command}"
    return command


def cpu_seconds(roots: list[int]) -> dict[str, float]:
    """CPU time (user + system, with reaped children's) of every process under ``roots``."""
    total: dict[str, float] = defaultdict(float)
    for root in roots:
        for pid in descendants(root):
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                    argv = cmdline.read().split(b"\0")
            except OSError:
                continue
            if argv and argv[0]:
                total[name_of(pid, argv)] += sum(int(f) for f in fields[11:15]) / CLOCK_TICKS
    return total


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

#: The row of ``print_cpu`` for CPU time that only the exact totals saw (processes that
#: started and ended between two samples, the last moments of those that ended).
UNSEEN = "(ended between samples)"


class CpuSampler:
    """Each process's own CPU time (user + system, children not included) over a run.

    A process that ends is folded into its parent's figures (Postfix's master, say), so
    before/after totals cannot tell smtpd from cleanup. This polls every process under
    ``roots`` in a thread and keeps each one's last sample, keyed by pid and start time.
    """

    def __init__(self, roots: Callable[[], list[int]], interval: float = 0.2) -> None:
        self.roots = roots
        self.interval = interval
        #: (pid, start time) -> [name, CPU ticks at the first sample, at the last]
        self.seen: dict[tuple[int, str], list[Any]] = {}
        self._first = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for root in self.roots():
            for pid in descendants(root):
                try:
                    with open(f"/proc/{pid}/stat") as stat:
                        fields = stat.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                ticks = int(fields[11]) + int(fields[12])
                key = (pid, fields[19])
                if key in self.seen:
                    self.seen[key][2] = ticks
                    continue
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                        argv = cmdline.read().split(b"\0")
                except OSError:
                    continue
                if argv and argv[0]:
                    # A process already running at the start counts from then; a new one
                    # from its beginning.
                    self.seen[key] = [name_of(pid, argv), ticks if self._first else 0, ticks]
        self._first = False

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> CpuSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def by_name(self) -> dict[str, float]:
        total: dict[str, float] = defaultdict(float)
        for name, first, last in self.seen.values():
            total[name] += (last - first) / CLOCK_TICKS
        return total


@dataclass
class Memory:
    rss: int = 0
    pss: int = 0
    by_name: dict[str, list[int]] = field(default_factory=dict)  # name -> [count, rss, pss]


def stack_memory(root_pid: int) -> Memory:
    memory = Memory()
    for pid in descendants(root_pid):
        found = process_memory(pid)
        if found is None:
            continue
        name, rss, pss = found
        memory.rss += rss
        memory.pss += pss
        row = memory.by_name.setdefault(name, [0, 0, 0])
        row[0] += 1
        row[1] += rss
        row[2] += pss
    return memory


class PeakSampler:
    """Samples a stack's memory every half second in a thread; keeps the highest PSS."""

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self.peak = Memory()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            memory = stack_memory(self.root_pid)
            if memory.pss > self.peak.pss:
                self.peak = memory
            self._stop.wait(0.5)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- the chains --------------------------------------------------------------------------
@dataclass
class Chain:
    name: str
    target: Target
    recipients: list[str]
    folders: list[Path]
    roots: Callable[[], list[int]]
    memory_pid: Callable[[], int] | None = None
    sent: int = 0
    #: CPU seconds per process name over the timed runs, and the messages they carried
    cpu: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    cpu_messages: int = 0
    #: CPU seconds this process (the client) spent in the timed runs
    client_cpu: float = 0.0

    def timed(self, count: int, concurrency: int, per_session: int, timeout: float) -> float:
        """``run``, adding the CPU time the chain's processes spent to ``cpu``: by process
        as sampled, and the rest of the exact total (from reaped children's times too)."""
        before = cpu_seconds(self.roots())
        client = own_cpu_seconds()
        with CpuSampler(self.roots) as sampler:
            rate = self.run(count, concurrency, per_session, timeout)
        self.client_cpu += own_cpu_seconds() - client
        time.sleep(1)  # let Postfix's master reap the processes that just ended
        exact = sum(cpu_seconds(self.roots()).values()) - sum(before.values())
        sampled = sampler.by_name()
        for name, seconds in sampled.items():
            self.cpu[name] += seconds
        self.cpu[UNSEEN] += exact - sum(sampled.values())
        self.cpu_messages += count
        return rate

    def run(self, count: int, concurrency: int, per_session: int, timeout: float) -> float:
        """Send ``count`` messages; messages per second until the last is in a Maildir."""
        before = delivered(self.folders)
        begin = time.monotonic()
        asyncio.run(
            send_all(self.target, self.recipients, count, concurrency, per_session, self.sent)
        )
        self.sent += count
        deadline = begin + timeout
        while delivered(self.folders) < before + count:
            if time.monotonic() > deadline:
                got = delivered(self.folders) - before
                raise TimeoutError(f"{self.name}: only {got} of {count} delivered")
            time.sleep(0.02)
        return count / (time.monotonic() - begin)

    def check_exactly_once(self) -> None:
        """Every message sent is in a Maildir, once: none lost, none twice."""
        found = delivered(self.folders)
        if found != self.sent:
            raise AssertionError(f"{self.name}: {self.sent} messages sent, {found} delivered")


def can_run() -> bool:
    """Root, and the tests' DNS in a mount namespace of this process's own; else say why."""
    if os.geteuid() != 0:
        print("needs root: it starts Postfix, Dovecot, Rspamd and nginx", file=sys.stderr)
        return False
    return private_resolv_conf()


@contextlib.contextmanager
def world() -> Iterator[list[Callable[[], object]]]:
    """The tests' DNS for the benchmark's daemons; yields a list of stop functions, all
    called at the end (SIGTERM too), so that no daemon started here outlives the run."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    dns = start_dns()
    started: list[Callable[[], object]] = []
    try:
        yield started
    finally:
        for stop in reversed(started):
            try:
                stop()
            except Exception as error:  # report it and go on stopping the rest
                print(f"stopping: {error}", file=sys.stderr)
        for server in dns:
            server.stop()


def own_cpu_seconds() -> float:
    """User plus system CPU time of this process, every thread (the benchmark's client)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def password(user: int) -> str:
    """The password of bench user ``user`` in both chains."""
    return f"bench-password-{user}"


def roost_chain(name: str, host: int, users: int, settings: dict[str, str]) -> tuple[Stack, Chain]:
    stack = Stack(name, e2e_address(host), settings=settings)
    stack.start(timeout=180)
    recipients = [stack.add_user(f"bench{n}", password(n)) for n in range(users)]
    folders = []
    for address in recipients:
        home = stack.root / "mail" / address
        folders += [home / "new", home / ".Junk" / "new"]
    assert stack.process is not None
    pid = stack.process.pid
    chain = Chain(
        name, Target(stack.address), recipients, folders, lambda: [pid], memory_pid=lambda: pid
    )
    return stack, chain


POSTFIX_MAIN = """\
compatibility_level = 3.6
queue_directory = {d}/postfix-queue
data_directory = {d}/postfix-data
maillog_file = {d}/postfix.log
maillog_file_prefixes = {d}
myhostname = mx.baseline.test
mydestination =
alias_maps =
alias_database =
inet_interfaces = loopback-only
proxy_interfaces = {address}
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = {domain}
virtual_mailbox_maps = texthash:{d}/postfix/vmailbox
virtual_transport = lmtp:unix:{d}/lmtp/lmtp
smtpd_milters = unix:{d}/rspamd-run/milter.sock
milter_protocol = 6
milter_default_action = tempfail
milter_mail_macros = i {{mail_addr}} {{client_addr}} {{client_name}} {{auth_type}} {{auth_authen}}
"""

POSTFIX_MASTER = """\
{address}:25 inet n - n - - smtpd
pickup     unix  n - n 60 1 pickup
cleanup    unix  n - n - 0 cleanup
qmgr       unix  n - n 300 1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
rewrite    unix  - - n - - trivial-rewrite
bounce     unix  - - n - 0 bounce
defer      unix  - - n - 0 bounce
trace      unix  - - n - 0 bounce
verify     unix  - - n - 1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n - - proxymap
proxywrite unix  - - n - 1 proxymap
smtp       unix  - - n - - smtp
relay      unix  - - n - - smtp
showq      unix  n - n - - showq
error      unix  - - n - - error
retry      unix  - - n - - error
discard    unix  - - n - - discard
lmtp       unix  - - n - - lmtp
anvil      unix  - - n - 1 anvil
scache     unix  - - n - 1 scache
postlog    unix-dgram n - n - 1 postlogd
"""

DOVECOT_CONF = """\
base_dir = {d}/dovecot-run
state_dir = {d}/dovecot-state
protocols = lmtp
log_path = {d}/dovecot.log
ssl = no
passdb {{
  driver = passwd-file
  args = {d}/dovecot-passwd
}}
userdb {{
  driver = static
  args = uid=mail gid=mail home={d}/mail/%u allow_all_users=yes
}}
mail_location = maildir:{d}/mail/%u
first_valid_uid = 1
service lmtp {{
  unix_listener {d}/lmtp/lmtp {{
    mode = 0666
  }}
}}
# SASL for the submission listener (smtpd_sasl_type = dovecot).
service auth {{
  unix_listener auth-client {{
    mode = 0666
  }}
}}
"""

#: Added to main.cf with a submission listener; the TLS lines come from Roost's main.cf.
POSTFIX_SUBMISSION_MAIN = """smtpd_sasl_type = dovecot
smtpd_sasl_path = {d}/dovecot-run/auth-client
smtpd_sender_login_maps = texthash:{d}/postfix/senderlogin
"""

#: Roost's 465 listener (roost/services/postfix), its restrictions spelled out with static maps.
POSTFIX_SUBMISSION_MASTER = """{address}:465 inet n - n - - smtpd
  -o syslog_name=postfix/submissions
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_sender_restrictions=reject_non_fqdn_sender,reject_unlisted_sender,\
reject_authenticated_sender_login_mismatch
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=reject_non_fqdn_recipient
"""

RSPAMD_CONF = """\
.include "$CONFDIR/common.conf"
options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    hs_cache_dir = "{hs_cache}";
    local_addrs = ["127.0.0.1/32"];
}}
logging {{
    type = "file";
    filename = "{d}/rspamd.log";
    level = "warning";
}}
worker "rspamd_proxy" {{
    bind_socket = "{d}/rspamd-run/milter.sock mode=0666";
    milter = yes;
    upstream "local" {{
        default = yes;
        self_scan = yes;
    }}
    timeout = 120s;
    count = 2;
}}
"""


class Baseline:
    """Postfix → Rspamd milter → Dovecot LMTP → Maildir, minimal configs in a temp dir."""

    def __init__(self, address: str, users: int, submission_tls: str | None = None) -> None:
        """``submission_tls``: main.cf lines (``smtpd_tls_*``) that turn on a 465 listener
        with implicit TLS and SASL through Dovecot; None: port 25 only."""
        self.address = address
        self.submission_tls = submission_tls
        self.dir = Path(tempfile.mkdtemp(prefix="roost-bench-baseline-", dir=make_base()))
        self.dir.chmod(0o755)
        self.recipients = [f"bench{n}@{DOMAIN}" for n in range(users)]
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> Chain:
        d = self.dir
        for sub in (
            "postfix",
            "postfix-queue",
            "postfix-data",
            "lmtp",
            "mail",
            "rspamd-run",
            "rspamd-db",
        ):
            (d / sub).mkdir(mode=0o755)
        shutil.chown(d / "postfix-data", "postfix", "postfix")
        shutil.chown(d / "mail", "mail", "mail")
        for sub in ("rspamd-run", "rspamd-db"):
            shutil.chown(d / sub, "_rspamd", "_rspamd")
        values = {"d": d, "address": self.address, "domain": DOMAIN}
        main_cf, master_cf = POSTFIX_MAIN.format(**values), POSTFIX_MASTER.format(**values)
        if self.submission_tls is not None:
            main_cf += POSTFIX_SUBMISSION_MAIN.format(**values) + self.submission_tls
            master_cf += POSTFIX_SUBMISSION_MASTER.format(**values)
        (d / "postfix/main.cf").write_text(main_cf)
        (d / "postfix/master.cf").write_text(master_cf)
        (d / "postfix/vmailbox").write_text("".join(f"{r} OK\n" for r in self.recipients))
        (d / "postfix/senderlogin").write_text("".join(f"{r} {r}\n" for r in self.recipients))
        # The passwords roost_chain gives the same users, in the clear: the cheapest check.
        (d / "dovecot-passwd").write_text(
            "".join(f"{r}:{{PLAIN}}{password(n)}\n" for n, r in enumerate(self.recipients))
        )
        (d / "dovecot.conf").write_text(DOVECOT_CONF.format(**values))
        hs_cache = make_base() / "rspamd-hyperscan"
        shared_hyperscan_cache()  # creates it
        (d / "rspamd.conf").write_text(RSPAMD_CONF.format(hs_cache=hs_cache, **values))
        # The headers Roost's Rspamd adds too (so the baseline's scan shows in each message).
        (d / "rspamd-local/local.d").mkdir(parents=True)
        (d / "rspamd-local/local.d/milter_headers.conf").write_text(
            'use = ["x-spamd-bar", "x-spam-level", "authentication-results"];\n'
            "skip_local = false;\n"
        )
        log = (d / "daemons.log").open("ab")
        self.processes.append(
            subprocess.Popen(
                [
                    "rspamd",
                    "--no-fork",
                    "--user=_rspamd",
                    "--group=_rspamd",
                    f"--config={d}/rspamd.conf",
                    f"--var=LOCAL_CONFDIR={d}/rspamd-local",
                    f"--var=DBDIR={d}/rspamd-db",
                    f"--var=RUNDIR={d}/rspamd-run",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        self.processes.append(
            subprocess.Popen(
                ["dovecot", "-F", "-c", f"{d}/dovecot.conf"], stdout=log, stderr=subprocess.STDOUT
            )
        )
        log.close()  # the daemons hold their own copies
        started = subprocess.run(
            ["postfix", "-c", f"{d}/postfix", "start"], capture_output=True, text=True
        )
        if started.returncode != 0:
            said = (d / "postfix.log").read_text() if (d / "postfix.log").exists() else ""
            raise RuntimeError(f"postfix start: {started.stdout}{started.stderr}{said}")
        wait_for_file(d / "rspamd-run/milter.sock", 120)
        wait_for_file(d / "lmtp/lmtp", 30)
        wait_for_port(self.address, 25)
        if self.submission_tls is not None:
            wait_for_port(self.address, 465)
        folders = [d / "mail" / r / "new" for r in self.recipients]
        return Chain("baseline", Target(self.address), self.recipients, folders, self.roots)

    def roots(self) -> list[int]:
        master = self.dir / "postfix-queue/pid/master.pid"
        pids = [process.pid for process in self.processes]
        return [*pids, int(master.read_text().split()[0])] if master.exists() else pids

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", f"{self.dir}/postfix", "stop"], capture_output=True)
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_for_file(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.2)


# -- the report --------------------------------------------------------------------------
def spread(rates: list[float]) -> str:
    return (
        f"median {statistics.median(rates):6.1f}/s  (min {min(rates):.1f}, max {max(rates):.1f};"
        f" rounds: {', '.join(f'{r:.1f}' for r in rates)})"
    )


def print_memory(title: str, memory: Memory, detail: bool) -> None:
    print(
        f"  {title:<22} RSS sum {memory.rss / 1024:7.1f} MiB   PSS sum {memory.pss / 1024:7.1f} MiB"
    )
    if detail:
        for name, (count, rss, pss) in sorted(memory.by_name.items(), key=lambda i: -i[1][2]):
            print(
                f"      {name:<34} x{count:<3} RSS {rss / 1024:7.1f} MiB  PSS {pss / 1024:7.1f} MiB"
            )


def print_cpu(bare: Chain, roost: Chain) -> None:
    def per_message(chain: Chain) -> dict[str, float]:
        return {k: 1000 * v / chain.cpu_messages for k, v in chain.cpu.items()}

    base, ours = per_message(bare), per_message(roost)
    names = sorted(set(base) | set(ours), key=lambda n: -max(ours.get(n, 0), base.get(n, 0)))
    print(f"  {'process':<28} {'baseline':>9} {'Roost':>9}")
    print("  (each process's own time, sampled every 0.2 s; the row", UNSEEN)
    print("  is what the exact totals saw beyond the samples)")
    for name in names:
        if max(base.get(name, 0), ours.get(name, 0)) >= 0.01:
            print(f"  {name:<28} {base.get(name, 0):9.2f} {ours.get(name, 0):9.2f}")
    print(f"  {'total':<28} {sum(base.values()):9.2f} {sum(ours.values()):9.2f}")
    # On a shared machine the rates of single rounds swing with the neighbours' load; the
    # CPU each chain spends per message is steadier, and is what a fully loaded host
    # would see as the ratio of the rates.
    print(f"  baseline / Roost CPU per message: {sum(base.values()) / sum(ours.values()):.2f}")


def measure_memory(chain: Chain, args: argparse.Namespace, label: str) -> None:
    assert chain.memory_pid is not None
    pid = chain.memory_pid()
    time.sleep(args.settle)
    idle = stack_memory(pid)
    with PeakSampler(pid) as sampler:
        chain.run(args.warmup, args.concurrency, args.per_session, 90)
        rate = chain.run(args.messages, args.concurrency, args.per_session, args.timeout)
    print(f"\n{label}: {rate:.1f} messages/s during the load (idle: started, settled)")
    print_memory("idle", idle, args.memory)
    print_memory("peak under load", sampler.peak, args.memory)
