"""``roost up`` around the supervisor: lock, bootstrap, render errors, leftovers, summary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from roost import runner
from roost.layout import GATE_HTTP_PORT, Layout
from roost.runner import procs
from roost.runner.leftovers import stop_leftovers
from roost.runner.lock import AlreadyRunning, RunLock
from roost.runner.stack import child_spec, enabled_services, in_start_order
from roost.runner.summary import listening, summary_lines
from roost.runner.supervisor import Policy
from roost.services.base import Readiness, Service, ServiceConfigError
from roost.services.gate import GateService
from roost.services.redis import RedisService
from roost.settings import SECRET_SETTINGS, Settings, load_settings

FAST = Policy(ready_timeout=5, stop_grace=2, probe_interval=0.05, adopt_orphans=False)
# Prints, then listens on the socket named by argv[2]: ready means it has printed.
SLEEPER = (
    "import socket, sys, time; print('fake ' + sys.argv[1], flush=True); "
    "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[2]); s.listen(); time.sleep(60)"
)


def make_settings(base: Path, **extra: str) -> Settings:
    environ = {
        "ROOT": str(base / "root"),
        "DOMAIN": "example.test",
        "HOSTNAMES": "mail.example.test",
        "TLS_FLAVOR": "notls",
        "BIND_ADDRESS4": "127.0.7.1",
        **extra,
    }
    return load_settings(environ=environ)


class Fake(Service):
    """A service whose daemon is a sleeping Python program."""

    def __init__(
        self, layout: Layout, name: str, after: tuple[str, ...] = (), broken: str | None = None
    ) -> None:
        super().__init__(layout)
        self.name = name
        self.after = after
        self.broken = broken

    def render(self) -> None:
        if self.broken:
            raise ServiceConfigError(self.broken)
        (self.layout.etc / f"{self.name}.rendered").write_text("ok\n")

    @property
    def socket(self) -> Path:
        return self.layout.run / f"{self.name}.sock"

    def command(self) -> list[str]:
        return [sys.executable, "-c", SLEEPER, self.name, str(self.socket)]

    def readiness(self) -> Readiness:
        return Readiness(unix_sockets=(self.socket,))


class StopWhenRunning(threading.Thread):
    """SIGTERM this process (the running `up`) once every service in ``names`` runs.

    After 20 s it sends SIGTERM anyway, so that `up` returns, and ``ran`` stays False:
    the test then fails instead of hanging or passing without the services ever running.
    """

    def __init__(self, status: Path, names: set[str]) -> None:
        super().__init__(daemon=True)
        self.status = status
        self.names = names
        self.ran = False

    def run(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                services = json.loads(self.status.read_text())["services"]
            except (OSError, ValueError, KeyError):
                services = {}
            if all(services.get(n, {}).get("state") == "running" for n in self.names):
                self.ran = True
                break
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)


def stop_when_running(status: Path, names: set[str]) -> StopWhenRunning:
    assert names
    watcher = StopWhenRunning(status, names)
    watcher.start()
    return watcher


def test_up_prepares_root_renders_runs_and_stops_on_sigterm(
    base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(base)
    layout = Layout(settings)
    services = [Fake(layout, "b", after=("a",)), Fake(layout, "a")]
    watcher = stop_when_running(layout.runner_status, {"a", "b"})
    assert runner.up(settings, services=services, policy=FAST) == 0
    watcher.join()
    assert watcher.ran
    out = capsys.readouterr().out
    assert (layout.etc / "a.rendered").exists() and (layout.etc / "b.rendered").exists()
    assert "roost: created ROOT" in out
    assert "a | fake a" in out and "b | fake b" in out
    assert "roost: ready on 127.0.7.1: smtp 25" in out
    assert out.index("roost: stopping b") < out.index("roost: stopping a")
    states = json.loads(layout.runner_status.read_text())["services"]
    assert {name: entry["state"] for name, entry in states.items()} == {
        "a": "stopped",
        "b": "stopped",
    }
    # A clean exit empties the lock file: the next start finds no stale runner.
    assert (layout.run / "roost.pid").read_text() == ""


def test_a_configuration_error_stops_before_anything_starts(
    base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(base)
    layout = Layout(settings)
    services = [
        Fake(layout, "a"),
        Fake(layout, "b", broken="overrides/b/b.conf, line 3: unknown setting"),
    ]
    assert runner.up(settings, services=services, policy=FAST) == runner.EXIT_CONFIG
    captured = capsys.readouterr()
    assert captured.err == "roost: error: overrides/b/b.conf, line 3: unknown setting\n"
    assert "fake a" not in captured.out
    assert not layout.runner_status.exists()


def test_a_second_up_for_the_same_root_is_refused(
    base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(base)
    layout = Layout(settings)
    lock = RunLock(layout.run / "roost.pid")
    lock.acquire()
    try:
        assert runner.up(settings, services=[Fake(layout, "a")], policy=FAST) == 1
    finally:
        lock.release()
    err = capsys.readouterr().err
    assert "another `roost up`" in err
    assert f"(pid {os.getpid()})" in err


def test_the_lock_is_held_by_a_running_process_not_by_the_file() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "roost.pid"
        path.write_text("999999\n")  # left by a runner that was killed
        first = RunLock(path)
        assert first.acquire() == 999999
        with pytest.raises(AlreadyRunning) as refused:
            RunLock(path).acquire()
        assert refused.value.pid == os.getpid()
        first.release()
        assert RunLock(path).acquire() is None


def test_a_stale_lock_is_taken_over_and_reported(
    base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(base)
    layout = Layout(settings)
    layout.run.mkdir(parents=True)
    (layout.run / "roost.pid").write_text("424242\n")
    watcher = stop_when_running(layout.runner_status, {"a"})
    assert runner.up(settings, services=[Fake(layout, "a")], policy=FAST) == 0
    watcher.join()
    assert watcher.ran
    assert "the previous `roost up` (pid 424242) did not stop cleanly" in capsys.readouterr().out


def test_leftovers_of_a_killed_runner_are_stopped_by_recorded_group_and_start_time() -> None:
    survivor = subprocess.Popen(["sleep", "60"], start_new_session=True)
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        ticks = procs.start_ticks(survivor.pid)
        data = {
            "services": {
                "postfix": {"groups": [[survivor.pid, ticks]]},
                # Same pid recorded with another start time: a different process now.
                "dovecot": {"groups": [[stranger.pid, 1]]},
            }
        }
        messages = stop_leftovers(data, grace=2)
        assert messages == ["stopped postfix left running by the previous `roost up`"]
        assert survivor.wait(timeout=5) == -signal.SIGTERM
        assert stranger.poll() is None
    finally:
        for process in (survivor, stranger):
            if process.poll() is None:
                process.kill()
                process.wait()


def test_services_start_after_those_they_name() -> None:
    layout = Layout(Settings())
    nginx = Fake(layout, "nginx", after=("postfix",))
    postfix = Fake(layout, "postfix", after=("gate", "dovecot", "rspamd"))
    dovecot = Fake(layout, "dovecot", after=("gate",))
    gate = Fake(layout, "gate", after=("redis",))
    redis = Fake(layout, "redis")
    ordered = in_start_order([nginx, postfix, dovecot, gate, redis])
    assert [s.name for s in ordered] == ["redis", "gate", "dovecot", "postfix", "nginx"]
    with pytest.raises(ServiceConfigError, match="cycle: a, b"):
        in_start_order([Fake(layout, "a", after=("b",)), Fake(layout, "b", after=("a",))])


class Core(Fake):
    """Always on; waits for the optional service when the stack has it."""

    built = 0

    def __init__(self, layout: Layout) -> None:
        super().__init__(layout, "core", after=("optional",))
        Core.built += 1


class Optional(Fake):
    """On only under TLS (any setting would do): the shape of clamd or Radicale."""

    built = 0

    def __init__(self, layout: Layout) -> None:
        super().__init__(layout, "optional")
        Optional.built += 1

    @classmethod
    def enabled(cls, settings: Settings) -> bool:
        return settings.tls


def test_a_disabled_service_is_not_built_started_or_waited_for(
    base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Core.built = Optional.built = 0
    settings = make_settings(base)  # notls
    layout = Layout(settings)
    stack = enabled_services(layout, registry=(Optional, Core))
    assert [service.name for service in stack] == ["core"]
    assert (Core.built, Optional.built) == (1, 0)

    watcher = stop_when_running(layout.runner_status, {"core"})
    assert runner.up(settings, services=stack, policy=FAST) == 0
    watcher.join()
    assert watcher.ran
    out = capsys.readouterr().out
    assert "core | fake core" in out
    assert "optional" not in out
    states = json.loads(layout.runner_status.read_text())["services"]
    assert list(states) == ["core"]
    assert not (layout.etc / "optional.rendered").exists()
    assert not (layout.run / "optional.sock").exists()

    # Enabled, it is built and starts first, because core waits for it.
    enabled = Layout(make_settings(base, TLS_FLAVOR="cert"))
    order = [s.name for s in enabled_services(enabled, registry=(Core, Optional))]
    assert order == ["optional", "core"]


def test_the_registry_makes_the_ten_daemons_in_start_order(base: Path) -> None:
    stack = enabled_services(Layout(make_settings(base)))
    assert [s.name for s in stack] == [
        "redis",
        "gate",
        "rspamd-redis",
        "dovecot",
        "unbound",
        "rspamd",
        "mtasts",
        "postfix",
        "web",
        "nginx",
    ]
    # No web pages and no API: no web daemon.
    stack = enabled_services(Layout(make_settings(base, WEB_ADMIN="", API="false")))
    assert "web" not in [s.name for s in stack]
    # The host's resolver: no unbound.
    stack = enabled_services(Layout(make_settings(base, DNS_RESOLVER="system")))
    assert "unbound" not in [s.name for s in stack]


def test_an_unusable_certificate_stops_up_before_anything_is_rendered(
    base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(base, TLS_FLAVOR="cert")
    layout = Layout(settings)
    layout.certs.mkdir(parents=True)
    layout.cert_file.write_text("not a certificate\n")
    layout.key_file.write_text("not a key\n")
    code = runner.up(settings, services=[Fake(layout, "a")], policy=FAST)
    assert code == runner.EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.startswith(f"roost: error: {layout.cert_file}: not a PEM certificate")
    assert not (layout.etc / "a.rendered").exists()
    assert not layout.runner_status.exists()


def test_the_gate_runs_this_roost_with_the_same_settings(base: Path) -> None:
    settings = make_settings(base, MESSAGE_SIZE_LIMIT="1234")
    layout = Layout(settings)
    gate = GateService(layout)
    assert gate.name == "gate"
    assert gate.command() == [sys.executable, "-m", "roost", "gate"]
    assert gate.readiness() == Readiness(
        unix_sockets=(layout.gate_socketmap, layout.gate_http_socket),
        tcp=(("127.0.7.1", GATE_HTTP_PORT),),
    )
    spec = child_spec(gate, environ={"PATH": "/usr/bin", "MESSAGE_SIZE_LIMIT": "1"})
    assert spec.env is not None
    assert spec.env["PATH"] == "/usr/bin"
    assert spec.env["MESSAGE_SIZE_LIMIT"] == "1234"
    assert spec.env["ROOT"] == str(layout.root)
    assert load_settings(environ=spec.env) == settings
    source = Path(spec.env["PYTHONPATH"].split(os.pathsep)[0])
    assert (source / "roost" / "runner" / "__init__.py").exists()


def test_secrets_in_the_runners_environment_reach_only_roosts_own_processes(
    base: Path,
) -> None:
    settings = make_settings(base, DB_PW="from-the-file")
    layout = Layout(settings)
    environ = {"PATH": "/usr/bin", "DB_PW": "given-to-roost-up", "RELAYPASSWORD": "x"}
    assert {"DB_PW", "RELAYPASSWORD", "SECRET_KEY", "ROUNDCUBE_DB_PW"} <= SECRET_SETTINGS
    redis = child_spec(RedisService(layout), environ=environ)
    assert redis.env == {"PATH": "/usr/bin", **RedisService(layout).environment()}
    gate = child_spec(GateService(layout), environ=environ)
    assert gate.env is not None and gate.env["DB_PW"] == "from-the-file"


def test_summary_names_ports_host_and_admin(base: Path) -> None:
    settings = make_settings(
        base,
        TLS_FLAVOR="cert",
        INITIAL_ADMIN_ACCOUNT="admin",
        INITIAL_ADMIN_DOMAIN="example.test",
        BIND_ADDRESS6="::1",
    )
    assert listening(settings) == (
        "smtp 25, submissions 465, imaps 993, pop3s 995, sieve 4190, http 80, https 443"
    )
    lines = summary_lines(settings)
    assert lines[0].startswith("ready on 127.0.7.1 and ::1: smtp 25")
    assert "server mail.example.test" in lines[1]
    assert "IMAP 993" in lines[1] and "SMTP 465" in lines[1]
    assert lines[2] == "administrator account: admin@example.test"
    assert lines[3] == (
        "web administration: https://mail.example.test/admin (sign in with the full address)"
    )


def test_summary_without_tls_lists_only_plain_ports(base: Path) -> None:
    settings = make_settings(base, PORTS="25,80,110,143,443,465,587,993,995,4190")
    assert listening(settings) == "smtp 25, submission 587, imap 143, pop3 110, sieve 4190, http 80"
    assert any("TLS_FLAVOR=notls" in line for line in summary_lines(settings))
    assert any("no administrator account" in line for line in summary_lines(settings))
    assert "web administration: http://mail.example.test/admin" in "\n".join(
        summary_lines(settings)
    )
    assert not any(
        "web administration" in line for line in summary_lines(make_settings(base, WEB_ADMIN=""))
    )
