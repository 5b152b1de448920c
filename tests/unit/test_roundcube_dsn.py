"""WEBMAIL=roundcube: which database Roundcube gets (ROUNDCUBE_DB_*, SQLALCHEMY_DATABASE_URI_
ROUNDCUBE, else DB_FLAVOR), as Roundcube itself reads it back from the rendered
config.inc.php, and that its password stays out of messages. Creating and upgrading the
tables on a real server: tests/db/test_roundcube_schema.py.
"""

from __future__ import annotations

import json
import os
import pwd
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from roost.layout import Layout
from roost.services.base import ServiceConfigError
from roost.services.roundcube.database import SQL_DIR, Database, _problem, choose, php_quoted
from roost.services.roundcube.service import _TEMPLATES, DEBIAN_CONFIG, USER, RoundcubeService
from roost.settings import Settings, SettingsError, load_settings

SQLITE = Path("/var/lib/roost/webmail/roundcube.db")


def chosen(**values: str) -> Database:
    return choose(load_settings(environ={"WEBMAIL": "roundcube", **values}), SQLITE)


def test_sqlite_by_default_in_roost_webmail_directory() -> None:
    database = chosen()
    assert database.dsn == f"sqlite:///{SQLITE}?mode=0600"
    assert (database.password, database.settings) == ("", "")


def test_it_follows_db_flavor_on_db_host_with_its_own_user_never_the_stores() -> None:
    database = chosen(DB_FLAVOR="postgresql", DB_HOST="db.example", DB_USER="mailu", DB_PW="s")
    assert database.dsn == "pgsql://roundcube@db.example/roundcube"
    assert "DB_HOST, ROUNDCUBE_DB_USER" in database.settings
    database = chosen(DB_FLAVOR="mysql", ROUNDCUBE_DB_HOST="other:3307", ROUNDCUBE_DB_PW="pw")
    assert database.dsn == "mysql://roundcube:pw@other:3307/roundcube"
    assert database.settings.startswith("ROUNDCUBE_DB_HOST, ")


def test_its_own_flavour_wins_over_db_flavor_and_the_url_as_in_mailu() -> None:
    assert chosen(DB_FLAVOR="postgresql", ROUNDCUBE_DB_FLAVOR="sqlite").dsn.startswith("sqlite:")
    url = "postgresql+psycopg://rc:pw@db/rc"
    assert chosen(ROUNDCUBE_DB_FLAVOR="mysql", SQLALCHEMY_DATABASE_URI_ROUNDCUBE=url).dsn == (
        "mysql://roundcube@database/roundcube"
    )


def test_the_url_in_roundcubes_form_or_sqlalchemys() -> None:
    database = chosen(
        DB_FLAVOR="mysql", SQLALCHEMY_DATABASE_URI_ROUNDCUBE="postgresql://r:p%40@h/d"
    )
    assert database.dsn == "pgsql://r:p%40@h/d"
    assert (database.password, database.settings) == ("p@", "SQLALCHEMY_DATABASE_URI_ROUNDCUBE")
    assert "p%40" not in database.described and "'r'" in database.described
    assert (
        chosen(SQLALCHEMY_DATABASE_URI_ROUNDCUBE="mysql://r@h:3307/d").dsn == "mysql://r@h:3307/d"
    )
    # Mailu's default value means Mailu's default: SQLite in the webmail's data.
    mailu = chosen(
        DB_FLAVOR="mysql", SQLALCHEMY_DATABASE_URI_ROUNDCUBE="sqlite:////data/roundcube.db"
    )
    assert mailu.dsn.startswith(f"sqlite:///{SQLITE}")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"ROUNDCUBE_DB_FLAVOR": "oracle"}, "ROUNDCUBE_DB_FLAVOR='oracle': accepts sqlite, "),
        ({"ROUNDCUBE_DB_HOST": "db/x"}, "ROUNDCUBE_DB_HOST='db/x': accepts a host name"),
        (
            {"SQLALCHEMY_DATABASE_URI_ROUNDCUBE": "sqlite:////srv/rc.db"},
            "set ROUNDCUBE_DB_FLAVOR=sqlite instead",
        ),
    ],
)
def test_bad_values_are_refused_by_name(values: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(environ=values)


def test_a_bad_url_is_refused_without_repeating_its_password() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"SQLALCHEMY_DATABASE_URI_ROUNDCUBE": "oracle://u:Secret9@h/d"})
    assert "pgsql://user:password@host/database" in str(caught.value)
    assert "Secret9" not in str(caught.value)


def test_a_host_that_cannot_be_in_a_url_is_refused_when_it_comes_from_db_host() -> None:
    with pytest.raises(
        ServiceConfigError, match=r"DB_HOST='a@b': accepts a host.*set ROUNDCUBE_DB_HOST"
    ):
        chosen(DB_FLAVOR="postgresql", DB_HOST="a@b")
    with pytest.raises(ServiceConfigError, match="ROUNDCUBE_DB_NAME is empty"):
        chosen(ROUNDCUBE_DB_FLAVOR="mysql", ROUNDCUBE_DB_NAME="")


def test_the_password_is_a_secret_setting_read_from_a_file_too(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-a-file\n")
    settings = load_settings(environ={"ROUNDCUBE_DB_PW_FILE": str(secret)})
    assert settings.ROUNDCUBE_DB_PW == "from-a-file"
    assert "from-a-file" not in repr(settings)
    url = load_settings(environ={"SQLALCHEMY_DATABASE_URI_ROUNDCUBE": "pgsql://u:Xy7@h/d"})
    assert "Xy7" not in repr(url)


def test_messages_from_roundcube_never_show_the_password() -> None:
    database = Database("mysql://u:p%40ss@h/d", "d", "ROUNDCUBE_DB_PW", "p@ss")
    problem = _problem(database, "ERROR: bad p@ss and p%40ss\nERROR: Failed to connect\n")
    assert problem == "bad *** and ***; Failed to connect (check the server, user, password " + (
        "and database name: ROUNDCUBE_DB_PW)"
    )
    missing = _problem(database, "ERROR: SQLSTATE: could not find driver")
    assert missing.endswith("(install the Debian package roundcube-mysql)")


def test_php_quoted_escapes_backslash_and_quote() -> None:
    assert php_quoted("a'b\\c") == "a\\'b\\\\c"


def roundcube_reads(config: str) -> dict[str, Any]:
    """The DSN Roundcube's own rcube_db::parse_dsn() makes of the rendered db_dsnw."""
    script = (
        "define('INSTALL_PATH', '/var/lib/roundcube/');"
        "require_once INSTALL_PATH . 'program/lib/Roundcube/bootstrap.php';"
        f"$config = []; eval('?>' . file_get_contents('{config}'));"
        "echo json_encode(rcube_db::parse_dsn($config['db_dsnw']));"
    )
    result = subprocess.run(["php", "-r", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


@pytest.mark.skipif(not (DEBIAN_CONFIG / "defaults.inc.php").is_file(), reason="no Roundcube")
def test_roundcube_reads_back_user_password_host_and_name(base: Path) -> None:
    password = "p@ss:w/rd'%\\x"
    settings = Settings(
        ROOT=base,
        WEBMAIL="roundcube",
        PORTS=(25, 143, 587),
        TLS_FLAVOR="notls",
        ROUNDCUBE_DB_FLAVOR="postgresql",
        ROUNDCUBE_DB_HOST="db.example:6432",
        ROUNDCUBE_DB_USER="web@mail",
        ROUNDCUBE_DB_PW=password,
        ROUNDCUBE_DB_NAME="rc/db",
    )
    service = RoundcubeService(Layout(settings))
    config = base / "config.inc.php"
    config.write_text(_TEMPLATES.get_template("config.inc.php.j2").render(service.context()))
    parsed = roundcube_reads(str(config))
    assert parsed["phptype"] == "pgsql"
    assert (parsed["username"], parsed["password"]) == ("web@mail", password)
    assert (parsed["hostspec"], parsed["port"], parsed["database"]) == (
        "db.example",
        "6432",
        "rc/db",
    )


@pytest.mark.skipif(not (DEBIAN_CONFIG / "defaults.inc.php").is_file(), reason="no Roundcube")
@pytest.mark.skipif(os.geteuid() != 0, reason="Roundcube's tools run as its own user")
def test_the_sqlite_file_is_made_at_start_by_roundcubes_user_at_the_packages_version(
    base: Path,
) -> None:
    settings = Settings(ROOT=base, WEBMAIL="roundcube", PORTS=(25, 143, 587), TLS_FLAVOR="notls")
    service = RoundcubeService(Layout(settings))
    service.render()
    service.render()  # the next start finds the tables there
    database = base / "webmail" / "roundcube.db"
    owner = database.stat()
    assert (owner.st_uid, owner.st_mode & 0o777) == (pwd.getpwnam(USER).pw_uid, 0o600)
    newest = max(path.stem for path in (SQL_DIR / "sqlite").glob("*.sql"))
    with sqlite3.connect(database) as connection:
        row = connection.execute("SELECT value FROM system WHERE name = 'roundcube-version'")
        assert row.fetchone() == (newest,)
