"""``roost up``: run the stack's daemons in the foreground.

``up`` takes the per-ROOT lock, prepares ROOT (roost.bootstrap), renders every daemon's
configuration so that a mistake stops the start before anything runs, and hands the
daemons to the supervisor (roost.runner.supervisor) until SIGTERM or SIGINT. While they
run, a new certificate in ROOT/certs reloads the daemons that serve it
(roost.runner.certwatch).

Exit codes of ``up``: 0 after a clean stop, 1 when the stack could not start (another
runner holds ROOT, a daemon failed its first start, the store is unreachable), 2 for a
configuration error found before anything started.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from roost import tls
from roost.bootstrap import BootstrapError, check_parents, initialise
from roost.layout import Layout
from roost.runner.certwatch import certificate_watcher
from roost.runner.leftovers import stop_leftovers
from roost.runner.lock import LOCK_NAME, AlreadyRunning, RunLock
from roost.runner.stack import child_spec, enabled_services, in_start_order
from roost.runner.statusfile import read_status
from roost.runner.summary import summary_lines
from roost.runner.supervisor import Policy, Supervisor
from roost.services.base import Service, ServiceConfigError
from roost.settings import Settings
from roost.store.db import StoreError

__all__ = ["EXIT_CONFIG", "EXIT_FAILED", "up"]

EXIT_FAILED = 1
EXIT_CONFIG = 2


def _say(text: str) -> None:
    print(f"roost: {text}", flush=True)


def _error(text: str) -> None:
    print(f"roost: error: {text}", file=sys.stderr, flush=True)


def _announce(settings: Settings) -> None:
    for line in summary_lines(settings):
        _say(line)


def up(
    settings: Settings,
    services: Sequence[Service] | None = None,
    policy: Policy | None = None,
) -> int:
    """Run the stack until a signal; ``services`` and ``policy`` replace the real ones in tests."""
    layout = Layout(settings)
    try:
        check_parents(layout.root)
    except BootstrapError as exc:
        _error(str(exc))
        return EXIT_FAILED
    new_root = not layout.root.exists()
    lock = RunLock(layout.run / LOCK_NAME)
    try:
        stale = lock.acquire()
    except AlreadyRunning as exc:
        _error(str(exc))
        return EXIT_FAILED
    except OSError as exc:
        _error(f"cannot take the lock {lock.path}: {exc.strerror or exc}")
        return EXIT_FAILED
    try:
        if stale is not None:
            _say(f"the previous `roost up` (pid {stale}) did not stop cleanly")
            for message in stop_leftovers(read_status(layout.runner_status)):
                _say(message)
        try:
            if new_root:
                _say(f"created ROOT {layout.root}")
            for message in initialise(settings):
                _say(message)
            stack = in_start_order(services if services is not None else enabled_services(layout))
            for service in stack:
                service.render()
            watch = tls.watch_served(layout)
        except (ServiceConfigError, tls.TLSError) as exc:
            _error(str(exc))
            return EXIT_CONFIG
        except (BootstrapError, StoreError) as exc:
            _error(str(exc))
            return EXIT_FAILED
        policy = policy or Policy()
        supervisor = Supervisor(
            [child_spec(service) for service in stack],
            policy=policy,
            status_file=layout.runner_status,
            on_ready=lambda: _announce(settings),
            watchers=[certificate_watcher(watch, policy.certificate_poll)] if watch else [],
        )
        return asyncio.run(supervisor.run())
    finally:
        lock.release()
