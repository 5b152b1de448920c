"""Dovecot: IMAP, POP3, ManageSieve, LMTP delivery and SASL for Postfix.

Roost runs one private Dovecot per stack (``dovecot -F -c ROOT/etc/dovecot/dovecot.conf``)
with its own base_dir, state_dir and logs, so it never meets a system Dovecot or another
stack's. Dovecot decides nothing about users: a Lua passdb hands every login, password
included, to the gate over HTTP (the nginx auth_http header protocol), and a Lua userdb asks
the gate for the canonical name and quota of a user. Mail is stored as Maildir under
``ROOT/mail/<email>``, owned by the system ``mail`` user. The mail processes read each
user's "before" Sieve script from the gate and report mailbox sizes to it over Dovecot's
dict protocol (``layout.gate_dict``).
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roost import tls
from roost.core.sieve import SPAM_SCORE_MAX
from roost.layout import (
    MAIL_OWNER,
    POSTFIX_SIEVE_PORT,
    WEBMAIL_IMAP_PORT,
    WEBMAIL_SASL_SERVICE,
    WEBMAIL_SIEVE_PORT,
    WEBMAIL_SUBMISSION_PORT,
)
from roost.services.base import (
    Readiness,
    Service,
    ServiceConfigError,
    template_environment,
    write_file,
)

__all__ = ["DovecotService"]

#: The system user that owns every mailbox (Dovecot's mail_uid/mail_gid).
MAIL_USER = MAIL_OWNER
#: The system user Postfix runs as: the only one allowed on the LMTP and SASL sockets.
POSTFIX_USER = "postfix"
#: Debian's packaged Diffie-Hellman parameters (dovecot-core), used for DHE suites if present.
DEBIAN_DH_FILE = Path("/usr/share/dovecot/dh.pem")
#: How long the Lua passdb/userdb waits for the gate before a temporary failure. Generous
#: because a bcrypt check at CREDENTIAL_ROUNDS=13 alone takes a good part of a second.
GATE_TIMEOUT_MSECS = 5000

#: Public ports and the Dovecot listener each one configures.
LISTENER_PORTS = {"imap": 143, "imaps": 993, "pop3": 110, "pop3s": 995, "sieve": 4190}
#: Which listeners make a protocol worth starting.
PROTOCOL_LISTENERS = {"imap": ("imap", "imaps"), "pop3": ("pop3", "pop3s"), "sieve": ("sieve",)}

#: Characters a path may use inside Dovecot's configuration: ``%`` would be expanded as a
#: variable, ``:`` splits mail_location, spaces split passdb args.
_SAFE_PATH = re.compile(r"^[A-Za-z0-9._/+-]+$")
#: Longest Unix socket Dovecot creates under base_dir by default (``doveconf -d``).
_LONGEST_BASE_DIR_SOCKET = "token-login/imap-urlauth"
#: sun_path holds 108 bytes including the terminating NUL.
_SOCKET_PATH_MAX = 107
_DOVECONF_LOCATED_ERROR = re.compile(
    r"Error in configuration file (?P<file>.+?) line (?P<line>\d+): (?P<reason>.+)"
)
_DOVECONF_UNCLOSED_SECTION = re.compile(r"\(section started at (?P<file>.+):(?P<line>\d+)\)")

log = logging.getLogger(__name__)


def _lua_string(value: str) -> str:
    """Quote a value as a Lua string literal (a Jinja filter for the Lua template).

    Bytes outside printable ASCII, quotes and backslashes become Lua's decimal escapes.
    """
    return (
        '"'
        + "".join(
            chr(byte) if 0x20 <= byte < 0x7F and chr(byte) not in '"\\' else f"\\{byte:03d}"
            for byte in value.encode("utf-8")
        )
        + '"'
    )


def _find_binary(name: str) -> str:
    """Debian installs the daemon in /usr/sbin, which a non-root PATH may lack."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise ServiceConfigError(
            f"{name} not found: install Debian's dovecot-core (and dovecot-imapd, "
            "dovecot-pop3d, dovecot-lmtpd, dovecot-managesieved, dovecot-sieve, "
            "dovecot-auth-lua)"
        )
    return found


@dataclass
class DovecotService(Service):
    """Renders and describes the stack's Dovecot instance for the runner."""

    name: str = field(init=False, default="dovecot")
    #: The Lua passdb/userdb ask the gate; Postfix (after Dovecot) needs the two sockets.
    after: Sequence[str] = field(init=False, default=("gate",))

    # -- paths ---------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.etc / "dovecot.conf"

    @property
    def lua_file(self) -> Path:
        return self.etc / "auth.lua"

    @property
    def override_file(self) -> Path:
        """Mailu's layout: ``overrides/dovecot/dovecot.conf``, included last."""
        return self.overrides / "dovecot.conf"

    @property
    def volatile_dir(self) -> Path:
        """Per-user lock files (mail_volatile_dir) and compiled before scripts, kept out of
        the Maildirs."""
        return self.layout.run / "dovecot-volatile"

    @property
    def learn_dir(self) -> Path:
        """The IMAPSieve scripts that teach Rspamd, and the programs they may run."""
        return self.etc / "learn"

    @property
    def state_dir(self) -> Path:
        return self.layout.data / "dovecot"

    # -- the Service interface -----------------------------------------------------------
    def render(self) -> None:
        """Write dovecot.conf and the Lua script, prepare directories, check with doveconf.

        The check runs ``doveconf -n`` on the result, so a broken override file stops the
        start here with its file and line instead of a crash loop in the runner.
        """
        context = self._context()
        self._prepare_directories()
        env = template_environment(__file__)
        env.filters["lua_string"] = _lua_string
        write_file(self.lua_file, env.get_template("auth.lua.j2").render(context))
        write_file(self.config_file, env.get_template("dovecot.conf.j2").render(context))
        self.check()
        self._write_learning(env, context)

    def _write_learning(self, env: Any, context: dict[str, Any]) -> None:
        """The spam/ham scripts, compiled now (the mail user cannot write their
        directory), and the two programs they pipe to."""
        rspamc = shutil.which("rspamc", path="/usr/bin:/bin")
        if rspamc is None:
            raise ServiceConfigError("rspamc is not installed; install the Debian package rspamd")
        for verb in ("learn_spam", "learn_ham"):
            program = env.get_template("rspamd-learn.j2").render(
                rspamc=rspamc, learn_socket=self.layout.rspamd_learn_socket, verb=verb
            )
            write_file(self.learn_dir / f"rspamd-{verb.replace('_', '-')}", program, 0o755)
        for name in ("learn-spam.sieve", "learn-ham.sieve"):
            script = self.learn_dir / name
            write_file(script, env.get_template(f"{name}.j2").render(context))
            compiled = subprocess.run(
                [_find_binary("sievec"), "-c", str(self.config_file), str(script)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if compiled.returncode != 0:
                reason = (compiled.stderr or compiled.stdout).strip()
                raise ServiceConfigError(f"Sieve script {script} does not compile: {reason}")

    def command(self) -> list[str]:
        return [_find_binary("dovecot"), "-F", "-c", str(self.config_file)]

    def reload_command(self) -> list[str]:
        """``doveadm reload``: the master re-reads its configuration, which names the
        certificate file, and starts new login processes with it (doveadm(1))."""
        return [_find_binary("doveadm"), "-c", str(self.config_file), "reload"]

    def reload_on(self) -> frozenset[str]:
        return frozenset({tls.CERTIFICATE_CHANGED}) if self.layout.settings.tls else frozenset()

    def readiness(self) -> Readiness:
        """Ready when Postfix's two sockets exist and every enabled listener accepts."""
        tcp = tuple(
            (address, port)
            for port in self._enabled_ports().values()
            for address in self.layout.listen_addresses()
        )
        return Readiness(
            unix_sockets=(self.layout.lmtp_socket, self.layout.dovecot_auth_socket), tcp=tcp
        )

    # -- checks --------------------------------------------------------------------------
    def check(self) -> None:
        """Let doveconf parse the rendered configuration; explain what it refuses.

        Warnings (an override setting that an earlier protocol block shadows, say) do not
        stop the start but are logged, since they usually mean an override has no effect.
        """
        result = subprocess.run(
            [_find_binary("doveconf"), "-c", str(self.config_file), "-n"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise ServiceConfigError(self._explain_doveconf_error(result.stderr))
        for line in dict.fromkeys(result.stderr.splitlines()):
            if "Warning:" in line:
                log.warning("%s", line.split("Warning:", 1)[1].strip())

    def _explain_doveconf_error(self, stderr: str) -> str:
        """Turn doveconf's complaint into one line that names the file and line to fix."""
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        fatal = [line for line in lines if "Fatal:" in line]
        reason = (fatal or lines or ["doveconf failed without a message"])[0]
        reason = reason.split("Fatal:", 1)[-1].strip()
        located = _DOVECONF_LOCATED_ERROR.search(reason)
        if located is not None:
            path, line, why = located["file"], located["line"], located["reason"]
        else:
            # An unclosed section is reported against the main file, with the place the
            # section started: that is the line to fix.
            unclosed = _DOVECONF_UNCLOSED_SECTION.search(reason)
            if unclosed is None:
                return f"Dovecot configuration {self.config_file}: {reason}"
            path, line = unclosed["file"], unclosed["line"]
            why = f"section not closed with '}}' before the end of {path}"
        kind = "override" if Path(path) == self.override_file else "configuration"
        return f"Dovecot {kind} {path}, line {line}: {why}"

    # -- helpers -------------------------------------------------------------------------
    def _enabled_ports(self) -> dict[str, int]:
        settings = self.layout.settings
        return {name: port for name, port in LISTENER_PORTS.items() if settings.port_enabled(port)}

    def _protocols(self) -> list[str]:
        enabled = self._enabled_ports()
        webmail = bool(self.layout.settings.webmail_path)
        protocols = [
            protocol
            for protocol, listeners in PROTOCOL_LISTENERS.items()
            if any(listener in enabled for listener in listeners)
            or (webmail and protocol in ("imap", "sieve"))
        ]
        return [*protocols, "lmtp"]

    def _socket_name(self, socket: Path) -> str:
        """The listener name of a socket under base_dir.

        Dovecot already defines listeners named ``lmtp`` and ``auth-client`` in base_dir,
        where the layout puts Postfix's sockets; naming them relatively configures those
        listeners instead of adding a second listener on the same path.
        """
        try:
            return str(socket.relative_to(self.layout.dovecot_run))
        except ValueError:
            raise ServiceConfigError(
                f"{socket}: Dovecot's sockets must live under its base_dir "
                f"{self.layout.dovecot_run}"
            ) from None

    def _check_paths(self) -> None:
        layout = self.layout
        pair = tls.served_pair(layout)
        certificate = (pair.cert_file, pair.key_file) if pair else ()
        for path in (layout.root, *certificate):
            if not _SAFE_PATH.match(str(path)):
                raise ServiceConfigError(
                    f"{path}: Dovecot cannot use this path in its configuration; "
                    "use only letters, digits and . _ - + /"
                )
        longest = f"{layout.dovecot_run}/{_LONGEST_BASE_DIR_SOCKET}"
        if len(longest) > _SOCKET_PATH_MAX:
            raise ServiceConfigError(
                f"ROOT={layout.root}: too long for Dovecot's sockets ({longest} exceeds "
                f"{_SOCKET_PATH_MAX} characters); choose a shorter ROOT"
            )

    def _context(self) -> dict[str, Any]:
        layout, settings = self.layout, self.layout.settings
        self._check_paths()
        # The pair tls checked before any daemon starts; None under notls.
        pair = tls.served_pair(layout)
        try:
            mail = pwd.getpwnam(MAIL_USER)
            postfix = pwd.getpwnam(POSTFIX_USER)
        except KeyError as exc:
            raise ServiceConfigError(f"system user {exc.args[0]} is missing") from None
        ports = {name: 0 for name in LISTENER_PORTS} | self._enabled_ports()
        return {
            "base_dir": layout.dovecot_run,
            "state_dir": self.state_dir,
            "protocols": self._protocols(),
            "listen": layout.listen_addresses(),
            "hostname": settings.hostname,
            "postmaster_address": settings.postmaster_address,
            "tls": settings.tls,
            "cert_file": pair.cert_file if pair else None,
            "key_file": pair.key_file if pair else None,
            "tls_min_protocol": tls.policy.MIN_PROTOCOL,
            "strict_ciphers": tls.policy.CIPHERS,
            "dh_file": DEBIAN_DH_FILE if DEBIAN_DH_FILE.is_file() else None,
            "lua_file": self.lua_file,
            "userdb_file": layout.gate_userdb,
            "gate_url": layout.gate_http_url,
            "gate_secret_file": str(layout.gate_http_secret),
            "request_timeout_msecs": GATE_TIMEOUT_MSECS,
            "mail_root": layout.mail,
            "mail_user": mail.pw_name,
            "mail_group": grp.getgrgid(mail.pw_gid).gr_name,
            "mail_uid": mail.pw_uid,
            "mail_gid": mail.pw_gid,
            "recipient_delimiter": settings.RECIPIENT_DELIMITER,
            "submission_host": f"{layout.internal_address}:{POSTFIX_SIEVE_PORT}",
            "dict_socket": layout.gate_dict,
            "spam_score_max": SPAM_SCORE_MAX,
            "ports": ports,
            "webmail_smtp_service": WEBMAIL_SASL_SERVICE,
            "webmail_smtp_port": str(WEBMAIL_SUBMISSION_PORT),
            # WEBMAIL=roundcube: IMAP and ManageSieve for Roundcube alone, on the internal
            # address, where the gate takes its single sign-on tokens and nothing else.
            "webmail": (
                {
                    "address": layout.internal_address,
                    "imap": WEBMAIL_IMAP_PORT,
                    "sieve": WEBMAIL_SIEVE_PORT,
                }
                if settings.webmail_path
                else None
            ),
            # Listeners whose connections start with a PROXY header (PROXY_PROTOCOL).
            "haproxy": {
                name: settings.proxy_protocol(port) for name, port in LISTENER_PORTS.items()
            },
            "haproxy_trusted_networks": " ".join(settings.REAL_IP_FROM),
            "lmtp_listener": self._socket_name(layout.lmtp_socket),
            "auth_listener": self._socket_name(layout.dovecot_auth_socket),
            "postfix_user": postfix.pw_name,
            "postfix_group": grp.getgrgid(postfix.pw_gid).gr_name,
            "override_file": self.override_file,
            "learn_dir": self.learn_dir,
            "volatile_dir": self.volatile_dir,
        }

    def _prepare_directories(self) -> None:
        """Create what Dovecot expects to exist, with the owners it expects.

        The mail root belongs to the mail user, who creates each user's Maildir in it at
        first delivery or login; base_dir must be traversable by Dovecot's unprivileged
        login and mail processes.
        """
        layout = self.layout
        self.etc.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        layout.dovecot_run.mkdir(parents=True, exist_ok=True)
        os.chmod(layout.dovecot_run, 0o755)
        layout.mail.mkdir(parents=True, exist_ok=True)
        os.chmod(layout.mail, 0o700)
        self.volatile_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.volatile_dir, 0o700)
        if os.geteuid() == 0:
            mail = pwd.getpwnam(MAIL_USER)
            os.chown(layout.mail, mail.pw_uid, mail.pw_gid)
            os.chown(self.volatile_dir, mail.pw_uid, mail.pw_gid)
