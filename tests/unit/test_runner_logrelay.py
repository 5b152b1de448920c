"""The log relay with real pipes and real writer processes: whole lines, each behind its
prefix, nothing lost, nothing doubled, whatever the writes look like."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from roost.runner.logrelay import CHUNK, Relay, open_pipe


async def _relay(writers: dict[str, str], written: Path | None = None) -> list[bytes]:
    """Run each ``python -c`` writer with its output on a relayed pipe; the blocks the
    relay wrote. ``written``: once this file exists, close the pipes at once (without
    letting the event loop read them) instead of waiting for their end."""
    blocks: list[bytes] = []
    relay = Relay(blocks.append)
    pipes = []
    processes = []
    for prefix, code in writers.items():
        read, write = open_pipe()
        processes.append(
            subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=write)
        )
        os.close(write)
        pipes.append(relay.open(read, prefix))
    if written is None:
        await asyncio.wait_for(asyncio.gather(*(pipe.done for pipe in pipes)), 30)
    else:
        deadline = time.monotonic() + 30
        while not written.exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # blocking: the loop must not read the pipe meanwhile
        for pipe in pipes:
            pipe.close()
    relay.flush()
    for process in processes:
        process.kill()
        process.wait()
    return blocks


def test_many_writers_lines_arrive_whole_in_order_behind_their_prefix() -> None:
    # One write(2) per line, and also lines split across writes at odd places; for about
    # two seconds, at well over BUSY lines a second in all, so that the relay holds the
    # pipes for a while (and reads them as they come before that).
    code = """
        import os, time
        for n in range(3000):
            line = f"line {n} " + "x" * (n % 200) + "\\n"
            if n % 3:
                os.write(1, line.encode())
            else:
                os.write(1, line[:5].encode()); os.write(1, line[5:].encode())
            if n % 4 == 0:
                time.sleep(0.003)
    """
    blocks = asyncio.run(_relay({f"w{n} | ": code for n in range(4)}))
    output = b"".join(blocks).decode()
    assert output.endswith("\n")
    lines = output[:-1].split("\n")
    assert len(lines) == 4 * 3000
    for n in range(4):
        own = [line[len("w0 | ") :] for line in lines if line.startswith(f"w{n} | ")]
        assert own == [f"line {k} " + "x" * (k % 200) for k in range(3000)]


def test_bad_utf8_carriage_returns_long_and_unfinished_lines(tmp_path: Path) -> None:
    written = tmp_path / "written"
    code = f"""
        import os, time
        os.write(1, b"caf\\xc3\\xa9 ok\\r\\n")
        os.write(1, b"broken \\xff\\xfe byte\\n")
        os.write(1, b"y" * ({CHUNK} * 2 + 10))
        open({str(written)!r}, "w").close()
        time.sleep(60)
    """
    output = b"".join(asyncio.run(_relay({"p | ": code}, written))).decode("utf-8")
    assert output.split("\n") == [
        "p | café ok",
        "p | broken \ufffd\ufffd byte",
        "p | " + "y" * CHUNK,
        "p | " + "y" * CHUNK,
        "p | " + "y" * 10,
        "",
    ]


def test_closing_a_pipe_still_relays_what_it_holds(tmp_path: Path) -> None:
    # The writer keeps the pipe open (as a daemon's orphaned worker would): the runner
    # stopping closes it, and the lines in it that it had not read yet are not lost.
    written = tmp_path / "written"
    code = f"""
        import os, time
        os.write(1, b"".join(b"held %d\\n" % n for n in range(500)))
        open({str(written)!r}, "w").close()
        time.sleep(60)
    """
    output = b"".join(asyncio.run(_relay({"q | ": code}, written))).decode()
    assert output == "".join(f"q | held {n}\n" for n in range(500))
