"""ClamAV: clamd rendered into a temporary ROOT, run with a one-signature database (EICAR's
MD5, so nothing is downloaded), and asked over its socket as Rspamd asks it."""

from __future__ import annotations

import grp
import os
import socket
import stat
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eicar import EICAR, signature_database
from test_services_postfix_support import make_settings, roost_root

from roost.layout import Layout
from roost.runner.stack import enabled_services
from roost.services.base import ServiceConfigError
from roost.services.clamav import ClamdService, FreshclamService
from roost.services.registry import SERVICES
from roost.services.rspamd import RspamdService

ADDRESS = "127.0.5.42"


@pytest.fixture()
def root() -> Iterator[Path]:
    with roost_root() as path:
        yield path


def settings_for(root: Path, **values: object) -> Layout:
    return Layout(make_settings(root, ADDRESS, **values))


def names(layout: Layout) -> list[str]:
    return [service.name for service in enabled_services(layout, registry=SERVICES)]


def test_clamav_runs_only_when_asked_and_freshclam_only_with_updates(root: Path) -> None:
    assert "clamav" not in names(settings_for(root))
    layout = settings_for(root, ANTIVIRUS="clamav")
    assert names(layout).index("freshclam") < names(layout).index("clamav")
    assert names(layout).index("clamav") < names(layout).index("rspamd")
    offline = settings_for(root, ANTIVIRUS="clamav", ANTIVIRUS_UPDATES=False)
    assert "freshclam" not in names(offline) and "clamav" in names(offline)


def test_without_signatures_and_updates_the_start_stops_with_what_to_do(root: Path) -> None:
    empty = root / "empty-db"
    empty.mkdir()
    layout = settings_for(
        root, ANTIVIRUS="clamav", ANTIVIRUS_UPDATES=False, ANTIVIRUS_DATABASE=empty
    )
    with pytest.raises(ServiceConfigError, match="holds no ClamAV signatures"):
        ClamdService(layout).render()


def test_freshclam_updates_the_database_and_notifies_clamd(root: Path) -> None:
    layout = settings_for(root, ANTIVIRUS="clamav", ANTIVIRUS_DATABASE=root / "db")
    service = FreshclamService(layout)
    service.render()
    text = service.conf.read_text()
    assert f"DatabaseDirectory {root / 'db'}\n" in text
    assert f"NotifyClamd {layout.service_etc('clamav') / 'clamd.conf'}\n" in text
    assert "--foreground" in service.command()


def test_rspamd_configuration_with_clamav_passes_rspamadm(root: Path) -> None:
    layout = settings_for(root, ANTIVIRUS="clamav", ANTIVIRUS_ACTION="discard")
    service = RspamdService(layout)
    service.render()
    antivirus = (service.local_d / "antivirus.conf").read_text()
    assert str(layout.clamd_socket) in antivirus
    actions = (service.local_d / "force_actions.conf").read_text()
    assert 'action = "discard";' in actions and "CLAM_VIRUS_FAIL" in actions
    RspamdService(settings_for(root)).render()
    assert "clamav {" not in (service.local_d / "antivirus.conf").read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="clamd switches to the clamav user")
def test_clamd_finds_eicar_for_rspamds_group_only(root: Path) -> None:
    database = signature_database(root / "clamav-db")
    layout = settings_for(
        root, ANTIVIRUS="clamav", ANTIVIRUS_UPDATES=False, ANTIVIRUS_DATABASE=database
    )
    service = ClamdService(layout)
    service.render()
    process = subprocess.Popen(service.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    path = layout.clamd_socket
    try:
        deadline = time.monotonic() + 60
        while not (path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o660):
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "clamd did not start"
            time.sleep(0.2)
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        assert path.stat().st_gid == grp.getgrnam("_rspamd").gr_gid

        def scan(data: bytes) -> bytes:
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(str(path))
                client.sendall(b"zINSTREAM\0" + struct.pack(">I", len(data)) + data)
                client.sendall(struct.pack(">I", 0))
                return client.recv(200)

        assert b"Eicar-Test-Signature" in scan(EICAR) and b"FOUND" in scan(EICAR)
        assert scan(b"just a letter").endswith(b"OK\0")
        # Rspamd's user may connect; nobody else may.
        script = f"import socket; socket.socket(socket.AF_UNIX).connect({str(path)!r})"
        for user, allowed in (("_rspamd", True), ("nobody", False)):
            probe = subprocess.run(
                ["runuser", "-u", user, "--", "python3", "-c", script],
                capture_output=True,
                check=False,
            )
            assert (probe.returncode == 0) is allowed, (user, probe.stderr)
    finally:
        process.terminate()
        process.wait(timeout=30)
