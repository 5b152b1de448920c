"""Rspamd: the spam filter every message passes through (Postfix's milter).

Roost runs Debian's rspamd with Debian's module defaults (``/etc/rspamd``) and its own
top-level file, workers and ``local.d`` settings under ``ROOT/etc/rspamd``; its state
(statistics, caches) lives in ``ROOT/rspamd``. The master process binds the sockets as
root and runs its workers as Debian's ``_rspamd`` user. Postfix refuses mail with a 4xx
while Rspamd is not answering (main.cf ``milter_default_action = tempfail``), so nothing
is accepted unscanned and senders retry.

Overrides follow Mailu's rules (docs/overrides.md): ``overrides/rspamd/<name>`` is merged
into a ``local.d`` file Roost writes under the same name, and copied into ``local.d`` when
Roost writes no such file; ``overrides/rspamd/override.d/<name>`` replaces what Debian and
Roost set (Rspamd's override.d, https://rspamd.com/doc/faq.html#what-are-the-locald-and-overrided-directories).
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import re
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roost.core.spamhold import HoldRule
from roost.gate.holds import CHANNEL as VERDICT_CHANNEL
from roost.gate.rspamdpublish import KEYS_HASH as DKIM_KEYS_HASH
from roost.gate.rspamdpublish import local_domains_path, selector_map_path
from roost.layout import DNS_PORT, NGINX_USER, POSTFIX_FRONT_PORT
from roost.services.base import (
    Readiness,
    Service,
    ServiceConfigError,
    template_environment,
    write_file,
)

__all__ = ["RspamdService"]

log = logging.getLogger(__name__)

_TEMPLATES = template_environment(__file__)
_TEMPLATE_DIR = Path(__file__).parent / "templates"

RSPAMD = "rspamd"
RSPAMADM = "rspamadm"
USER = "_rspamd"
#: Postfix's smtpd processes run with this group; they alone (and root) open the milter.
POSTFIX_GROUP = "postfix"
#: Dovecot's mail processes run with this group; its learning scripts reach the controller.
MAIL_GROUP = "mail"
#: nginx's workers run with this group; they serve the controller's web interface.
NGINX_GROUP = NGINX_USER
#: The local.d files Roost writes; each merges the override of the same name.
GENERATED = (
    "options.inc",
    "redis.conf",
    "milter_headers.conf",
    "multimap.conf",
    "antivirus.conf",
    "force_actions.conf",
    "whitelist.conf",
    "fuzzy_check.conf",
    "dkim_signing.conf",
    "arc.conf",
    "dmarc.conf",
    "external_services.conf",
    "composites.conf",
    "groups.conf",
    "metadata_exporter.conf",
)
#: Lists Roost writes that an override of the same name replaces whole (Mailu's rule).
DEFAULT_MAPS = ("forbidden_file_extension.map",)
#: Files Roost writes into its own rspamd.conf: an override by these names has no effect.
NOT_OVERRIDABLE = frozenset({"logging.inc", "worker-proxy.inc", "worker-controller.inc"})
#: Proxy workers: each scans in its own process; two use both cores of a small host.
PROXY_COUNT = 2


def _account(name: str, lookup: Any, package: str) -> Any:
    try:
        return lookup(name)
    except KeyError:
        raise ServiceConfigError(
            f"{name!r} does not exist on this system; install the Debian package {package}"
        ) from None


def _nameserver(resolver: str | None) -> str | None:
    """Rspamd's ``dns.nameserver`` entry for DNS_RESOLVER, or None for the host's resolver.

    DNS blocklists answer only resolvers that ask them directly: Spamhaus, for one, refuses
    queries that come through large public resolvers, so Rspamd asks the same resolver as
    Postfix (Roost's Unbound by default), as Mailu's Rspamd asks Mailu's own resolver.
    """
    if resolver is None:
        return None
    host = f"[{resolver}]" if ":" in resolver else resolver
    return f"{host}:{DNS_PORT}"


@dataclass
class RspamdService(Service):
    """Renders rspamd.conf and local.d, applies overrides, checks with rspamadm."""

    name: str = field(init=False, default="rspamd")
    # Its statistics, greylisting and the DKIM keys the gate writes are in its own Redis;
    # with ANTIVIRUS=clamav it hands every part to clamd, with SCAN_MACROS Office
    # documents to the olefy server; its DNS questions go to Roost's resolver.
    after: Sequence[str] = field(
        init=False, default=("rspamd-redis", "clamav", "oletools", "unbound")
    )

    @property
    def conf(self) -> Path:
        return self.etc / "rspamd.conf"

    @property
    def local_d(self) -> Path:
        return self.etc / "local.d"

    @property
    def override_d(self) -> Path:
        return self.etc / "override.d"

    @property
    def state(self) -> Path:
        return self.layout.rspamd_data

    def _variables(self) -> list[str]:
        """Where Rspamd finds Roost's settings and keeps its state and pid file."""
        return [
            f"--var=LOCAL_CONFDIR={self.etc}",
            f"--var=DBDIR={self.state}",
            f"--var=RUNDIR={self.layout.rspamd_run}",
        ]

    def context(self) -> dict[str, Any]:
        settings = self.layout.settings
        return {
            "overrides": self.overrides,
            "local_confdir": self.etc,
            "local_d": self.local_d,
            "log_level": "info" if settings.LOG_LEVEL == "DEBUG" else "warning",
            "milter_socket": self.layout.rspamd_milter_socket,
            "controller_socket": self.layout.rspamd_controller_socket,
            "learn_socket": self.layout.rspamd_learn_socket,
            "web_socket": self.layout.rspamd_web_socket,
            "nginx_group": NGINX_GROUP,
            "mail_group": MAIL_GROUP,
            "user": USER,
            "postfix_group": POSTFIX_GROUP,
            "proxy_count": PROXY_COUNT,
            "controller_password": secrets.token_hex(24),
            "redis_socket": self.layout.rspamd_redis_socket,
            "clamav": settings.ANTIVIRUS == "clamav",
            "clamd_socket": self.layout.clamd_socket,
            # What clamd takes in one stream (its StreamMaxLength, clamav service).
            "clamd_max": max(settings.MESSAGE_SIZE_LIMIT, 25 * 1024 * 1024),
            "antivirus_action": settings.ANTIVIRUS_ACTION,
            "macros": settings.SCAN_MACROS,
            "oletools_socket": self.layout.oletools_socket,
            # The DKIM keys the gate writes (roost/gate/rspamdpublish.py).
            "keys_hash": DKIM_KEYS_HASH,
            "selector": settings.DKIM_SELECTOR,
            "selector_map": selector_map_path(settings),
            "local_domains_map": local_domains_path(settings),
            # Mail from here was sent by us or our relays (Mailu: SUBNET): loopback (every
            # internal hop) and mynetworks.
            "local_networks": ", ".join(
                f'"{network}"'
                for network in dict.fromkeys(("127.0.0.0/8", "::1/128", *settings.mynetworks))
            ),
            "local_addrs": ", ".join(f'"{network}"' for network in settings.mynetworks),
            "nameserver": _nameserver(self.layout.validating_resolver),
            # DMARC aggregate reports (DMARC_SEND_REPORTS), sent through Postfix's front
            # listener from 127.0.0.1 (mynetworks), so Rspamd signs them as local mail.
            "reporting": settings.DMARC_SEND_REPORTS,
            "report_email": settings.postmaster_address,
            "report_domain": settings.DOMAIN,
            "report_org": settings.SITENAME.replace("\\", "").replace('"', ""),
            "report_helo": settings.hostname,
            "report_smtp": self.layout.internal_address,
            "report_smtp_port": POSTFIX_FRONT_PORT,
            # Verdicts on submitted mail, for the gate's held senders (roost/gate/holds.py).
            "hold": HoldRule.parse(settings.SPAM_HOLD_RATE, settings.SPAM_HOLD_RATIO).enabled,
            "channel": VERDICT_CHANNEL,
        }

    # -- the Service interface -----------------------------------------------------------
    def render(self) -> None:
        """Write the configuration from nothing, apply overrides, let rspamadm check it."""
        account = _account(USER, pwd.getpwnam, "rspamd")
        postfix_gid = _account(POSTFIX_GROUP, grp.getgrnam, "postfix").gr_gid
        mail_gid = _account(MAIL_GROUP, grp.getgrnam, "base-passwd").gr_gid
        nginx_gid = _account(NGINX_GROUP, grp.getgrnam, "base-passwd").gr_gid
        context = self.context()
        if self.etc.exists():
            shutil.rmtree(self.etc)
        # The top file holds the controller password: root and Rspamd's group only.
        write_file(self.conf, _TEMPLATES.get_template("rspamd.conf.j2").render(context), 0o640)
        os.chown(self.conf, 0, account.pw_gid)
        for name in GENERATED:
            template = _TEMPLATES.get_template(f"{name}.j2")
            write_file(self.local_d / name, template.render(context))
        for name in DEFAULT_MAPS:
            write_file(self.local_d / name, (_TEMPLATE_DIR / name).read_text(encoding="utf-8"))
        self.override_d.mkdir(parents=True, exist_ok=True)
        self._apply_overrides()
        self._prepare_directories(account, postfix_gid, mail_gid, nginx_gid)
        self.check()

    def command(self) -> list[str]:
        return [
            _binary(RSPAMD),
            "--no-fork",
            f"--user={USER}",
            f"--group={USER}",
            f"--config={self.conf}",
            *self._variables(),
        ]

    def readiness(self) -> Readiness:
        return Readiness(unix_sockets=(self.layout.rspamd_milter_socket,))

    # -- overrides and checks --------------------------------------------------------------
    def _apply_overrides(self) -> None:
        """Copy the override files Roost does not merge itself into local.d / override.d."""
        if not self.overrides.is_dir():
            return
        for source in sorted(self.overrides.iterdir()):
            if source.is_dir() and source.name == "override.d":
                for replacing in sorted(source.iterdir()):
                    if replacing.is_file():
                        _copy(replacing, self.override_d / replacing.name)
                continue
            if not source.is_file() or source.name in GENERATED:
                continue
            if source.name in NOT_OVERRIDABLE:
                log.warning(
                    "%s has no effect: Roost writes Rspamd's %s itself", source, source.name
                )
                continue
            _copy(source, self.local_d / source.name)

    def _prepare_directories(
        self, account: pwd.struct_passwd, postfix_gid: int, mail_gid: int, nginx_gid: int
    ) -> None:
        """State for ``_rspamd``; each socket directory open to its one client group."""
        self.state.mkdir(parents=True, exist_ok=True)
        os.chown(self.state, account.pw_uid, account.pw_gid)
        self.state.chmod(0o750)
        layout = self.layout
        for socket, gid in (
            (layout.rspamd_milter_socket, postfix_gid),
            (layout.rspamd_controller_socket, postfix_gid),
            (layout.rspamd_learn_socket, mail_gid),
            (layout.rspamd_web_socket, nginx_gid),
        ):
            socket.parent.mkdir(parents=True, exist_ok=True)
            os.chown(socket.parent, 0, gid)
            socket.parent.chmod(0o750)
            socket.unlink(missing_ok=True)

    def rspamadm_argv(self, *arguments: str) -> list[str]:
        """An ``rspamadm`` command that finds this stack's configuration, as Rspamd does
        (``roost dmarc-report`` runs ``dmarc_report`` with it)."""
        return [_binary(RSPAMADM), *self._variables(), *arguments]

    def check(self) -> None:
        """``rspamadm configtest``: a broken override stops the start with its message."""
        result = subprocess.run(
            [_binary(RSPAMADM), *self._variables(), "configtest", "-c", str(self.conf)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self.state,
        )
        if result.returncode != 0 or "syntax OK" not in result.stdout:
            raise ServiceConfigError(_explain(result.stdout + result.stderr, self.conf))


def _binary(name: str) -> str:
    path = shutil.which(name, path="/usr/bin:/usr/sbin:/bin:/sbin")
    if path is None:
        raise ServiceConfigError(f"{name} is not installed; install the Debian package rspamd")
    return path


def _copy(source: Path, target: Path) -> None:
    try:
        data = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ServiceConfigError(f"{source}: cannot be read ({exc})") from None
    write_file(target, data)


_NOISE = re.compile(r"address resolution for .* failed|cannot read servers definition")


def _explain(output: str, conf: Path) -> str:
    """rspamadm's complaint in one line that names the file (an override's, usually)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    problems = [line for line in lines if not _NOISE.search(line) and line != "syntax OK"]
    reason = "; ".join(problems) or "rspamadm configtest failed without a message"
    return f"Rspamd configuration {conf}: {reason}"
