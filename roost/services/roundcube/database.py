"""Roundcube's database: which one (``db_dsnw``), and making it ready at every start.

Which one, with Mailu's settings: ROUNDCUBE_DB_FLAVOR when set (``sqlite``,
``postgresql``, ``mysql`` with ROUNDCUBE_DB_USER/PW/HOST/NAME), else
SQLALCHEMY_DATABASE_URI_ROUNDCUBE when set, else the flavour of Roost's own store
(DB_FLAVOR), on the same server (DB_HOST) unless ROUNDCUBE_DB_HOST names another. Roundcube
never gets the store's credentials: its user and database are its own.

Ready, as Mailu's webmail start does it: at every start Roundcube's own code, run as its
user, creates the tables in an empty database (``rcmail_utils::db_init`` with
``SQL/<driver>.initial.sql``: Debian ships no ``initdb.sh``), brings an older schema up to
the package's (``bin/updatedb.sh``, the ``SQL/<driver>/<version>.sql`` steps newer than
the ``roundcube-version`` row of its ``system`` table) and removes the rows users deleted
a week ago (``bin/cleandb.sh``). A database it cannot reach or log in to stops the start
with Roundcube's own error line; the password never appears in a message.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from roost.services.base import SYSTEM_PATH, ServiceConfigError, confined
from roost.settings import Settings
from roost.settings.parsers import MAILU_ROUNDCUBE_SQLITE, SettingsError, db_host

__all__ = ["Database", "choose", "php_quoted", "prepare"]

#: Debian's Roundcube: its schema files and command-line tools.
SQL_DIR = Path("/usr/share/roundcube/SQL")
BIN_DIR = Path("/usr/share/roundcube/bin")
_DRIVERS = {"postgresql": "pgsql", "mysql": "mysql"}
_PACKAGES = {"pgsql": "roundcube-pgsql", "mysql": "roundcube-mysql", "sqlite": "roundcube-sqlite3"}
#: Seconds to wait for the server before giving up (libpq's PGCONNECT_TIMEOUT, and PHP's
#: default_socket_timeout, which mysqlnd uses to connect).
CONNECT_TIMEOUT = 10
#: Creates the tables when there are none (Roundcube's own initdb.sh, which Debian leaves
#: out); ``users`` has been in every schema Roundcube ever had.
_INIT = (
    "define('INSTALL_PATH', '/var/lib/roundcube/');"
    "require INSTALL_PATH . 'program/include/clisetup.php';"
    "$db = rcmail_utils::db();"
    "if (!in_array($db->table_name('users'), (array) $db->list_tables()))"
    " rcmail_utils::db_init($argv[1]);"
)


@dataclass(frozen=True)
class Database:
    """Roundcube's ``db_dsnw``, what to call the database in messages, and its password
    (to keep out of them)."""

    dsn: str
    described: str
    #: the settings that name it, for the advice when it cannot be reached
    settings: str = ""
    password: str = ""

    @property
    def driver(self) -> str:
        return self.dsn.partition(":")[0]


def choose(settings: Settings, sqlite_file: Path) -> Database:
    """The database the settings give Roundcube (see the module's docstring)."""
    url = settings.SQLALCHEMY_DATABASE_URI_ROUNDCUBE
    flavor = settings.ROUNDCUBE_DB_FLAVOR
    if not flavor and url == MAILU_ROUNDCUBE_SQLITE:
        flavor = "sqlite"  # Mailu's default: SQLite in the webmail's own data
    elif not flavor and url:
        return _from_url(url)
    flavor = flavor or settings.DB_FLAVOR
    if flavor == "sqlite":
        # mode: the file is its user's alone (rcube_db_sqlite::dsn_connect chmods it).
        return Database(f"sqlite:///{sqlite_file}?mode=0600", f"SQLite file {sqlite_file}")
    host = settings.ROUNDCUBE_DB_HOST or settings.DB_HOST
    source = "ROUNDCUBE_DB_HOST" if settings.ROUNDCUBE_DB_HOST else "DB_HOST"
    try:
        db_host(source, host)
    except SettingsError as exc:
        raise ServiceConfigError(
            f"WEBMAIL=roundcube: {exc}; Roundcube needs one: set ROUNDCUBE_DB_HOST"
        ) from None
    for name in ("ROUNDCUBE_DB_USER", "ROUNDCUBE_DB_NAME"):
        if not getattr(settings, name):
            raise ServiceConfigError(f"WEBMAIL=roundcube: {name} is empty; it needs one")
    user, password = settings.ROUNDCUBE_DB_USER, settings.ROUNDCUBE_DB_PW
    # Roundcube's parse_dsn() rawurldecode()s the user, password and database name.
    credentials = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    name = settings.ROUNDCUBE_DB_NAME
    return Database(
        f"{_DRIVERS[flavor]}://{credentials}@{host}/{quote(name, safe='')}",
        f"{flavor} database {name!r} on {host} as user {user!r}",
        f"{source}, ROUNDCUBE_DB_USER, ROUNDCUBE_DB_PW, ROUNDCUBE_DB_NAME",
        password,
    )


def _from_url(url: str) -> Database:
    """SQLALCHEMY_DATABASE_URI_ROUNDCUBE, already in Roundcube's form by its parser."""
    scheme, _, rest = url.partition("://")
    login, at, place = rest.rpartition("@")
    user, _, password = login.partition(":")
    described = f"the {scheme} database of SQLALCHEMY_DATABASE_URI_ROUNDCUBE ({place}"
    described += f" as user {unquote(user)!r})" if at else ")"
    return Database(url, described, "SQLALCHEMY_DATABASE_URI_ROUNDCUBE", unquote(password))


def php_quoted(text: str) -> str:
    """``text`` as the inside of a PHP single-quoted string."""
    return text.replace("\\", "\\\\").replace("'", "\\'")


def prepare(database: Database, config_dir: Path, user: str) -> None:
    """Create, upgrade and clean Roundcube's database with Roundcube's own code, as ``user``,
    reading the configuration rendered in ``config_dir``; ServiceConfigError when it fails."""
    php = shutil.which("php", path=SYSTEM_PATH)
    if php is None:
        raise ServiceConfigError("php is not installed; install the Debian package php-cli")
    environment = {
        "ROUNDCUBE_CONFIG_DIR": str(config_dir),
        "PATH": "/usr/bin:/bin",
        "PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
    }
    steps = (
        ("create its tables in", ["-r", _INIT, "--", str(SQL_DIR)]),
        ("upgrade", [str(BIN_DIR / "updatedb.sh"), "--package=roundcube", f"--dir={SQL_DIR}"]),
        ("clean", [str(BIN_DIR / "cleandb.sh")]),
    )
    for what, arguments in steps:
        argv = confined(user, user, [php, f"-ddefault_socket_timeout={CONNECT_TIMEOUT}"])
        try:
            result = subprocess.run(
                argv + arguments,
                env=environment,
                capture_output=True,
                text=True,
                timeout=6 * CONNECT_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ServiceConfigError(
                f"WEBMAIL=roundcube: Roundcube could not {what} its {database.described}: "
                f"no answer in {6 * CONNECT_TIMEOUT} s"
            ) from None
        if result.returncode != 0:
            raise ServiceConfigError(
                f"WEBMAIL=roundcube: Roundcube could not {what} its {database.described}: "
                f"{_problem(database, result.stdout + result.stderr)}"
            )


def _problem(database: Database, output: str) -> str:
    """Roundcube's error lines, without the password, and what to do about them."""
    lines = [line.removeprefix("ERROR: ").strip() for line in output.splitlines()]
    text = "; ".join(line for line in lines if line) or "it failed without saying why"
    if database.password:
        for form in {database.password, quote(database.password, safe="")}:
            text = text.replace(form, "***")
    if "could not find driver" in text:
        return f"{text} (install the Debian package {_PACKAGES[database.driver]})"
    if database.settings:
        text += f" (check the server, user, password and database name: {database.settings})"
    return text
