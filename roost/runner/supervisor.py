"""Start daemons in order, keep them running, stop them all: the heart of ``roost up``.

Each daemon runs as a child in a process group (and session) of its own, so one signal
reaches all of its processes and a terminal's Ctrl-C reaches only the runner, which then
stops the children in reverse order. Everything the children print is merged into the
runner's stdout, line by line, behind the service's name (roost.runner.logrelay).

A child that dies is restarted after a back-off (1 s, 2 s, 4 s ... capped at 30 s, reset once
it has stayed up a minute), but only after whatever it left behind is gone: a daemon's
workers that outlive their master still hold its ports and locks, and would make the new
master fail. The first start is different: a daemon that cannot start then is a
configuration problem, so ``roost up`` stops with an error naming the daemon and showing
its last lines instead of looping.

While the stack runs, :meth:`Supervisor.notify` reloads the daemons that asked to be
reloaded on an event (a changed certificate) with their own reload command, so their
connections in progress are not cut; background tasks (``watchers``, such as the runner's
certificate watch) run beside the children once all of them are ready. SIGHUP wakes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roost.runner import procs
from roost.runner.logrelay import Pipe, Relay, open_pipe, to_stream
from roost.runner.probe import first_silent
from roost.runner.statusfile import (
    FAILED,
    RESTARTING,
    RUNNING,
    STARTING,
    STOPPED,
    STOPPING,
    readiness_to_json,
    write_status,
)
from roost.services.base import Readiness

__all__ = ["ChildSpec", "Policy", "Supervisor"]

TAIL_LINES = 15
#: how often to look whether a child being stopped has exited (or a second signal came)
EXIT_POLL = 0.05


@dataclass(frozen=True)
class ChildSpec:
    """One daemon as the supervisor sees it: how to start, probe and stop it."""

    name: str
    argv: tuple[str, ...]
    #: the complete environment of the child; None inherits the runner's
    env: Mapping[str, str] | None = None
    readiness: Readiness = field(default_factory=Readiness)
    #: run instead of sending SIGTERM when the daemon has its own way to stop
    stop_argv: tuple[str, ...] | None = None
    #: the daemons this one waits for at start
    after: tuple[str, ...] = ()
    #: run when one of ``after`` is ready again after a restart (Service.refresh_command)
    refresh_argv: tuple[str, ...] | None = None
    #: the daemon's own reload (Service.reload_command), run by Supervisor.reload
    reload_argv: tuple[str, ...] | None = None
    #: the events Supervisor.notify reloads it for (Service.reload_on)
    reload_on: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Policy:
    """Timings; the defaults are the production ones, tests shorten them."""

    #: generous: Rspamd's first start on a new ROOT compiles its Hyperscan databases and
    #: loads its Lua plugins before it binds a socket, 20 to 45 s on a busy 2-core host
    #: (about 2 s once the cache in ROOT/rspamd exists); 30 s failed setup.sh's first start
    ready_timeout: float = 120.0
    stop_grace: float = 10.0
    backoff_first: float = 1.0
    backoff_cap: float = 30.0
    stable_after: float = 60.0
    probe_interval: float = 0.2
    #: how often the certificate watch looks at the files (SIGHUP: at once)
    certificate_poll: float = 5.0
    #: become a child subreaper so daemons that leave their process group (Postfix's
    #: master) are handed back to us when their parent dies; off for in-process tests
    adopt_orphans: bool = True

    def backoff(self, failures: int) -> float:
        return float(min(self.backoff_first * 2**failures, self.backoff_cap))


class _Child:
    """The mutable state of one supervised daemon."""

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.process: asyncio.subprocess.Process | None = None
        self.ticks: int | None = None
        self.state = STOPPED
        self.restarts = 0
        self.failures = 0
        self.since = time.time()
        self.started = 0.0
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.groups: set[int] = set()
        self.group_ticks: dict[int, int] = {}
        self.life: asyncio.Task[None] | None = None
        self.pipes: list[Pipe] = []
        self.first_ready: asyncio.Future[str | None] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def note(self, block: bytes) -> None:
        """Keep the last lines of a block of output, while the first start may still fail
        (they explain why); afterwards nobody reads them."""
        if self.first_ready is None or not self.first_ready.done():
            self.tail.extend(block[:-1].decode().split("\n"))

    def reading(self) -> list[asyncio.Future[None]]:
        """Its pipes still being read: a daemon's orphaned workers may hold one open."""
        self.pipes = [pipe for pipe in self.pipes if not pipe.done.done()]
        return [pipe.done for pipe in self.pipes]


class Supervisor:
    """Runs ``specs`` in order until a signal (or a failed first start) ends it."""

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        policy: Policy | None = None,
        status_file: Path | None = None,
        on_ready: Callable[[], None] | None = None,
        out: Callable[[str], None] | None = None,
        err: Callable[[str], None] | None = None,
        watchers: Sequence[Callable[[Supervisor], Awaitable[None]]] = (),
    ) -> None:
        self.children = [_Child(spec) for spec in specs]
        self.policy = policy or Policy()
        self.status_file = status_file
        self.on_ready = on_ready
        #: the merged output: stdout, or ``out`` line by line (for an embedding program)
        self._output = Relay(to_stream(sys.stdout.buffer) if out is None else _by_line(out))
        self._err = err or _print_to(sys.stderr)
        self._width = max((len(spec.name) for spec in specs), default=0)
        self._tracked: set[int] = set()
        self._stopping = asyncio.Event()
        self._urgent = False
        self._started = time.time()
        self.watchers = tuple(watchers)
        #: set by SIGHUP: watchers look at once instead of at their next poll
        self.hangup = asyncio.Event()

    # -- the whole run ------------------------------------------------------------------

    async def run(self) -> int:
        """Start everything, supervise until SIGTERM/SIGINT, stop everything; exit code."""
        loop = asyncio.get_running_loop()
        if self.policy.adopt_orphans:
            procs.become_subreaper()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        loop.add_signal_handler(signal.SIGHUP, self._on_hangup)
        reaper = asyncio.create_task(self._reap_orphans()) if self.policy.adopt_orphans else None
        background: list[asyncio.Task[None]] = []
        code = 0
        try:
            self._write_status()
            code = await self._start_all()
            if code == 0 and not self._stopping.is_set():
                if self.on_ready is not None:
                    self._output.flush()
                    self.on_ready()
                background = [asyncio.create_task(self._watch(w)) for w in self.watchers]
                await self._stopping.wait()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._stop_all()
            if reaper is not None:
                reaper.cancel()
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
        return code

    async def _watch(self, watcher: Callable[[Supervisor], Awaitable[None]]) -> None:
        """Run a watcher; one that fails is reported, and the daemons keep running."""
        try:
            await watcher(self)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a watcher bug must not take the mail system down
            self._say(f"a background task stopped: {type(exc).__name__}: {exc}")

    def request_stop(self) -> None:
        """Stop as SIGTERM would (for an embedding program, or a test)."""
        if not self._stopping.is_set():
            self._stopping.set()

    def _on_hangup(self) -> None:
        self._say("received SIGHUP, looking for changes")
        self.hangup.set()

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self._stopping.is_set():
            self._urgent = True
            self._say(f"received {name} again, stopping without waiting")
            return
        self._say(f"received {name}, stopping")
        self._stopping.set()

    async def _start_all(self) -> int:
        """Start each child once ready is the one before; 1 when one cannot start."""
        loop = asyncio.get_running_loop()
        stop_wait = asyncio.create_task(self._stopping.wait())
        try:
            for child in self.children:
                child.first_ready = loop.create_future()
                child.life = asyncio.create_task(self._life(child))
                waiting: set[asyncio.Future[Any]] = {child.first_ready, stop_wait}
                await asyncio.wait(waiting, return_when="FIRST_COMPLETED")
                if self._stopping.is_set():
                    return 0
                problem = child.first_ready.result()
                if problem is not None:
                    self._output.flush()
                    self._err(f"roost: error: {problem}")
                    return 1
            return 0
        finally:
            stop_wait.cancel()

    # -- one child's life -----------------------------------------------------------------

    async def _life(self, child: _Child) -> None:
        """Start, wait for ready, wait for exit, back off, again, until stopping."""
        assert child.first_ready is not None
        while not self._stopping.is_set():
            problem = await self._start_once(child)
            if problem is None:
                child.state = RUNNING
                child.since = time.time()
                self._note_groups(child)
                self._write_status()
                if not child.first_ready.done():
                    child.first_ready.set_result(None)
                else:
                    await self._refresh_dependants(child)
                assert child.process is not None
                returncode = await child.process.wait()
                if self._stopping.is_set():
                    return
                problem = f"exited with {procs.signal_name(returncode)}"
            if self._stopping.is_set():
                return
            await self._end(child)
            if not child.first_ready.done():
                reading = child.reading()
                if reading:
                    await asyncio.wait(reading, timeout=1)
                child.state = FAILED
                self._write_status()
                child.first_ready.set_result(self._explain(child, problem))
                return
            if time.monotonic() - child.started >= self.policy.stable_after:
                child.failures = 0
            delay = self.policy.backoff(child.failures)
            child.failures += 1
            child.restarts += 1
            child.state = RESTARTING
            child.since = time.time()
            self._write_status()
            self._say(f"{child.name} {problem}, restarting in {delay:g}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _refresh_dependants(self, restarted: _Child) -> None:
        """Tell the running daemons that wait for ``restarted`` that it is back."""
        for child in self.children:
            argv = child.spec.refresh_argv
            if argv and restarted.name in child.spec.after and child.state == RUNNING:
                code = await self._run_for(child, argv, f"refresh {child.name}")
                if code is not None:
                    self._say(f"{restarted.name} is back: refreshed {child.name}")

    async def reload(self, name: str) -> bool:
        """Run the reload command of the running daemon ``name``; True when it succeeded.

        A daemon that is not running now (starting, restarting) needs none: it reads the
        current files when it starts.
        """
        child = next((c for c in self.children if c.name == name), None)
        if child is None or child.spec.reload_argv is None or child.state != RUNNING:
            return False
        code = await self._run_for(child, child.spec.reload_argv, f"reload {name}")
        if code is None:
            return False
        if code != 0:
            self._say(f"reloading {name} failed: exited with {procs.signal_name(code)}")
            return False
        self._say(f"reloaded {name}")
        return True

    async def notify(self, event: str) -> list[str]:
        """Reload every running daemon that reloads on ``event``; the names reloaded."""
        reloaded = []
        for child in self.children:
            if event in child.spec.reload_on and await self.reload(child.name):
                reloaded.append(child.name)
        return reloaded

    async def _run_for(self, child: _Child, argv: Sequence[str], what: str) -> int | None:
        """Run a helper command of ``child`` (with its environment and output prefix) to
        the end; its exit status, or None when it could not be started."""
        try:
            helper, pipe = await self._spawn(child, argv, new_session=False)
        except OSError as exc:
            self._say(f"cannot {what}: {exc}")
            return None
        self._tracked.add(helper.pid)
        await pipe.done
        code = await helper.wait()
        self._tracked.discard(helper.pid)
        return code

    async def _start_once(self, child: _Child) -> str | None:
        """Spawn the child and wait until it answers; None when ready, else what went wrong."""
        child.state = STARTING
        child.since = time.time()
        child.started = time.monotonic()
        child.tail.clear()
        child.groups = set()
        try:
            process, _ = await self._spawn(child, child.spec.argv, new_session=True)
        except OSError as exc:
            child.process = None
            return f"could not be started ({child.spec.argv[0]}: {exc.strerror or exc})"
        child.process = process
        child.ticks = procs.start_ticks(process.pid)
        child.groups = {process.pid}
        self._tracked.add(process.pid)
        self._write_status()
        return await self._wait_ready(child)

    async def _wait_ready(self, child: _Child) -> str | None:
        assert child.process is not None
        deadline = time.monotonic() + self.policy.ready_timeout
        while True:
            if self._stopping.is_set():
                return "was stopped before it was ready"
            if child.process.returncode is not None:
                code = procs.signal_name(child.process.returncode)
                return f"exited with {code} before it was ready"
            silent = await first_silent(child.spec.readiness)
            if silent is None:
                return None
            if time.monotonic() >= deadline:
                return (
                    f"was not ready after {self.policy.ready_timeout:g}s "
                    f"(nothing answered on {silent})"
                )
            await asyncio.sleep(self.policy.probe_interval)

    def _explain(self, child: _Child, problem: str) -> str:
        lines = [f"{child.name} {problem}"]
        if child.tail:
            lines.append("its last lines were:")
            lines.extend(f"  {self._prefix(child)}{line}" for line in child.tail)
        else:
            lines.append("it printed nothing")
        return "\n".join(lines)

    # -- output ---------------------------------------------------------------------------

    def _prefix(self, child: _Child) -> str:
        return f"{child.name:<{self._width}} | "

    async def _spawn(
        self, child: _Child, argv: Sequence[str], new_session: bool
    ) -> tuple[asyncio.subprocess.Process, Pipe]:
        """Start a process of ``child`` (the daemon, or a command of its) with its
        environment, its stdout and stderr on a pipe whose lines join the merged output."""
        read, write = open_pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=write,
                stderr=asyncio.subprocess.STDOUT,
                env=dict(child.spec.env) if child.spec.env is not None else None,
                start_new_session=new_session,
            )
        except BaseException:
            os.close(read)
            raise
        finally:
            os.close(write)
        pipe = self._output.open(read, self._prefix(child), child.note)
        child.reading()
        child.pipes.append(pipe)
        return process, pipe

    def _say(self, text: str) -> None:
        self._output.line(f"roost: {text}")

    def say(self, text: str) -> None:
        """A line of the runner's own in the merged output (for watchers)."""
        self._say(text)

    # -- stopping -----------------------------------------------------------------------

    async def _stop_all(self) -> None:
        """Stop every started child, last started first, then wait for their output."""
        self._stopping.set()
        for child in reversed(self.children):
            await self._stop_child(child)
        lives = [child.life for child in self.children if child.life is not None]
        await asyncio.gather(*lives, return_exceptions=True)
        # A child whose restart was being spawned while the loop above passed it.
        for child in reversed(self.children):
            if child.alive:
                await self._stop_child(child)
        reading = [done for child in self.children for done in child.reading()]
        if reading:
            await asyncio.wait(reading, timeout=2)
        for child in self.children:
            for pipe in child.pipes:
                pipe.close()
        self._say("stopped")

    async def _stop_child(self, child: _Child) -> None:
        if child.process is None:
            return
        if child.alive:
            child.state = STOPPING
            self._write_status()
            self._say(f"stopping {child.name}")
            await self._terminate(child)
        await self._end(child)
        child.state = STOPPED
        child.since = time.time()
        self._write_status()

    async def _terminate(self, child: _Child) -> None:
        """Ask a running child to stop (its stop command or SIGTERM), wait up to the grace;
        then SIGKILL all its process groups."""
        assert child.process is not None
        self._note_groups(child)
        deadline = time.monotonic() + self.policy.stop_grace
        stopper = None
        if child.spec.stop_argv and not self._urgent:
            stopper = await self._run_stop_command(child)
        if stopper is None:
            # The leaders only: a daemon's master stops its own workers in order, and
            # workers signalled directly only complain that they were killed.
            for pgid in self._groups_to_signal(child):
                procs.signal_process(pgid, signal.SIGTERM)
        while child.alive and time.monotonic() < deadline and not self._urgent:
            await asyncio.sleep(EXIT_POLL)
        if child.alive:
            if not self._urgent:
                self._say(f"{child.name} did not stop in {self.policy.stop_grace:g}s, killing it")
            for pgid in self._groups_to_signal(child):
                procs.signal_group(pgid, signal.SIGKILL)
            await child.process.wait()
        if stopper is not None and stopper.returncode is None:
            procs.signal_group(stopper.pid, signal.SIGKILL)
            await stopper.wait()

    async def _run_stop_command(self, child: _Child) -> asyncio.subprocess.Process | None:
        assert child.spec.stop_argv is not None
        try:
            stopper, _ = await self._spawn(child, child.spec.stop_argv, new_session=True)
        except OSError as exc:
            self._say(f"cannot run the stop command of {child.name}: {exc}; sending SIGTERM")
            return None
        self._tracked.add(stopper.pid)
        return stopper

    async def _end(self, child: _Child) -> None:
        """Make sure nothing of a child whose main process has exited is left running.

        Its process groups (its own and those its descendants made) and any orphan the
        kernel handed to us get SIGTERM, then SIGKILL once the grace period is over.
        """
        if child.process is not None and child.alive:
            for pgid in self._groups_to_signal(child):
                procs.signal_group(pgid, signal.SIGKILL)
            await child.process.wait()
        if child.process is not None:
            self._tracked.discard(child.process.pid)
        deadline = time.monotonic() + self.policy.stop_grace
        signum = signal.SIGTERM
        while True:
            leftovers = self._leftovers(child)
            if not leftovers:
                return
            if self._urgent or time.monotonic() >= deadline:
                signum = signal.SIGKILL
            for group, pids in leftovers.items():
                if group is None:
                    for pid in pids:
                        procs.signal_process(pid, signum)
                else:
                    procs.signal_group(group, signum)
            await asyncio.sleep(0.1)
            if self.policy.adopt_orphans:
                procs.reap_zombies(os.getpid(), self._tracked)

    def _protected_groups(self, child: _Child) -> set[int]:
        """Groups never to signal: ours, and those of the other children still running."""
        protected = {os.getpgrp()}
        for other in self.children:
            if other is not child and other.alive and other.process is not None:
                protected.add(other.process.pid)
        return protected

    def _groups_to_signal(self, child: _Child) -> list[int]:
        self._note_groups(child)
        protected = self._protected_groups(child)
        return sorted(pgid for pgid in child.groups if pgid not in protected)

    def _note_groups(self, child: _Child) -> None:
        """Remember the process groups of the child's descendants (Postfix's master
        makes its own), so they can still be found once the child itself is gone."""
        if child.process is None or child.process.returncode is not None:
            return
        for info in procs.descendants(child.process.pid):
            if info.pgid not in child.groups and info.pgid == info.pid:
                child.groups.add(info.pgid)
                child.group_ticks[info.pgid] = info.start_ticks
        if child.ticks is not None:
            child.group_ticks[child.process.pid] = child.ticks

    def _leftovers(self, child: _Child) -> dict[int | None, list[int]]:
        """Live processes of the child's groups, and orphans handed to us, by group.

        An orphan whose group is protected (ours, or another running child's) is listed
        under None and is signalled alone, never its group.
        """
        table = procs.all_processes()
        me = os.getpid()
        protected = self._protected_groups(child)
        groups = {pgid for pgid in child.groups if pgid not in protected}
        loners: list[int] = []
        if self.policy.adopt_orphans:
            for info in table:
                if info.ppid == me and not info.zombie and info.pid not in self._tracked:
                    if info.pgid in protected:
                        loners.append(info.pid)
                    else:
                        groups.add(info.pgid)
        found: dict[int | None, list[int]] = {}
        for info in table:
            if info.pgid in groups and not info.zombie and info.pid != me:
                found.setdefault(info.pgid, []).append(info.pid)
        if loners:
            found[None] = loners
        return found

    async def _reap_orphans(self) -> None:
        """Adopted orphans that die on their own become zombies until someone waits."""
        while True:
            await asyncio.sleep(2)
            procs.reap_zombies(os.getpid(), self._tracked)

    # -- status ---------------------------------------------------------------------------

    def _write_status(self) -> None:
        if self.status_file is None:
            return
        write_status(self.status_file, self.snapshot())

    def snapshot(self) -> dict[str, Any]:
        """The status file's content (see roost.runner.statusfile)."""
        services: dict[str, Any] = {}
        for child in self.children:
            alive = child.alive and child.process is not None
            services[child.name] = {
                "pid": child.process.pid if alive and child.process else None,
                "start_ticks": child.ticks if alive else None,
                "state": child.state,
                "restarts": child.restarts,
                "since": child.since,
                "readiness": readiness_to_json(child.spec.readiness),
                "groups": sorted(
                    [pgid, ticks]
                    for pgid, ticks in child.group_ticks.items()
                    if pgid in child.groups
                )
                if alive
                else [],
            }
        return {
            "runner": {
                "pid": os.getpid(),
                "start_ticks": procs.start_ticks(os.getpid()),
                "started": self._started,
            },
            "updated": time.time(),
            "services": services,
        }


def _by_line(out: Callable[[str], None]) -> Callable[[bytes], None]:
    def write(block: bytes) -> None:
        for line in block.decode("utf-8", "replace").split("\n")[:-1]:
            out(line)

    return write


def _print_to(stream: Any) -> Callable[[str], None]:
    def write(line: str) -> None:
        try:
            stream.write(line + "\n")
            stream.flush()
        except (BrokenPipeError, ValueError):
            pass  # nobody reads our output any more; keep supervising

    return write
