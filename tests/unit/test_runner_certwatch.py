"""The runner reloads the daemons that serve the certificate when its files change.

The daemons here are fake (small Python listeners); their reload command leaves a mark.
tests/e2e/test_supervision.py shows the real nginx, Postfix and Dovecot serving a new pair.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from test_services_postfix_support import make_settings, roost_root

from roost import tls
from roost.layout import Layout
from roost.runner.certwatch import certificate_watcher
from roost.runner.supervisor import ChildSpec, Policy, Supervisor
from roost.services.base import Readiness
from roost.tls.sources import SelfSigned

FAST = Policy(ready_timeout=5, stop_grace=2, probe_interval=0.05, adopt_orphans=False)
SLEEPER = (
    "import socket, sys, time; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); "
    "s.listen(); time.sleep(60)"
)


@pytest.fixture()
def layout() -> Iterator[Layout]:
    with roost_root() as root:
        layout = Layout(make_settings(root, "127.0.5.51"))
        tls.ensure(layout)
        yield layout


def fake(layout: Layout, name: str, reload_on: frozenset[str]) -> ChildSpec:
    sock = layout.root / f"{name}.sock"
    marker = layout.root / f"reloaded-{name}"
    return ChildSpec(
        name=name,
        argv=(sys.executable, "-c", SLEEPER, str(sock)),
        readiness=Readiness(unix_sockets=(sock,)),
        reload_argv=(sys.executable, "-c", f"open({str(marker)!r}, 'a').write('x')"),
        reload_on=reload_on,
    )


def run_with_watch(
    layout: Layout, interval: float, while_running: list[object], timeout: float = 10
) -> tuple[list[str], dict[str, str]]:
    """Run a web daemon (reloads on a new certificate) and a cache (does not) with the
    certificate watch; ``while_running`` is a list of callables, and of strings to wait for
    in the output. Returns the output and the marks each reload left."""
    watch = tls.watch_served(layout)
    assert watch is not None
    out: list[str] = []
    specs = [
        fake(layout, "web", frozenset({tls.CERTIFICATE_CHANGED})),
        fake(layout, "cache", frozenset()),
    ]
    ready = asyncio.Event()
    supervisor = Supervisor(
        specs,
        policy=FAST,
        on_ready=ready.set,
        out=out.append,
        err=out.append,
        watchers=[certificate_watcher(watch, interval)],
    )

    async def main() -> None:
        task = asyncio.create_task(supervisor.run())
        try:
            await asyncio.wait_for(ready.wait(), timeout)
            for step in while_running:
                if isinstance(step, str):
                    deadline = time.monotonic() + timeout
                    while not any(step in line for line in out):
                        assert time.monotonic() < deadline, f"no {step!r} in {out}"
                        await asyncio.sleep(0.02)
                else:
                    assert callable(step)
                    step()
        finally:
            supervisor.request_stop()
            await task

    asyncio.run(main())
    marks = {
        path.name.removeprefix("reloaded-"): path.read_text()
        for path in layout.root.glob("reloaded-*")
    }
    return out, marks


def renew(layout: Layout) -> None:
    SelfSigned(layout).create()  # a new key and certificate in place of the old ones


def test_a_renewed_certificate_reloads_the_daemons_that_serve_it(layout: Layout) -> None:
    old = tls.check_served(layout).fingerprint
    out, marks = run_with_watch(layout, 0.05, [lambda: renew(layout), "reloaded web"])
    new = tls.check_served(layout)
    assert new.fingerprint != old
    assert marks == {"web": "x"}  # once, and the cache not at all
    [line] = [line for line in out if "new certificate" in line]
    assert line == (
        f"roost: new certificate in {layout.cert_file} (SHA-256 {new.fingerprint[:16]}..., "
        f"valid until {new.not_after:%Y-%m-%d}): reloaded web"
    )


def test_sighup_looks_at_once(layout: Layout) -> None:
    """A renewal hook need not wait for the next poll: kill -HUP the runner."""
    steps: list[object] = [
        lambda: renew(layout),
        lambda: os.kill(os.getpid(), signal.SIGHUP),
        "reloaded web",
    ]
    out, marks = run_with_watch(layout, 3600, steps)
    assert marks == {"web": "x"}
    assert "roost: received SIGHUP, looking for changes" in out


def test_a_broken_pair_is_reported_and_not_loaded(layout: Layout) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    out, marks = run_with_watch(
        layout,
        0.05,
        [lambda: layout.key_file.write_bytes(stranger), "keep the certificate they have"],
    )
    assert marks == {}
    [line] = [line for line in out if "keep the certificate" in line]
    assert line == (
        f"roost: {layout.key_file}: does not match the certificate in {layout.cert_file} "
        "(the first certificate in the file must be the server's own); "
        "the daemons keep the certificate they have"
    )
