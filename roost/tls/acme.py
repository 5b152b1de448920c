"""The ACME client (TLS_FLAVOR letsencrypt, mail-letsencrypt): certbot, run while the stack runs.

``roost up`` starts ``python -m roost.tls.acme`` (roost.services.acme) once nginx answers,
so the stack never waits for a CA: a self-signed pair serves until the first certificate
arrives (roost.tls.sources.Acme). Each run:

1. checks every name of HOSTNAMES the way the CA will, over HTTP on port 80 through DNS,
   with a token file of its own in the webroot nginx serves at
   ``/.well-known/acme-challenge/`` (as Mailu checks its first host name);
2. runs ``certbot certonly --webroot`` for the names that passed (roost.core.acme decides
   which, and builds the command); if the CA refuses some, once more without them;
3. installs the new certificate into the served files once it passed the check (key
   ``0600``; port 25's chain with its root, roost.tls.chains), and tells the runner
   (SIGHUP), which reloads nginx, Postfix and Dovecot (roost.runner.certwatch);
4. writes what happened to ``ROOT/certs/letsencrypt/status.json`` for ``roost status``.

Then it sleeps: twelve hours (about) when every name is in the certificate (certbot renews
30 days before expiry), one hour when a name was left out or the run failed; SIGHUP wakes it
at once. Nothing here can take TLS away: the served files change only to a checked pair,
and a crash leaves them as they are (the runner restarts the process).
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import logging
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from roost.core.acme import (
    FULL_RUN_SECONDS,
    RETRY_SECONDS,
    AcmeState,
    CertbotPaths,
    certbot_command,
    contact_address,
    names_to_request,
    without_refused,
)
from roost.layout import Layout
from roost.tls.acmestate import read_state, write_state
from roost.tls.check import CheckedCertificate, TLSError, check_pair
from roost.tls.sources import Acme, missing_root, write_new

__all__ = ["Outcome", "certbot_paths", "install", "obtain", "run", "self_check"]

log = logging.getLogger("roost.acme")

#: how long certbot may take (it waits for the CA's validation)
CERTBOT_TIMEOUT = 600
SELF_CHECK_TIMEOUT = 10
#: lines of certbot's output that say nothing about the failure itself
_NOISE = ("Saving debug log", "Ask for help", "See the logfile", "Requesting a certificate")


def certbot_paths(layout: Layout) -> CertbotPaths:
    base = layout.acme
    return CertbotPaths(
        config=base / "certbot",
        work=base / "work",
        logs=base / "logs",
        webroot=layout.acme_webroot,
    )


@dataclass(frozen=True)
class Outcome:
    """One run: its state, and the certificate it installed (None: the served one stays)."""

    state: AcmeState
    installed: CheckedCertificate | None = None

    def lines(self) -> list[str]:
        """What the run did, for the log and ``roost certificate renew``."""
        state = self.state
        lines = [f"{name} left out: {why}" for name, why in state.left_out.items()]
        if state.error:
            lines.append(f"no certificate: {state.error}")
        elif self.installed is not None:
            checked = self.installed
            lines.append(
                f"new certificate for {', '.join(checked.names)} (valid until "
                f"{checked.not_after:%Y-%m-%d}) installed in {checked.cert_file.parent}"
            )
        else:
            lines.append(f"the certificate for {', '.join(state.names)} is not due for renewal")
        return lines


def obtain(layout: Layout, force: bool = False) -> Outcome:
    """One run (see the module's description); one at a time per ROOT (a lock file)."""
    paths = certbot_paths(layout)
    for directory in (paths.config, paths.work, paths.logs):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _locked(layout.acme / ".lock"):
        return _obtain(layout, paths, force)


def _obtain(layout: Layout, paths: CertbotPaths, force: bool) -> Outcome:
    settings = layout.settings
    hostnames = list(settings.HOSTNAMES)
    previous = read_state(layout) or AcmeState()
    failed = self_check(paths.webroot, hostnames)
    names = names_to_request(hostnames, failed)
    contact = contact_address(settings.POSTMASTER, settings.DOMAIN)
    code, output = _certbot(certbot_command(paths, names, settings.ACME_SERVER, contact, force))
    if code != 0 and contact and "invalidContact" in output:
        log.warning("the ACME server refuses %s as a contact; registering without one", contact)
        contact = None
        code, output = _certbot(certbot_command(paths, names, settings.ACME_SERVER, None, force))
    # The CA may refuse one name after another (each failed order names one): ask again
    # without them, at most once per name.
    for _ in hostnames:
        if code == 0:
            break
        remaining, refused = without_refused(names, output)
        failed.update(refused)
        if not remaining:
            break
        log.warning(
            "the ACME server refused %s; asking for %s only",
            ", ".join(refused),
            ", ".join(remaining),
        )
        names = remaining
        code, output = _certbot(certbot_command(paths, names, settings.ACME_SERVER, contact, force))
    now = time.time()
    installed = None
    error = None
    if code == 0:
        try:
            installed = install(layout, paths)
        except (OSError, TLSError) as exc:
            error = f"certbot's certificate cannot be used: {exc}"
    else:
        error = _summary(output)
    left_out = {name: failed[name] for name in hostnames if name in failed and name not in names}
    if error:
        left_out = {name: failed[name] for name in hostnames if name in failed}
    state = AcmeState(
        names=previous.names if error else tuple(names),
        left_out=left_out,
        error=error,
        last_run=now,
        next_run=now
        + (RETRY_SECONDS if error or left_out else FULL_RUN_SECONDS + random.uniform(0, 3600)),
    )
    write_state(layout, state)
    return Outcome(state, installed)


def self_check(webroot: Path, hostnames: list[str]) -> dict[str, str]:
    """The names whose HTTP-01 challenge would fail, each with the reason.

    Puts a token file of its own where certbot puts the CA's, and fetches it over HTTP
    by each name, through DNS, as the CA will.
    """
    directory = webroot / ".well-known" / "acme-challenge"
    for path in (webroot, webroot / ".well-known", directory):
        path.mkdir(mode=0o755, exist_ok=True)
    token = directory / f"roost-self-check-{secrets.token_urlsafe(12)}"
    content = secrets.token_urlsafe(32)
    write_new(token, content.encode(), 0o644)
    # No proxy from the environment: the check must take the path the CA takes.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    failed: dict[str, str] = {}
    try:
        for name in hostnames:
            # The reasons name the directory, not this run's token.
            url = f"http://{name}/.well-known/acme-challenge/"
            try:
                with opener.open(url + token.name, timeout=SELF_CHECK_TIMEOUT) as response:
                    body = response.read(4096)
            except urllib.error.HTTPError as exc:
                failed[name] = f"{url} answered HTTP {exc.code} (does {name} point at this host?)"
                continue
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
                failed[name] = f"{url} cannot be fetched ({reason})"
                continue
            if body.decode(errors="replace").strip() != content:
                failed[name] = f"{url} answered something else (does {name} point at this host?)"
    finally:
        token.unlink(missing_ok=True)
    for name, reason in failed.items():
        log.warning("HTTP-01 self-check of %s failed: %s", name, reason)
    return failed


def install(layout: Layout, paths: CertbotPaths) -> CheckedCertificate | None:
    """Copy certbot's certificate into the served files (the chains arranged by
    roost.tls.chains) when it is new and passes the check; None when they already hold it."""
    served = Acme(layout)
    key = paths.live_key.read_bytes()
    try:
        chains = served.arranged(paths.live_cert.read_bytes())
    except ValueError as exc:
        raise TLSError(f"{paths.live_cert}: not a PEM certificate ({exc})") from None
    with contextlib.suppress(OSError):
        if served.is_served(chains) and served.key_file.read_bytes() == key:
            return None
    check_pair(paths.live_cert, paths.live_key, layout.settings.HOSTNAMES)
    write_new(served.key_file, key, 0o600)
    served.write_chains(chains)
    if chains.root is None:
        log.warning("%s", missing_root(served.mx_cert_file))
    return check_pair(served.cert_file, served.key_file, layout.settings.HOSTNAMES)


def _certbot(argv: list[str]) -> tuple[int, str]:
    """certbot's exit status and its output (stdout and stderr together)."""
    log.info("running %s", " ".join(argv))
    try:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=CERTBOT_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        return 127, "certbot: not found; install Debian's certbot package"
    except subprocess.TimeoutExpired:
        return 124, f"certbot did not finish within {CERTBOT_TIMEOUT} s"
    return result.returncode, result.stdout + result.stderr


def _summary(output: str) -> str:
    """certbot's failure in one line, without its advice to read the log."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(_NOISE)]
    text = "; ".join(useful[:4]).replace(":; ", ": ") or "certbot failed without a message"
    return text[:400]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One run at a time per ROOT: the runner's process and ``roost certificate renew``."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def run(layout: Layout) -> None:
    """The process ``roost up`` supervises: a run now, then at each due time or SIGHUP."""
    runner = os.getppid()
    wake = threading.Event()
    signal.signal(signal.SIGHUP, lambda _signum, _frame: wake.set())
    while True:
        try:
            outcome = obtain(layout)
        except Exception:  # a bug must not end the renewals: log it, try again later
            log.exception("the ACME run failed; trying again in %d s", RETRY_SECONDS)
            delay = float(RETRY_SECONDS)
        else:
            for line in outcome.lines():
                log.info("%s", line)
            if outcome.installed is not None and os.getppid() == runner:
                # The runner polls the files every few seconds; SIGHUP makes it look now.
                # (Never once orphaned: the new parent would be init.)
                os.kill(runner, signal.SIGHUP)
            delay = max(60.0, (outcome.state.next_run or 0) - time.time())
        wake.wait(delay)
        wake.clear()


def main() -> int:
    from roost.process import settings_or_exit

    run(Layout(settings_or_exit("acme")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
