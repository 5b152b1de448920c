"""Rspamd's configuration: rendered into a temporary ROOT and judged by rspamadm, then
run for real and asked to scan (GTUBE) over the controller socket."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_services_postfix_support import make_settings, roost_root

from roost.layout import Layout
from roost.services.base import ServiceConfigError
from roost.services.rspamd import RspamdService

ADDRESS = "127.0.5.40"
# GTUBE, which Rspamd answers with "reject" (rspamd.com/doc/other/gtube_patterns.html).
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


@pytest.fixture()
def root() -> Iterator[Path]:
    with roost_root() as path:
        yield path


def service_for(root: Path) -> RspamdService:
    return RspamdService(Layout(make_settings(root, ADDRESS)))


def test_rendered_configuration_passes_rspamadm_and_hides_the_controller_password(
    root: Path,
) -> None:
    service = service_for(root)
    service.render()
    conf = service.conf.read_text()
    # Debian's controller password never works: ours is random and differs at each start.
    assert 'password = "q1"' not in conf
    first = [line for line in conf.splitlines() if line.strip().startswith("password")]
    service.render()
    again = [line for line in service.conf.read_text().splitlines() if "password =" in line]
    assert first and first != again
    mode = stat.S_IMODE(service.conf.stat().st_mode)
    assert mode & 0o007 == 0, oct(mode)
    # The milter socket is Postfix's and root's only; the controller root's only.
    assert f"{service.layout.rspamd_milter_socket} mode=0660" in conf
    assert f"{service.layout.rspamd_controller_socket} mode=0600" in conf
    run = service.layout.rspamd_run
    assert stat.S_IMODE(run.stat().st_mode) == 0o750
    # Mail from mynetworks is local to Rspamd too; the public fuzzy servers are not asked.
    options = (service.local_d / "options.inc").read_text()
    assert '"127.0.0.1/32"' in options or "127.0.0.1" in options
    assert "enabled = false;" in (service.local_d / "fuzzy_check.conf").read_text()


@pytest.mark.parametrize(
    ("resolver", "nameserver"),
    [("unbound", f"{ADDRESS}:53"), ("2001:db8::53", "[2001:db8::53]:53"), ("system", None)],
)
def test_rspamd_asks_the_resolver_postfix_asks(
    root: Path, resolver: str, nameserver: str | None
) -> None:
    service = RspamdService(Layout(make_settings(root, ADDRESS, DNS_RESOLVER=resolver)))
    service.render()  # rspamadm configtest judges the dns block
    options = (service.local_d / "options.inc").read_text()
    if nameserver is None:
        assert "nameserver" not in options
    else:
        assert f'nameserver = ["{nameserver}"];' in options
    assert "unbound" in service.after


def test_overrides_merge_copy_and_replace(root: Path) -> None:
    service = service_for(root)
    overrides = service.overrides
    (overrides / "override.d").mkdir(parents=True)
    (overrides / "milter_headers.conf").write_text("extended_spam_headers = true;\n")
    (overrides / "blacklist.inc").write_text("spam.example\n")
    (overrides / "override.d" / "actions.conf").write_text("reject = 20;\n")
    (overrides / "logging.inc").write_text('level = "debug";\n')
    service.render()
    # Merged: the generated file includes the override by its path.
    assert (
        str(overrides / "milter_headers.conf")
        in (service.local_d / "milter_headers.conf").read_text()
    )
    assert (service.local_d / "blacklist.inc").read_text() == "spam.example\n"
    assert (service.override_d / "actions.conf").read_text() == "reject = 20;\n"
    # Roost writes logging itself: the override is not copied (a warning says so).
    assert not (service.local_d / "logging.inc").exists()


def test_a_broken_override_stops_the_start_naming_the_file(root: Path) -> None:
    service = service_for(root)
    service.overrides.mkdir(parents=True)
    broken = service.overrides / "milter_headers.conf"
    broken.write_text("use = [\n")
    with pytest.raises(ServiceConfigError) as raised:
        service.render()
    assert "Rspamd configuration" in str(raised.value)
    assert "milter_headers.conf" in str(raised.value)


def wait_for_socket(path: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "rspamd exited"
        if path.exists():
            probe = socket.socket(socket.AF_UNIX)
            try:
                probe.connect(str(path))
                return
            except OSError:
                pass
            finally:
                probe.close()
        time.sleep(0.2)
    raise AssertionError(f"{path} did not answer")


@pytest.mark.skipif(os.geteuid() != 0, reason="Rspamd's master binds its sockets as root")
def test_running_rspamd_rejects_gtube_and_lets_postfix_in(root: Path) -> None:
    service = service_for(root)
    # One Hyperscan cache for every run: without it Rspamd's master spends seconds of CPU
    # compiling its rules at each start (an override, as the e2e stacks use).
    cache = Path("/tmp/roost-test-rspamd-hyperscan")
    cache.mkdir(mode=0o755, exist_ok=True)
    shutil.chown(cache, "_rspamd", "_rspamd")
    service.overrides.mkdir(parents=True, exist_ok=True)
    (service.overrides / "options.inc").write_text(f'hs_cache_dir = "{cache}";\n')
    service.render()
    # Its log goes nowhere: a pipe nobody reads would fill and stop it.
    process = subprocess.Popen(
        service.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_socket(service.layout.rspamd_controller_socket, process)
        milter = service.layout.rspamd_milter_socket
        wait_for_socket(milter, process)
        assert stat.S_IMODE(milter.stat().st_mode) == 0o660
        # Postfix's smtpd (user postfix) may connect; nobody else may.
        for user, allowed in (("postfix", True), ("nobody", False)):
            probe = subprocess.run(
                [
                    "runuser",
                    "-u",
                    user,
                    "--",
                    "python3",
                    "-c",
                    f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({str(milter)!r})",
                ],
                capture_output=True,
                check=False,
            )
            assert (probe.returncode == 0) is allowed, (user, probe.stderr)
        message = f"From: a@example.org\nTo: b@example.test\nSubject: gtube\n\n{GTUBE}\n"
        scan = subprocess.run(
            ["rspamc", "-h", str(service.layout.rspamd_controller_socket), "symbols"],
            input=message.encode(),
            capture_output=True,
            check=True,
            timeout=60,
        )
        assert b"Action: reject" in scan.stdout and b"GTUBE" in scan.stdout, scan.stdout
    finally:
        process.terminate()
        process.wait(timeout=30)
