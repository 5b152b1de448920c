"""The small interface every daemon module implements.

A service module knows one daemon's file formats and nothing else does: it renders the
daemon's complete configuration from settings (templates beside the module), applies the
user's overrides from ``ROOT/overrides/<service>``, and tells the runner how to start the
daemon in the foreground, how to tell that it is ready and how to make it reload. It also
says from the settings whether the stack runs it at all (:meth:`Service.enabled`): the
runner builds the stack from the classes in :mod:`roost.services.registry` that are
enabled, so a disabled daemon costs no process, listener or route.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

import roost
from roost.layout import Layout
from roost.settings import Settings


class ServiceConfigError(RuntimeError):
    """A configuration or override that cannot be used; the message names file and line."""


@dataclass(frozen=True)
class Readiness:
    """How the runner knows a daemon accepts work: a Unix socket or TCP port answers."""

    unix_sockets: tuple[Path, ...] = ()
    tcp: tuple[tuple[str, int], ...] = ()


@dataclass
class Service(ABC):
    """Base class: subclasses set ``name`` and implement ``render`` and ``command``."""

    layout: Layout
    name: str = field(init=False, default="")
    #: services that must be ready before this one starts; a name that is not in the
    #: stack (a disabled service) is ignored
    after: Sequence[str] = field(init=False, default=())

    @classmethod
    def enabled(cls, settings: Settings) -> bool:
        """Whether this stack runs the daemon; optional ones (a virus scanner, say) say no
        unless their setting asks for them."""
        return True

    @property
    def etc(self) -> Path:
        return self.layout.service_etc(self.name)

    @property
    def overrides(self) -> Path:
        return self.layout.overrides / self.name

    @abstractmethod
    def render(self) -> None:
        """Write the complete configuration under ``etc``; raise ServiceConfigError."""

    @abstractmethod
    def command(self) -> list[str]:
        """The foreground command the runner starts and supervises."""

    def readiness(self) -> Readiness:
        return Readiness()

    def stop_command(self) -> list[str] | None:
        """A command that stops the daemon cleanly, when SIGTERM alone is not enough."""
        return None

    def refresh_command(self) -> list[str] | None:
        """Run when a daemon this one waits for (``after``) is back after a restart.

        Postfix uses it to flush mail it deferred while Dovecot or the gate was down, so
        that mail does not wait for the next queue run minutes later.
        """
        return None

    def reload_command(self) -> list[str] | None:
        """The daemon's own way to re-read its configuration and files without a restart.

        The runner runs it when one of :meth:`reload_on` happens (a renewed certificate),
        so connections in progress are not cut. None: the daemon cannot reload.
        """
        return None

    def reload_on(self) -> frozenset[str]:
        """What makes the runner reload this daemon while it runs.

        Services that serve the certificate name ``roost.tls.CERTIFICATE_CHANGED``.
        """
        return frozenset()

    def environment(self) -> dict[str, str]:
        """Extra environment for the daemon's process."""
        return {}


def roost_environment(settings: Settings) -> dict[str, str]:
    """The environment of a process that runs Roost's own code (``python -m roost...``):
    every setting, and the import path of this very copy of Roost, so that it imports the
    code the runner runs, also from a source checkout that is not installed."""
    env = settings.to_environ()
    source = str(Path(roost.__file__).resolve().parent.parent)
    inherited = os.environ.get("PYTHONPATH", "")
    env["PYTHONPATH"] = f"{source}{os.pathsep}{inherited}" if inherited else source
    return env


def confined(user: str, group: str, argv: Sequence[str], groups: Sequence[str] = ()) -> list[str]:
    """``argv`` run as ``user:group`` with no other groups than ``groups``, no capabilities
    and no way to gain privileges (setpriv(1) from util-linux): for daemons that parse what
    strangers send (Office documents, MTA-STS policies, web requests) and need nothing of
    root's. The supplementary groups are named here, not taken from /etc/group, so what the
    process may open is decided by Roost alone."""
    setpriv = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")
    if setpriv is None:
        raise ServiceConfigError("setpriv is not installed; install the Debian package util-linux")
    return [
        setpriv,
        f"--reuid={user}",
        f"--regid={group}",
        f"--groups={','.join(groups)}" if groups else "--clear-groups",
        "--no-new-privs",
        "--bounding-set=-all",
        "--",
        *argv,
    ]


def template_environment(module_file: str) -> jinja2.Environment:
    """A Jinja environment over the ``templates`` folder beside a service module.

    StrictUndefined: a template that names a value the renderer did not pass is a bug,
    and must fail at render time, not produce an empty setting.
    """
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(module_file).parent / "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def write_file(path: Path, text: str, mode: int = 0o644) -> None:
    """Write atomically, so a daemon reloading never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, mode)
    os.replace(tmp, path)


SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def _useradd() -> str:
    path = shutil.which("useradd", path=SYSTEM_PATH)
    if path is None:
        raise ServiceConfigError("useradd is not installed; install the Debian package passwd")
    return path


def ensure_system_user(user: str, comment: str) -> pwd.struct_passwd:
    """``user``, created as a system user with its own group when it is missing, so that
    turning a service on (WEBDAV, WEBMAIL) needs no step beyond the setting."""
    try:
        return pwd.getpwnam(user)
    except KeyError:
        pass
    command = [
        _useradd(),
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        "--comment",
        comment,
        user,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    try:
        # Another stack starting at the same moment may have made it first.
        return pwd.getpwnam(user)
    except KeyError:
        raise ServiceConfigError(
            f"this service needs the system user {user}, which could not be created "
            f"({result.stderr.strip() or 'useradd failed'}); create it with: "
            f"useradd --system --user-group --no-create-home --shell /usr/sbin/nologin {user}"
        ) from None
