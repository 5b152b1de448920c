"""Postfix's own tools (postconf, postmap, postfix check) driven for a private instance.

Every check here is delegated to Postfix itself, so Roost accepts exactly what Postfix
accepts; what Roost adds is turning Postfix's messages into one ServiceConfigError that
names the user's override file and line instead of the generated file.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

from roost.services.base import ServiceConfigError

POSTFIX = "postfix"
POSTCONF = "postconf"
POSTMAP = "postmap"
POSTQUEUE = "postqueue"

_PARAMETER_LINE = re.compile(r"^\s*([A-Za-z0-9_]+)\s*=(.*)$")
_SERVICE_LINE = re.compile(r"^\s*([^\s/=]+)/([a-z-]+)\s*=\s*\S")
_OPTION = re.compile(r"-o\s+\{?\s*([A-Za-z0-9_]+)\s*=")
_UNUSED = re.compile(r"unused parameter: ([A-Za-z0-9_]+)=")


def run(
    args: list[str], timeout: float = 120, umask: int = -1, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one Postfix tool and return its result; a missing tool is a clear error.

    ``umask`` (when not -1) is the tool's umask, so files it creates have their final mode
    from the first byte. ``stdin`` is written to its standard input.
    """
    try:
        return subprocess.run(
            args,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            umask=umask,
        )
    except FileNotFoundError:
        raise ServiceConfigError(
            f"{args[0]}: not found; install the Debian packages postfix and postfix-lmdb"
        ) from None


def run_on_terminal(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a Postfix command with a pseudo-terminal as stderr, and return what it said.

    Commands such as ``postfix check`` report problems only through the logging system
    (here maillog_file, i.e. the stdout of a postlogd that is not running yet) and copy
    them to stderr only when stderr is a terminal (msg_vstream), so a pty is the way to
    see why a check failed. The answer's ``stderr`` holds the terminal's text.
    """
    controller, terminal = pty.openpty()
    try:
        try:
            process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal
            )
        except FileNotFoundError:
            raise ServiceConfigError(
                f"{args[0]}: not found; install the Debian packages postfix and postfix-lmdb"
            ) from None
        os.close(terminal)
        terminal = -1
        said = bytearray()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not chunk:
                    break
                said += chunk
            elif process.poll() is not None:
                break
        try:
            stdout, _ = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, _ = process.communicate()
        return subprocess.CompletedProcess(
            args,
            process.returncode,
            stdout.decode(errors="replace"),
            said.decode(errors="replace").replace("\r\n", "\n"),
        )
    finally:
        if terminal >= 0:
            os.close(terminal)
        os.close(controller)


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return "\n".join(part.strip() for part in (result.stderr, result.stdout) if part.strip())


def postconf(directory: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    """``postconf -c directory ...``; a failure becomes ServiceConfigError."""
    result = run([POSTCONF, "-c", str(directory), *args])
    if result.returncode != 0:
        raise ServiceConfigError(f"postconf -c {directory} {' '.join(args)}: {_output(result)}")
    return result


def settle(etc: Path) -> None:
    """Date main.cf and master.cf a little in the past.

    Postfix programs re-read a main.cf changed within the last second or two until it
    stops changing (they pause 0.3 s per attempt), in case an editor is still writing
    it: right after a render every Postfix command would wait about 2 s. Roost writes
    these files whole (rename or postconf -e), so there is nothing to wait for.
    """
    past = time.time() - 10
    for name in ("main.cf", "master.cf"):
        if (etc / name).exists():
            os.utime(etc / name, (past, past))


def default_config_directory() -> Path:
    """The compiled-in configuration directory (``/etc/postfix`` on Debian)."""
    result = run([POSTCONF, "-dh", "config_directory"])
    if result.returncode != 0:
        raise ServiceConfigError(f"postconf -dh config_directory: {_output(result)}")
    return Path(result.stdout.strip())


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically, every byte of it only ever readable as ``mode``.

    The temporary file is created with ``mode`` by open(2) itself (O_EXCL, after removing
    a leftover), so a secret such as RELAYPASSWORD is never in a file others may read,
    not even between a write and a chmod. fchmod only adds back what the umask took.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def compile_map(etc: Path, source: Path, shown_as: Path, mode: int = 0o644) -> None:
    """Compile ``source`` into ``source.lmdb`` with postmap and remove the text.

    postmap only warns about a malformed line and carries on without it; a table that
    silently lost entries is worse than a refusal to start, so any warning is an error.
    Messages name ``shown_as`` (the user's file) instead of the copy under etc. postmap
    runs with the umask that gives ``mode``, so the compiled map (which holds the same
    secrets as its source) is created private rather than narrowed afterwards; postmap
    narrows its umask further to its source's mode (postmap(1)).
    """
    result = run([POSTMAP, "-c", str(etc), f"lmdb:{source}"], umask=0o777 & ~mode)
    messages = [
        line.replace(str(source), str(shown_as)).strip()
        for line in _output(result).splitlines()
        if line.strip()
    ]
    if result.returncode != 0 or messages:
        raise ServiceConfigError(f"{shown_as}: postmap refused it: " + "; ".join(messages))
    compiled = source.with_name(source.name + ".lmdb")
    os.chmod(compiled, mode)  # only ever widens: the umask already kept others out
    source.unlink()


def _override_lines(path: Path) -> list[tuple[int, str]]:
    """Mailu's override format: every non-empty line not starting with ``#``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ServiceConfigError(f"{path}: cannot be read ({exc})") from None
    return [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.strip().startswith("#")
    ]


def apply_override_files(etc: Path, overrides: Path) -> dict[str, str]:
    """Apply ``overrides/postfix``: ``*.map``, then ``postfix.cf``, then ``postfix.master``.

    Returns, for every parameter an override sets, where it was set ("file, line N"),
    so that later checks can point at the user's line.
    """
    origins: dict[str, str] = {}
    if not overrides.is_dir():
        return origins
    for source in sorted(overrides.glob("*.map")):
        if not source.is_file():
            continue
        copy = etc / source.name
        # A map the user keeps private (credentials, say) stays private, copied and compiled.
        mode = 0o600 if source.stat().st_mode & 0o077 == 0 else 0o644
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise ServiceConfigError(f"{source}: cannot be read ({exc})") from None
        write_private(copy, data, mode)
        compile_map(etc, copy, shown_as=source, mode=mode)

    main_overrides = overrides / "postfix.cf"
    if main_overrides.is_file():
        for number, line in _override_lines(main_overrides):
            where = f"{main_overrides}, line {number}"
            match = _PARAMETER_LINE.match(line)
            if not match:
                raise ServiceConfigError(f"{where}: expected 'name = value', got {line!r}")
            result = run([POSTCONF, "-c", str(etc), "-e", line])
            settle(etc)
            if result.returncode != 0:
                raise ServiceConfigError(f"{where}: postconf refused {line!r}: {_output(result)}")
            origins[match.group(1)] = where

    master_overrides = overrides / "postfix.master"
    if master_overrides.is_file():
        for number, line in _override_lines(master_overrides):
            where = f"{master_overrides}, line {number}"
            if not _SERVICE_LINE.match(line):
                raise ServiceConfigError(
                    f"{where}: expected 'service/type = entry' such as "
                    f"'smtp/inet = smtp inet n - n - - smtpd', got {line!r}"
                )
            result = run([POSTCONF, "-c", str(etc), "-Me", line])
            settle(etc)
            if result.returncode != 0:
                raise ServiceConfigError(f"{where}: postconf refused {line!r}: {_output(result)}")
            for name in _OPTION.findall(line):
                origins[name] = where
    return origins


def _locate(message: str, origins: dict[str, str]) -> str:
    """Prefix a Postfix message with the override line that set a parameter it names."""
    for name, where in origins.items():
        if re.search(rf"\b{re.escape(name)}\b", message):
            return f"{where}: {message}"
    return message


def check_instance(etc: Path, origins: dict[str, str]) -> None:
    """``postfix check`` and ``postconf -n`` on the finished instance.

    ``postfix check`` also creates the queue and data directories with the owners and
    modes Postfix wants (post-install create-missing), so it must run as root before
    every start. A parameter Postfix does not know is reported by postconf as "unused";
    from an override that is a typo Postfix would silently ignore, so it is an error.
    """
    result = run_on_terminal([POSTFIX, "-c", str(etc), "check"])
    if result.returncode != 0:
        problems = [
            _locate(line.strip(), origins)
            for line in _output(result).splitlines()
            if re.search(r"\b(fatal|error|panic):", line)
        ] or [_output(result) or f"exit status {result.returncode}"]
        raise ServiceConfigError(f"postfix -c {etc} check failed: " + "; ".join(problems))

    listing = postconf(etc, ["-n"])
    for line in listing.stderr.splitlines():
        match = _UNUSED.search(line)
        if match and match.group(1) in origins:
            raise ServiceConfigError(
                f"{origins[match.group(1)]}: Postfix has no parameter "
                f"{match.group(1)!r} (postconf: {line.strip()})"
            )
