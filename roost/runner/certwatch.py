"""Reload the daemons that serve the certificate when its files change.

The runner hands this watcher to the supervisor when TLS is on. It polls the
:class:`roost.tls.CertificateWatch` every ``Policy.certificate_poll`` seconds, or at once on
SIGHUP (for a renewal hook: ``kill -HUP $(cat ROOT/run/roost.pid)``), and on a new pair that
passed the check reloads every service whose ``reload_on`` names
:data:`roost.tls.CERTIFICATE_CHANGED`. A pair that fails the check is reported and not
loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from roost.runner.supervisor import Supervisor
from roost.tls import CERTIFICATE_CHANGED, CertificateWatch

__all__ = ["certificate_watcher"]


def certificate_watcher(
    watch: CertificateWatch, interval: float
) -> Callable[[Supervisor], Awaitable[None]]:
    """A supervisor watcher (Supervisor(watchers=...)) for ``watch``."""

    async def run(supervisor: Supervisor) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(supervisor.hangup.wait(), interval)
            supervisor.hangup.clear()
            change = watch.poll()
            if change is None:
                continue
            if change.certificate is None:
                supervisor.say(f"{change.error}; the daemons keep the certificate they have")
                continue
            checked = change.certificate
            for warning in checked.warnings:
                supervisor.say(warning)
            reloaded = await supervisor.notify(CERTIFICATE_CHANGED)
            supervisor.say(
                f"new certificate in {checked.cert_file} (SHA-256 {checked.fingerprint[:16]}..., "
                f"valid until {checked.not_after:%Y-%m-%d}): reloaded "
                + (", ".join(reloaded) or "nothing")
            )

    return run
