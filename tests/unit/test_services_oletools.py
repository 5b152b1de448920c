"""SCAN_MACROS: the olefy server answers as Rspamd's oletools scanner expects, with real
olevba and mraptor verdicts on documents made in the tests; its failures are error
replies, never a crash; Rspamd's rules are rendered only when asked and pass rspamadm."""

from __future__ import annotations

import asyncio
import grp
import json
import os
import pwd
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from macrodocs import DANGEROUS_SOURCE, benign_macro, clean_docx, dangerous_macro, vba_project
from test_services_postfix_support import make_settings, roost_root

from roost.layout import Layout
from roost.runner.stack import enabled_services
from roost.services.oletools import OletoolsService
from roost.services.oletools.scan import analyse
from roost.services.oletools.server import (
    STOP_WORD,
    OlefyServer,
    WorkerPool,
    parse_request,
    worker_command,
)
from roost.services.registry import SERVICES
from roost.services.rspamd import RspamdService

ADDRESS = "127.0.5.44"


def request(document: bytes, ident: str = "test-id") -> bytes:
    """What Rspamd's lua_scanners/oletools.lua sends before shutting its side down."""
    return f"OLEFY/1.0\nMethod: oletools\nRspamd-ID: {ident}\n\n".encode() + document


def keywords(reply: list[Any]) -> list[str]:
    (document,) = [item for item in reply if "analysis" in item]
    return [entry["keyword"] for entry in document["analysis"]]


def return_code(reply: list[Any]) -> int:
    return int(reply[-1]["return_code"])


# -- verdicts -------------------------------------------------------------------------------
def test_a_self_starting_macro_that_writes_and_executes_has_all_three_mraptor_classes() -> None:
    reply = analyse(dangerous_macro())
    found = keywords(reply)
    assert "mraptor A AutoOpen" in found
    assert any(word.startswith("mraptor W ") for word in found)
    assert any(word.startswith("mraptor X ") for word in found)
    # olevba's own analysis is there too, as Rspamd's extended mode lists it.
    assert "AutoOpen" in found and "Shell" in found
    types = {entry["type"] for entry in reply[1]["analysis"]}
    assert {"AutoExec", "Suspicious"} <= types
    # Found where Word keeps it: the module stream of the VBA project in the package.
    assert reply[1]["type"] == "OpenXML"
    assert reply[1]["macros"][0]["ole_stream"] == "VBA/Module1"
    assert return_code(reply) == 0


def test_the_vba_project_on_its_own_is_an_ole_file_with_the_same_verdict() -> None:
    # The Compound File alone (as in Word 97-2003 files and as mail attachments of
    # vbaProject.bin): olevba's OLE path, not the OpenXML one.
    reply = analyse(vba_project(DANGEROUS_SOURCE))
    assert reply[1]["type"] == "OLE"
    assert {"mraptor A AutoOpen", "mraptor X Shell"} <= set(keywords(reply))


def test_a_benign_macro_is_found_but_flags_nothing() -> None:
    reply = analyse(benign_macro())
    assert reply[1]["macros"] and keywords(reply) == []
    assert return_code(reply) == 0


def test_a_document_without_macros_has_no_analysis_at_all() -> None:
    # An empty analysis beside an empty macro list makes Rspamd ask again; none at all
    # reads as "no macro found".
    reply = analyse(clean_docx())
    assert reply[1]["type"] == "OpenXML"
    assert "analysis" not in reply[1] and reply[1]["macros"] == []
    assert return_code(reply) == 0


def test_a_file_no_parser_knows_is_an_open_error_in_second_place() -> None:
    reply = analyse(b"\x00\x01\x02binary" * 100)
    # Rspamd's scanner reads the message of an open error from the second item.
    assert reply[1]["type"] == "error" and reply[1]["message"]
    assert return_code(reply) == 5


def test_the_request_header_is_olefy_or_refused() -> None:
    assert parse_request(b"OLEFY/1.0\nMethod: oletools\nRspamd-ID: abc\n\n")["rspamd-id"] == "abc"
    for bad in (b"GET / HTTP/1.0\n\n", b"OLEFY/1.0\nMethod: other\n\n", b"OLEFY/1.0\nnonsense\n\n"):
        with pytest.raises(ValueError):
            parse_request(bad)


# -- the server over a real socket, with real worker processes ------------------------------
class Running:
    """An olefy server on a temporary socket, in a thread of its own event loop."""

    def __init__(self, path: Path, timeout: float = 20.0, workers: int = 2) -> None:
        self.path = path
        self.loop = asyncio.new_event_loop()
        self.pool = WorkerPool(worker_command(), size=workers, timeout=timeout)
        self.ready = asyncio.Event()

    async def _serve(self) -> None:
        await self.pool.start()
        server = OlefyServer(self.pool)
        self.listener = await asyncio.start_unix_server(server.handle, path=str(self.path))
        self.ready.set()

    def ask(self, data: bytes, half_close: bool = True) -> list[Any]:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(60)
            client.connect(str(self.path))
            try:
                client.sendall(data)
            except BrokenPipeError:
                half_close = False  # the server answered before reading it all
            if half_close:
                client.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := client.recv(8192):
                answer += chunk
        assert answer.endswith(STOP_WORD), answer[-200:]
        reply = json.loads(answer[: -len(STOP_WORD)])
        assert isinstance(reply, list)
        return reply


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[Running]:
    yield from _running(Running(tmp_path / "olefy.sock"))


def _running(running: Running) -> Iterator[Running]:
    import threading

    thread = threading.Thread(target=running.loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(running._serve(), running.loop).result(30)
    try:
        yield running
    finally:
        asyncio.run_coroutine_threadsafe(running.pool.close(), running.loop).result(30)
        running.loop.call_soon_threadsafe(running.loop.stop)
        thread.join(10)


def test_the_server_answers_rspamds_request_with_the_verdict_and_the_stop_word(
    server: Running,
) -> None:
    dangerous = server.ask(request(dangerous_macro()))
    assert "mraptor A AutoOpen" in keywords(dangerous)
    clean = server.ask(request(clean_docx()))
    assert clean[1]["macros"] == [] and return_code(clean) == 0


def test_bad_requests_get_error_replies_and_the_server_goes_on(server: Running) -> None:
    for bad in (b"HELLO\n\n", b"OLEFY/1.0\nMethod: oletools", b"\xff\xfe\n\n" + b"x" * 100):
        reply = server.ask(bad)
        assert reply[1]["type"] == "error", reply
        assert return_code(reply) == 8
    # A connection that sends nothing (the runner's readiness probe) gets nothing.
    with socket.socket(socket.AF_UNIX) as probe:
        probe.settimeout(10)
        probe.connect(str(server.path))
        probe.shutdown(socket.SHUT_WR)
        assert probe.recv(100) == b""
    assert return_code(server.ask(request(b"\x00garbage" * 80))) == 5
    assert "mraptor A AutoOpen" in keywords(server.ask(request(dangerous_macro())))


def test_too_large_a_document_is_refused_without_parsing(server: Running) -> None:
    reply = server.ask(request(b"A" * (4 * 1024 * 1024)))
    assert reply[1]["error"] == "BadRequest" and "larger" in reply[1]["message"]


def test_a_worker_that_overruns_is_replaced_and_the_next_document_is_scanned(
    tmp_path: Path,
) -> None:
    for running in _running(Running(tmp_path / "slow.sock", timeout=0.001, workers=1)):
        reply = running.ask(request(dangerous_macro()))
        assert reply[1]["error"] == "ScanFailed" and return_code(reply) == 8
        running.pool.timeout = 20.0
        assert "mraptor A AutoOpen" in keywords(running.ask(request(dangerous_macro())))


def test_a_worker_that_dies_costs_one_error_reply(server: Running) -> None:
    assert return_code(server.ask(request(benign_macro()))) == 0
    for worker in list(server.pool._all):
        worker.kill()
    time.sleep(0.2)
    replies = [server.ask(request(benign_macro())) for _ in range(4)]
    assert any(reply[1].get("error") == "ScanFailed" for reply in replies)
    assert return_code(replies[-1]) == 0 and replies[-1][1]["macros"]


def test_a_worker_survives_what_the_parsers_throw(tmp_path: Path) -> None:
    # Truncated and corrupted containers: each gets a reply, the worker stays.
    docx = clean_docx()
    samples = [docx[:300], docx[:-40], b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600]
    frames = b"".join(len(sample).to_bytes(4, "big") + sample for sample in samples)
    result = subprocess.run(worker_command(), input=frames, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out, replies = result.stdout, []
    while out:
        length = int.from_bytes(out[:4], "big")
        replies.append(json.loads(out[4 : 4 + length]))
        out = out[4 + length :]
    assert len(replies) == len(samples)
    assert all(isinstance(reply, list) and "return_code" in reply[-1] for reply in replies)


# -- the service and Rspamd's rules -----------------------------------------------------------
@pytest.fixture()
def root() -> Iterator[Path]:
    with roost_root() as path:
        yield path


def layout_for(root: Path, **values: object) -> Layout:
    return Layout(make_settings(root, ADDRESS, **values))


def test_the_scanner_runs_only_with_scan_macros_and_before_rspamd(root: Path) -> None:
    names = [s.name for s in enabled_services(layout_for(root), registry=SERVICES)]
    assert "oletools" not in names
    layout = layout_for(root, SCAN_MACROS=True)
    names = [s.name for s in enabled_services(layout, registry=SERVICES)]
    assert names.index("oletools") < names.index("rspamd")
    command = OletoolsService(layout).command()
    assert command[0].endswith("setpriv") and "--reuid=nobody" in command
    assert "--no-new-privs" in command and "--clear-groups" in command


def test_rspamd_rules_for_macros_are_rendered_only_when_asked(root: Path) -> None:
    off = RspamdService(layout_for(root))
    off.render()
    assert "oletools {" not in (off.local_d / "external_services.conf").read_text()
    assert "OLETOOLS" not in (off.local_d / "force_actions.conf").read_text()
    assert "OLETOOLS" not in (off.local_d / "composites.conf").read_text()
    layout = layout_for(root, SCAN_MACROS=True)
    on = RspamdService(layout)
    on.render()  # rspamadm configtest runs here
    services = (on.local_d / "external_services.conf").read_text()
    assert f'servers = "{layout.oletools_socket}";' in services
    assert "extended = true;" in services and "max_size = 3145728;" in services
    assert 'slk = "slk";' in services and 'docm = "docm";' in services
    actions = (on.local_d / "force_actions.conf").read_text()
    assert 'message = "Rejected (dangerous macro detected)";' in actions
    assert 'expression = "OLETOOLS_FAIL";' in actions
    composites = (on.local_d / "composites.conf").read_text()
    assert "OLETOOLS_MACRO_MRAPTOR {" in composites and "score = 20.0;" in composites
    both = RspamdService(layout_for(root, SCAN_MACROS=True, ANTIVIRUS="clamav"))
    both.render()
    text = (both.local_d / "force_actions.conf").read_text()
    assert 'expression = "CLAM_VIRUS_FAIL | OLETOOLS_FAIL";' in text


@pytest.mark.skipif(os.geteuid() != 0, reason="the scanner switches to nobody")
def test_the_scanner_runs_as_nobody_for_rspamds_group_only(root: Path) -> None:
    layout = layout_for(root, SCAN_MACROS=True)
    service = OletoolsService(layout)
    service.render()
    process = subprocess.Popen(service.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    path = layout.oletools_socket
    try:
        deadline = time.monotonic() + 30
        while not path.exists():
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "the scanner did not start"
            time.sleep(0.1)
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        assert path.stat().st_gid == grp.getgrnam("_rspamd").gr_gid
        status = Path(f"/proc/{process.pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1:] == [str(pwd.getpwnam("nobody").pw_uid)] * 4
        assert "NoNewPrivs:\t1" in status
        script = (
            "import socket, sys\n"
            "s = socket.socket(socket.AF_UNIX); s.settimeout(30)\n"
            f"s.connect({str(path)!r})\n"
            f"s.sendall({request(dangerous_macro())!r}); s.shutdown(socket.SHUT_WR)\n"
            "data = b''\n"
            "while chunk := s.recv(8192): data += chunk\n"
            "sys.stdout.write(data.decode())\n"
        )
        for user, allowed in (("_rspamd", True), ("www-data", False)):
            probe = subprocess.run(
                ["runuser", "-u", user, "--", sys.executable, "-I", "-c", script],
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
            )
            assert (probe.returncode == 0) is allowed, (user, probe.stderr)
            if allowed:
                assert "mraptor A AutoOpen" in probe.stdout
    finally:
        process.terminate()
        process.wait(15)
