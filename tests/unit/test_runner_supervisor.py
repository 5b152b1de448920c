"""The supervisor with small fake daemons: order, readiness, back-off, stopping, leftovers.

The fake daemons are ``python -c`` programs that listen on a Unix socket (their readiness),
crash, ignore SIGTERM or leave a process behind, as real daemons do.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from roost.runner import procs
from roost.runner.supervisor import ChildSpec, Policy, Supervisor
from roost.services.base import Readiness

FAST = Policy(
    ready_timeout=5,
    stop_grace=2,
    backoff_first=0.1,
    backoff_cap=0.4,
    stable_after=60,
    probe_interval=0.05,
    adopt_orphans=False,
)

# Listens on argv[1] after argv[2] seconds, logs start/stop lines to argv[3].
LISTENER = textwrap.dedent(
    """
    import os, signal, socket, sys, time
    path, delay, log, name = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
    def note(text):
        with open(log, "a") as handle:
            handle.write(text + "\\n")
    def stop(signum, frame):
        note("stop " + name)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    note("start " + name + " " + " ".join(sorted(os.listdir(os.path.dirname(path)))))
    print("hello from " + name, flush=True)
    time.sleep(delay)
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    while True:
        time.sleep(1)
    """
)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "sockets").mkdir()
    return tmp_path


def listener(workdir: Path, name: str, delay: float = 0.0) -> ChildSpec:
    sock = workdir / "sockets" / f"{name}.sock"
    return ChildSpec(
        name=name,
        argv=(sys.executable, "-c", LISTENER, str(sock), str(delay), str(workdir / "log"), name),
        readiness=Readiness(unix_sockets=(sock,)),
    )


def python(name: str, code: str, readiness: Readiness | None = None) -> ChildSpec:
    return ChildSpec(
        name=name,
        argv=(sys.executable, "-c", textwrap.dedent(code)),
        readiness=readiness or Readiness(),
    )


class Run:
    """A supervisor run in this process, with its output collected."""

    def __init__(self, specs: list[ChildSpec], policy: Policy = FAST, status: Path | None = None):
        self.out: list[str] = []
        self.err: list[str] = []
        self.ready_at: float | None = None
        self.supervisor = Supervisor(
            specs,
            policy=policy,
            status_file=status,
            on_ready=self._ready,
            out=self.out.append,
            err=self.err.append,
        )

    def _ready(self) -> None:
        self.ready_at = time.monotonic()

    def run(
        self,
        stop_after: float | None = None,
        stop_when: str | None = None,
        stop_when_ready: bool = False,
    ) -> int:
        async def main() -> int:
            task = asyncio.create_task(self.supervisor.run())
            deadline = time.monotonic() + (stop_after or 20)
            while not task.done() and time.monotonic() < deadline:
                if stop_when is not None and any(stop_when in line for line in self.out):
                    break
                if stop_when_ready and self.ready_at is not None:
                    break
                await asyncio.sleep(0.02)
            self.supervisor.request_stop()
            return await task

        return asyncio.run(main())

    def said(self, text: str) -> list[str]:
        return [line for line in self.out if text in line]


def test_children_start_in_order_each_once_the_previous_answers_and_stop_in_reverse(
    workdir: Path,
) -> None:
    specs = [
        listener(workdir, "first", 0.3),
        listener(workdir, "second"),
        listener(workdir, "third"),
    ]
    run = Run(specs)
    assert run.run(stop_after=10, stop_when_ready=True) == 0
    log = (workdir / "log").read_text().splitlines()
    starts = [line for line in log if line.startswith("start")]
    # Each child saw the sockets of those before it already there when it started.
    assert starts == [
        "start first ",
        "start second first.sock",
        "start third first.sock second.sock",
    ]
    stops = [line for line in log if line.startswith("stop")]
    assert stops == ["stop third", "stop second", "stop first"]
    assert run.ready_at is not None


def test_output_is_merged_line_by_line_behind_the_service_name(workdir: Path) -> None:
    sock = workdir / "sockets" / "a.sock"
    specs = [
        # Ready (listening) only once it has written both lines.
        python(
            "a",
            "import socket, sys, time; print('one'); print('two', file=sys.stderr); "
            f"sys.stdout.flush(); s = socket.socket(socket.AF_UNIX); s.bind({str(sock)!r}); "
            "s.listen(); time.sleep(30)",
            Readiness(unix_sockets=(sock,)),
        ),
        python("longer", "import time; print('x' * 10, flush=True); time.sleep(30)"),
    ]
    run = Run(specs)
    run.run(stop_after=5, stop_when="longer | xxxxxxxxxx")
    assert "a      | one" in run.out
    assert "a      | two" in run.out
    assert "longer | xxxxxxxxxx" in run.out


def _restart_delays(lines: list[str]) -> list[str]:
    return [line.rsplit("restarting in ", 1)[1] for line in lines if "restarting in" in line]


def test_back_off_doubles_up_to_the_cap_and_counts_restarts(workdir: Path) -> None:
    status = workdir / "status.json"
    specs = [python("crashy", "import sys, time; time.sleep(0.05); sys.exit(3)")]
    run = Run(specs, status=status)
    out = run.out

    async def main() -> int:
        task = asyncio.create_task(run.supervisor.run())
        deadline = time.monotonic() + 10
        while len(_restart_delays(out)) < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        run.supervisor.request_stop()
        return await task

    assert asyncio.run(main()) == 0
    assert _restart_delays(out)[:5] == ["0.1s", "0.2s", "0.4s", "0.4s", "0.4s"]
    assert run.said("roost: crashy exited with 3, restarting in 0.1s")
    data = json.loads(status.read_text())
    assert data["services"]["crashy"]["restarts"] >= 5
    assert data["services"]["crashy"]["state"] == "stopped"


def test_back_off_starts_again_at_the_first_delay_after_a_stable_run(workdir: Path) -> None:
    policy = replace(FAST, stable_after=0.2)
    specs = [python("flaky", "import sys, time; time.sleep(0.3); sys.exit(1)")]
    run = Run(specs, policy=policy)

    async def main() -> int:
        task = asyncio.create_task(run.supervisor.run())
        deadline = time.monotonic() + 10
        while len(_restart_delays(run.out)) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        run.supervisor.request_stop()
        return await task

    asyncio.run(main())
    assert _restart_delays(run.out)[:3] == ["0.1s", "0.1s", "0.1s"]


def test_policy_back_off_schedule() -> None:
    policy = Policy()
    assert [policy.backoff(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]


def test_a_killed_child_is_restarted_and_reported_by_signal(workdir: Path) -> None:
    status = workdir / "status.json"
    specs = [listener(workdir, "victim")]
    run = Run(specs, status=status)

    async def main() -> int:
        task = asyncio.create_task(run.supervisor.run())
        deadline = time.monotonic() + 10
        while run.ready_at is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        first = json.loads(status.read_text())["services"]["victim"]["pid"]
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                entry = json.loads(status.read_text())["services"]["victim"]
                if entry["state"] == "running" and entry["pid"] not in (first, None):
                    return int(entry["pid"])
                await asyncio.sleep(0.02)
            raise AssertionError(f"victim was not running again after 10s: {entry}")
        finally:
            run.supervisor.request_stop()
            await task

    second = asyncio.run(main())
    assert run.said("roost: victim exited with signal SIGKILL, restarting in 0.1s")
    assert len(run.said("victim | hello from victim")) == 2  # it really started again
    info = procs.read_proc(second)
    assert info is None or info.zombie  # and was stopped with the rest


def test_dependants_are_refreshed_when_what_they_wait_for_comes_back(workdir: Path) -> None:
    """Postfix flushes its queue once Dovecot is back: the refresh command runs then, only."""
    status = workdir / "status.json"
    marker = workdir / "refreshed"
    refresh = (sys.executable, "-c", f"open({str(marker)!r}, 'a').write('x')")
    specs = [
        listener(workdir, "backend"),
        replace(listener(workdir, "mta"), after=("backend",), refresh_argv=refresh),
    ]
    run = Run(specs, status=status)

    async def main() -> int:
        task = asyncio.create_task(run.supervisor.run())
        deadline = time.monotonic() + 10
        while run.ready_at is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert not marker.exists()
        first = json.loads(status.read_text())["services"]["backend"]["pid"]
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not marker.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        run.supervisor.request_stop()
        return await task

    assert asyncio.run(main()) == 0
    assert marker.read_text() == "x"
    assert run.said("backend is back: refreshed mta")


def test_notify_reloads_the_running_children_that_reload_on_the_event(workdir: Path) -> None:
    """A new certificate: the daemons that serve it reload, the others are left alone."""

    def reload(name: str, code: int = 0) -> tuple[str, ...]:
        marker = workdir / f"reloaded-{name}"
        program = f"open({str(marker)!r}, 'a').write('x'); print('reloading'); exit({code})"
        return (sys.executable, "-c", program)

    specs = [
        replace(listener(workdir, "web"), reload_argv=reload("web"), reload_on=frozenset({"cert"})),
        replace(listener(workdir, "cache"), reload_argv=reload("cache")),
        replace(
            listener(workdir, "mta"), reload_argv=reload("mta", 1), reload_on=frozenset({"cert"})
        ),
        replace(listener(workdir, "plain"), reload_on=frozenset({"cert"})),  # no reload command
    ]
    run = Run(specs)

    async def main() -> tuple[list[str], bool, bool]:
        task = asyncio.create_task(run.supervisor.run())
        try:
            deadline = time.monotonic() + 10
            while run.ready_at is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert run.ready_at is not None, run.err
            reloaded = await run.supervisor.notify("cert")
            return reloaded, await run.supervisor.reload("cache"), await run.supervisor.reload("x")
        finally:
            run.supervisor.request_stop()
            await task

    reloaded, cache, unknown = asyncio.run(main())
    assert reloaded == ["web"]
    assert (workdir / "reloaded-web").read_text() == "x"
    assert (workdir / "reloaded-mta").read_text() == "x"
    assert run.said("roost: reloaded web")
    assert run.said("web   | reloading")  # its output is merged like the daemon's own
    assert run.said("roost: reloading mta failed: exited with 1")
    assert cache is True and (workdir / "reloaded-cache").read_text() == "x"
    assert unknown is False


def test_a_child_that_is_not_running_is_not_reloaded(workdir: Path) -> None:
    marker = workdir / "reloaded"
    spec = replace(
        python("crashy", "import sys, time; time.sleep(0.2); sys.exit(3)"),
        reload_argv=(sys.executable, "-c", f"open({str(marker)!r}, 'a').write('x')"),
        reload_on=frozenset({"cert"}),
    )
    run = Run([spec])

    async def main() -> list[str]:
        task = asyncio.create_task(run.supervisor.run())
        try:
            deadline = time.monotonic() + 10
            while not run.said("restarting in") and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert run.said("restarting in")
            return await run.supervisor.notify("cert")
        finally:
            run.supervisor.request_stop()
            await task

    assert asyncio.run(main()) == []
    assert not marker.exists()


def test_watchers_run_once_ready_sighup_wakes_them_and_stop_ends_them(workdir: Path) -> None:
    seen: list[str] = []

    async def watcher(supervisor: Supervisor) -> None:
        seen.append("started")
        try:
            while True:
                await supervisor.hangup.wait()
                supervisor.hangup.clear()
                seen.append("hangup")
        finally:
            seen.append("ended")

    run = Run([listener(workdir, "only")])
    run.supervisor.watchers = (watcher,)

    async def main() -> int:
        task = asyncio.create_task(run.supervisor.run())
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert run.ready_at is not None and seen == ["started"]
        os.kill(os.getpid(), signal.SIGHUP)  # would end this test run without the handler
        while len(seen) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        run.supervisor.request_stop()
        return await task

    assert asyncio.run(main()) == 0
    assert seen == ["started", "hangup", "ended"]
    assert run.said("roost: received SIGHUP, looking for changes")


def test_a_failing_watcher_is_reported_and_the_children_keep_running(workdir: Path) -> None:
    async def broken(supervisor: Supervisor) -> None:
        raise ValueError("boom")

    run = Run([listener(workdir, "only")])
    run.supervisor.watchers = (broken,)
    assert run.run(stop_after=10, stop_when="a background task stopped") == 0
    assert run.said("roost: a background task stopped: ValueError: boom")
    log = (workdir / "log").read_text()
    assert log.index("start only") < log.index("stop only")  # stopped by us, at the end


def test_first_start_that_never_answers_fails_with_its_last_lines(workdir: Path) -> None:
    sock = workdir / "sockets" / "never.sock"
    specs = [
        listener(workdir, "fine"),
        python(
            "mute",
            "import time; print('reading config', flush=True); time.sleep(30)",
            Readiness(unix_sockets=(sock,)),
        ),
        listener(workdir, "later"),
    ]
    policy = replace(FAST, ready_timeout=0.6)
    run = Run(specs, policy=policy)
    started = time.monotonic()
    assert run.run() == 1
    assert time.monotonic() - started < 5
    message = "\n".join(run.err)
    assert message.startswith("roost: error: mute was not ready after 0.6s")
    assert str(sock) in message
    assert "mute  | reading config" in message
    assert run.ready_at is None
    # The service after the failed one never started; the one before was stopped.
    log = (workdir / "log").read_text()
    assert "start later" not in log
    assert "stop fine" in log


def test_first_start_that_exits_fails_naming_the_exit_code(workdir: Path) -> None:
    specs = [
        python(
            "broken",
            "import sys; print('bad line 3'); sys.exit(2)",
            Readiness(unix_sockets=(workdir / "sockets" / "x.sock",)),
        )
    ]
    run = Run(specs)
    assert run.run() == 1
    message = "\n".join(run.err)
    assert "broken exited with 2 before it was ready" in message
    assert "bad line 3" in message


def test_a_missing_program_fails_the_first_start(workdir: Path) -> None:
    specs = [ChildSpec("ghost", (str(workdir / "no-such-daemon"),))]
    run = Run(specs)
    assert run.run() == 1
    assert "ghost could not be started" in "\n".join(run.err)


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(workdir: Path) -> None:
    specs = [
        python(
            "stubborn",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('up', flush=True); time.sleep(60)",
        )
    ]
    policy = replace(FAST, stop_grace=0.5)
    run = Run(specs, policy=policy)
    assert run.run(stop_when="stubborn | up") == 0
    assert run.said("roost: stubborn did not stop in 0.5s, killing it")


def test_the_stop_command_is_used_when_the_service_has_one(workdir: Path) -> None:
    flag = workdir / "stopped-by-command"
    # The stop command finds the daemon through the status file the supervisor writes.
    status = workdir / "status.json"
    specs = [
        ChildSpec(
            "polite",
            (
                sys.executable,
                "-c",
                "import signal, time; signal.signal(signal.SIGTERM, "
                "signal.SIG_IGN); print('up', flush=True); time.sleep(60)",
            ),
            stop_argv=(
                sys.executable,
                "-c",
                "import json, os, signal, sys; "
                f"open({str(flag)!r}, 'w').close(); "
                f"pid = json.load(open({str(status)!r}))['services']['polite']['pid']; "
                "os.kill(pid, signal.SIGKILL)",
            ),
        )
    ]
    run = Run(specs, status=status)
    started = time.monotonic()
    assert run.run(stop_when="polite | up") == 0
    assert flag.exists()
    assert time.monotonic() - started < FAST.stop_grace + 3
    assert not run.said("did not stop")


# -- the runner as its own process: signals, subreaping, nothing left behind -------------

DRIVER = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from roost.runner.supervisor import ChildSpec, Policy, Supervisor
    from roost.services.base import Readiness
    config = json.loads(sys.argv[1])
    specs = [
        ChildSpec(c["name"], tuple(c["argv"]),
                  readiness=Readiness(unix_sockets=tuple(Path(p) for p in c["sockets"])))
        for c in config["children"]
    ]
    policy = Policy(ready_timeout=10, stop_grace=1, backoff_first=0.2, backoff_cap=1,
                    probe_interval=0.05, adopt_orphans=True)
    supervisor = Supervisor(specs, policy, status_file=Path(config["status"]),
                            on_ready=lambda: print("ALL READY", flush=True))
    sys.exit(asyncio.run(supervisor.run()))
    """
)

# A Postfix-like daemon: a shell (the supervised pid) runs a master that leaves the
# process group with setsid(), listens, and forks a worker; the worker outlives a master
# killed with SIGKILL unless somebody cleans up.
MASTER = textwrap.dedent(
    """
    import os, signal, socket, sys, time
    path = sys.argv[1]
    os.setsid()
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a worker slow to leave
        while True:
            time.sleep(1)
    while True:
        time.sleep(1)
    """
)


def marker_processes(marker: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry}: {command}")
    return found


@pytest.fixture
def runner_process(workdir: Path) -> Iterator[dict[str, object]]:
    sockets = workdir / "sockets"
    marker = str(workdir)
    master = f"{sys.executable} -c '{MASTER}' {sockets / 'master.sock'}; echo master ended {marker}"
    config = {
        "status": str(workdir / "status.json"),
        "children": [
            {
                "name": "plain",
                "argv": [
                    sys.executable,
                    "-c",
                    LISTENER,
                    str(sockets / "plain.sock"),
                    "0",
                    str(workdir / "log"),
                    "plain",
                ],
                "sockets": [str(sockets / "plain.sock")],
            },
            {
                "name": "postfixish",
                "argv": ["sh", "-c", master],
                "sockets": [str(sockets / "master.sock")],
            },
            {
                "name": "deaf",
                "argv": [
                    sys.executable,
                    "-c",
                    "import signal, sys, time; "
                    "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                    "time.sleep(600)",
                    marker,
                ],
                "sockets": [],
            },
        ],
    }
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen(
        [sys.executable, "-c", DRIVER, json.dumps(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "ALL READY" in line:
            break
    else:
        pytest.fail(f"the driver did not get ready: {process.wait()}")
    state = {"process": process, "marker": marker, "status": workdir / "status.json"}
    try:
        yield state
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # Whatever a failed test left behind must not outlive it.
        for line in marker_processes(marker):
            os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)


def _services(status: Path) -> dict[str, dict[str, object]]:
    return json.loads(status.read_text())["services"]  # type: ignore[no-any-return]


def test_sigterm_stops_everything_and_leaves_no_process(
    runner_process: dict[str, object],
) -> None:
    process = runner_process["process"]
    assert isinstance(process, subprocess.Popen)
    marker = str(runner_process["marker"])
    assert marker_processes(marker)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "roost: stopping deaf" in output
    assert (
        output.index("stopping deaf")
        < output.index("stopping postfixish")
        < output.index("stopping plain")
    )
    assert marker_processes(marker) == []
    services = _services(Path(str(runner_process["status"])))
    states = {name: entry["state"] for name, entry in services.items()}
    assert states == {"plain": "stopped", "postfixish": "stopped", "deaf": "stopped"}


def test_a_restart_first_removes_what_the_dead_child_left(
    runner_process: dict[str, object],
) -> None:
    status = Path(str(runner_process["status"]))
    marker = str(runner_process["marker"])
    shell = int(_services(status)["postfixish"]["pid"])  # type: ignore[call-overload]
    masters = [info.pid for info in procs.descendants(shell) if info.pgid == info.pid]
    assert masters, "the fake master should run in a session of its own"
    workers = [info.pid for info in procs.descendants(masters[0])]
    os.kill(shell, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        entry = _services(status)["postfixish"]
        if entry["state"] == "running" and entry["pid"] != shell:
            break
        time.sleep(0.05)
    else:
        pytest.fail("postfixish was not restarted")
    for pid in [*masters, *workers]:
        info = procs.read_proc(pid)
        left = marker_processes(marker)
        assert info is None or info.zombie, f"{pid} outlived the restart: {left}"
    process = runner_process["process"]
    assert isinstance(process, subprocess.Popen)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=30)
    assert marker_processes(marker) == []


def test_a_second_signal_stops_at_once_without_the_grace_period(
    runner_process: dict[str, object],
) -> None:
    process = runner_process["process"]
    assert isinstance(process, subprocess.Popen) and process.stdout is not None
    process.send_signal(signal.SIGTERM)
    for line in process.stdout:
        if "roost: stopping deaf" in line:
            break
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "roost: received SIGINT again, stopping without waiting" in rest
    assert "did not stop in" not in rest
    assert marker_processes(str(runner_process["marker"])) == []
