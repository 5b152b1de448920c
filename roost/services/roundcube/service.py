"""Roundcube (``WEBMAIL=roundcube``): Debian's Roundcube on php-fpm under WEB_WEBMAIL.

php-fpm's master runs in the foreground as root, as Debian runs it (it writes to the
runner's stderr, which only root may reopen); its workers, which run Roundcube, are the
system user ``_roundcube`` (made here on first use). Its one pool listens on a Unix socket in a
directory ``0750 _roundcube:www-data``, so only nginx's workers reach it
(``webmail.conf.j2``). Roundcube reads only the configuration rendered in
``ROOT/etc/roundcube`` (``ROUNDCUBE_CONFIG_DIR``), and keeps its temporary files (and its
SQLite database, when that is its flavour) in ``ROOT/webmail``, ``0700`` of its user, with
the enigma plugin's GnuPG key rings in ``ROOT/webmail/gpg``. Its database is made ready
before php-fpm starts (``database.py``).

Debian's roundcube-plugins only suggests what two of Mailu's default plugins need:
zipdownload PHP's zip extension (php-zip), enigma the Crypt_GPG library (php-crypt-gpg)
and GnuPG. A start with such a plugin chosen and its package missing stops with the
package's name, rather than Roundcube failing only when the plugin is used.
"""

from __future__ import annotations

import base64
import grp
import hashlib
import hmac
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roost.layout import (
    NGINX_USER,
    WEBMAIL_IMAP_PORT,
    WEBMAIL_SIEVE_PORT,
    WEBMAIL_SUBMISSION_PORT,
)
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
DEBIAN_PLUGINS = Path("/usr/share/roundcube/plugins")
#: Roost's own plugin (single sign-on): its source beside this module.
PLUGIN = "roost"
_PLUGIN_SOURCE = Path(__file__).parent / "plugin" / PLUGIN
_PHP_FPM = "php-fpm8.2"
#: The enigma plugin's PGP library (Debian's php-crypt-gpg).
CRYPT_GPG = "/usr/share/php/Crypt/GPG.php"
#: GnuPG for the enigma plugin: Crypt_GPG runs gpg, which starts gpg-agent in the key
#: ring's directory (secret keys) and stops it with gpgconf at the end of each request.
#: php-fpm's open_basedir lets PHP see these three files and no other program.
GPG_PROGRAMS = {
    "binary": "/usr/bin/gpg",
    "agent": "/usr/bin/gpg-agent",
    "gpgconf": "/usr/bin/gpgconf",
}


def webmail_enabled(settings: Settings) -> bool:
    return bool(settings.webmail_path)


def des_key(secret_key: str) -> str:
    """Roundcube's 24-character ``des_key`` (it encrypts session data), derived from
    SECRET_KEY so that no default key ships and restarts keep sessions valid."""
    digest = hmac.new(secret_key.encode(), b"roost roundcube des_key", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()[:24]


def _host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _fpm_has_zip(fpm: str) -> bool:
    """Whether php-fpm loads PHP's zip extension (``php-fpm8.2 -m`` reads the ini files
    of the fpm SAPI, ``/etc/php/8.2/fpm/conf.d``, where php-zip's postinst enables it)."""
    modules = subprocess.run([fpm, "-m"], capture_output=True, text=True, timeout=30, check=False)
    return "zip" in modules.stdout.split()


def missing_packages(chosen: list[str], fpm: str) -> list[str]:
    """The Debian packages the chosen plugins need that are not installed."""
    missing = []
    if "zipdownload" in chosen and not _fpm_has_zip(fpm):
        missing.append("php-zip (zipdownload)")
    if "enigma" in chosen:
        if not Path(CRYPT_GPG).is_file():
            missing.append("php-crypt-gpg (enigma)")
        if not all(os.access(program, os.X_OK) for program in GPG_PROGRAMS.values()):
            missing.append("gpg and gpg-agent (enigma)")
    return missing


def plugins(settings: Settings, available: Path = DEBIAN_PLUGINS) -> list[str]:
    """Roost's own plugin, then ROUNDCUBE_PLUGINS, each of which Debian must ship."""
    chosen = [name for name in settings.ROUNDCUBE_PLUGINS if name != PLUGIN]
    missing = [name for name in chosen if not (available / name).is_dir()]
    if missing:
        raise ServiceConfigError(
            f"ROUNDCUBE_PLUGINS: no such Roundcube plugin in {available}: {', '.join(missing)}"
        )
    return [PLUGIN, *chosen]


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

    @property
    def gpg_home(self) -> Path:
        """The enigma plugin's key rings (``enigma_pgp_homedir``), one GnuPG home
        directory per user below it, made by the plugin; Mailu keeps them in its data
        volume too."""
        return self.layout.webmail / "gpg"

    @property
    def plugins_dir(self) -> Path:
        """Roundcube's plugin directory (RCUBE_PLUGINS_DIR, set by ``prepend.php``): links
        to Debian's plugins and a copy of Roost's own."""
        return self.etc / "plugins"

    def context(self) -> dict[str, Any]:
        settings = self.layout.settings
        internal = self.layout.internal_address
        limit = settings.MESSAGE_SIZE_LIMIT
        return {
            "user": USER,
            "nginx_group": NGINX_USER,
            "socket": self.layout.roundcube_socket,
            "config_dir": self.etc,
            "plugins_dir": self.plugins_dir,
            "prepend": self.etc / "prepend.php",
            "data": self.layout.webmail,
            "temp": self.layout.webmail / "temp",
            "gpg_home": self.gpg_home,
            "gpg": GPG_PROGRAMS,
            "db_dsnw": php_quoted(self.database.dsn),
            # The webmail's own listeners on the internal loopback address (no TLS there:
            # the connection never leaves the host), where the gate takes its tokens.
            "imap_host": _host_port(internal, WEBMAIL_IMAP_PORT),
            "smtp_host": _host_port(internal, WEBMAIL_SUBMISSION_PORT),
            # Filters through Dovecot's ManageSieve (RFC 5804); the managesieve plugin
            # takes the port from the host (its managesieve_port is no longer read).
            "managesieve_host": _host_port(internal, WEBMAIL_SIEVE_PORT),
            "bind_to": _host_port(internal, 0),
            "plugins": plugins(settings),
            # Roost's own password page instead of a password plugin.
            "password_url": f"{settings.WEB_ADMIN}/account" if settings.WEB_ADMIN else "",
            "des_key": des_key(settings.SECRET_KEY),
            "path": settings.webmail_path,
            "upload_max": f"{max(limit, 10_000_000) // 1_000_000}M",
            "log_level": "notice" if settings.LOG_LEVEL != "DEBUG" else "debug",
        }

    def _write_plugins(self) -> None:
        """Debian's plugins (links) and Roost's own (a copy, readable by php-fpm's user)."""
        if self.plugins_dir.exists():
            shutil.rmtree(self.plugins_dir)
        self.plugins_dir.mkdir(mode=0o755)
        for plugin in sorted(DEBIAN_PLUGINS.iterdir()):
            if plugin.name != PLUGIN:
                (self.plugins_dir / plugin.name).symlink_to(plugin)
        own = self.plugins_dir / PLUGIN
        own.mkdir(mode=0o755)
        for source in _PLUGIN_SOURCE.iterdir():
            write_file(own / source.name, source.read_text(), 0o644)

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
        fpm = self.command()[0]
        missing = missing_packages(context["plugins"], fpm)
        if missing:
            raise ServiceConfigError(
                f"ROUNDCUBE_PLUGINS: install the Debian packages {', '.join(missing)}, or "
                "leave those plugins out"
            )
        for directory in (self.layout.webmail, context["temp"], self.gpg_home):
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
        self._write_plugins()
        write_file(context["prepend"], _TEMPLATES.get_template("prepend.php.j2").render(context))
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
