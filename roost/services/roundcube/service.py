"""Roundcube (``WEBMAIL=roundcube``): Debian's Roundcube on php-fpm under WEB_WEBMAIL.

php-fpm's master runs in the foreground as root, as Debian runs it (it writes to the
runner's stderr, which only root may reopen); its workers, which run Roundcube, are the
system user ``_roundcube`` (made here on first use). Its one pool listens on a Unix socket in a
directory ``0750 _roundcube:www-data``, so only nginx's workers reach it
(``webmail.conf.j2``). Roundcube reads only the configuration rendered in
``ROOT/etc/roundcube`` (``ROUNDCUBE_CONFIG_DIR``), and keeps its temporary files (and its
SQLite database, when that is its flavour) in ``ROOT/webmail``, ``0700`` of its user. Its
database is made ready before php-fpm starts (``database.py``).
"""

from __future__ import annotations

import base64
import grp
import hashlib
import hmac
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roost import tls
from roost.layout import NGINX_USER
from roost.services.base import (
    SYSTEM_PATH,
    Readiness,
    Service,
    ServiceConfigError,
    ensure_system_user,
    template_environment,
    write_file,
)
from roost.services.roundcube.database import Database, choose, php_quoted, prepare
from roost.settings import Settings

__all__ = ["DEBIAN_CONFIG", "PUBLIC_HTML", "USER", "RoundcubeService", "webmail_enabled"]

_TEMPLATES = template_environment(__file__)

#: The system user php-fpm runs as; it owns ``ROOT/webmail`` and nothing else.
USER = "_roundcube"
#: Debian's Roundcube: the files nginx serves and the defaults Roundcube reads first.
PUBLIC_HTML = Path("/var/lib/roundcube/public_html")
DEBIAN_CONFIG = Path("/etc/roundcube")
_PHP_FPM = "php-fpm8.2"
SIEVE_PORT = 4190


def webmail_enabled(settings: Settings) -> bool:
    return bool(settings.webmail_path)


def des_key(secret_key: str) -> str:
    """Roundcube's 24-character ``des_key`` (it encrypts session data), derived from
    SECRET_KEY so that no default key ships and restarts keep sessions valid."""
    digest = hmac.new(secret_key.encode(), b"roost roundcube des_key", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()[:24]


def _endpoint(settings: Settings, tls_on: bool, implicit: int, starttls: int) -> str:
    """Roundcube's URL for one of Roost's listeners: implicit TLS when PORTS opens it,
    else STARTTLS (plain under TLS_FLAVOR=notls)."""
    if tls_on and implicit in settings.PORTS:
        return f"ssl://{{address}}:{implicit}"
    if starttls in settings.PORTS:
        return f"{'tls://' if tls_on else ''}{{address}}:{starttls}"
    raise ServiceConfigError(
        f"WEBMAIL=roundcube reads and sends mail through Roost's own listeners: add "
        f"{implicit} or {starttls} to PORTS"
    )


@dataclass
class RoundcubeService(Service):
    name: str = field(init=False, default="roundcube")

    @classmethod
    def enabled(cls, settings: Settings) -> bool:
        return webmail_enabled(settings)

    @property
    def database(self) -> Database:
        return choose(self.layout.settings, self.layout.webmail / "roundcube.db")

    @property
    def fpm_conf(self) -> Path:
        return self.etc / "php-fpm.conf"

    def context(self) -> dict[str, Any]:
        settings = self.layout.settings
        address = self.layout.listen_addresses()[0]
        limit = settings.MESSAGE_SIZE_LIMIT
        pair = tls.served_pair(self.layout)
        # TLS to Roost's own Dovecot and Postfix, checking the name they serve; the served
        # certificate is trusted as itself (self-signed under TLS_FLAVOR=cert).
        imap = _endpoint(settings, pair is not None, 993, 143).format(address=address)
        smtp = _endpoint(settings, pair is not None, 465, 587).format(address=address)
        return {
            "user": USER,
            "nginx_group": NGINX_USER,
            "socket": self.layout.roundcube_socket,
            "config_dir": self.etc,
            "data": self.layout.webmail,
            "temp": self.layout.webmail / "temp",
            "db_dsnw": php_quoted(self.database.dsn),
            "imap_host": imap,
            "smtp_host": smtp,
            # Filters through Dovecot's ManageSieve (RFC 5804) when PORTS opens it.
            "managesieve_host": (
                f"{'tls://' if pair else ''}{address}" if SIEVE_PORT in settings.PORTS else None
            ),
            "sieve_port": SIEVE_PORT,
            "peer_name": settings.HOSTNAMES[0] if pair else None,
            "cafile": pair.cert_file if pair else None,
            "des_key": des_key(settings.SECRET_KEY),
            "path": settings.webmail_path,
            "upload_max": f"{max(limit, 10_000_000) // 1_000_000}M",
            "log_level": "notice" if settings.LOG_LEVEL != "DEBUG" else "debug",
        }

    def render(self) -> None:
        account = ensure_system_user(USER, "Roost webmail (Roundcube)")
        try:
            nginx_gid = grp.getgrnam(NGINX_USER).gr_gid
        except KeyError:
            raise ServiceConfigError(
                f"group {NGINX_USER!r} does not exist; install the Debian package nginx"
            ) from None
        if not (DEBIAN_CONFIG / "defaults.inc.php").is_file():
            raise ServiceConfigError(
                "WEBMAIL=roundcube needs Debian's Roundcube; install the packages "
                "roundcube-core, roundcube-sqlite3, roundcube-plugins and php-fpm"
            )
        context = self.context()
        for directory in (self.layout.webmail, context["temp"]):
            directory.mkdir(parents=True, exist_ok=True)
            os.chown(directory, account.pw_uid, account.pw_gid)
            directory.chmod(0o700)
        run = self.layout.roundcube_socket.parent
        run.mkdir(parents=True, exist_ok=True)
        os.chown(run, account.pw_uid, nginx_gid)
        run.chmod(0o750)
        self.layout.roundcube_socket.unlink(missing_ok=True)
        self.etc.mkdir(parents=True, exist_ok=True)
        for name in ("defaults.inc.php", "mimetypes.php"):
            link = self.etc / name
            link.unlink(missing_ok=True)
            link.symlink_to(DEBIAN_CONFIG / name)
        write_file(self.fpm_conf, _TEMPLATES.get_template("php-fpm.conf.j2").render(context))
        # The config holds des_key: readable by php-fpm's user only.
        config = self.etc / "config.inc.php"
        write_file(config, _TEMPLATES.get_template("config.inc.php.j2").render(context), 0o640)
        os.chown(config, 0, account.pw_gid)
        prepare(self.database, self.etc, USER)

    def command(self) -> list[str]:
        fpm = shutil.which(_PHP_FPM, path=SYSTEM_PATH)
        if fpm is None:
            raise ServiceConfigError(f"{_PHP_FPM} is not installed; install the package php-fpm")
        return [fpm, "--nodaemonize", f"--fpm-config={self.fpm_conf}"]

    def readiness(self) -> Readiness:
        return Readiness(unix_sockets=(self.layout.roundcube_socket,))
