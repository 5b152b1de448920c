"""WEBMAIL=roundcube on PostgreSQL and MariaDB: a start creates Roundcube's tables in an
empty database with Roundcube's own code, run as its user; the next start keeps them;
an older schema is brought up to the package's; a database Roundcube cannot reach or log
in to stops the start with Roundcube's reason and without the password.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from roost.layout import Layout
from roost.services.base import ServiceConfigError
from roost.services.roundcube.database import SQL_DIR
from roost.services.roundcube.service import DEBIAN_CONFIG, RoundcubeService
from roost.settings import load_settings
from tests.db.roundcube_accounts import Account, roundcube_account

pytestmark = [
    pytest.mark.db,
    pytest.mark.skipif(os.geteuid() != 0, reason="Roundcube's tools run as its own user"),
    pytest.mark.skipif(not (DEBIAN_CONFIG / "defaults.inc.php").is_file(), reason="no Roundcube"),
]

#: ROUNDCUBE_DB_FLAVOR -> Roundcube's directory of schema steps
SCHEMA_DIR = {"postgresql": "postgres", "mysql": "mysql"}
VERSION = "SELECT value FROM system WHERE name = 'roundcube-version'"


@pytest.fixture(params=["postgresql", "mysql"])
def account(request: pytest.FixtureRequest) -> Iterator[Account]:
    with roundcube_account(request.param) as made:
        yield made


@pytest.fixture
def root() -> Iterator[Path]:
    parent = Path(tempfile.mkdtemp(prefix="roost-rc-"))
    parent.chmod(0o755)  # Roundcube's user reads its configuration below it
    try:
        yield parent / "root"
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def started(root: Path, account: Account, **values: str) -> RoundcubeService:
    """What `roost up` does for Roundcube before php-fpm starts."""
    environ = {"ROOT": str(root), "WEBMAIL": "roundcube", "TLS_FLAVOR": "notls"}
    environ |= {"PORTS": "25,143,587", "BIND_ADDRESS4": "127.0.0.1"}
    settings = load_settings(environ=environ | account.settings() | values)
    service = RoundcubeService(Layout(settings))
    service.render()
    return service


def steps(flavor: str) -> list[str]:
    """The package's schema versions for this flavour, oldest first."""
    return sorted(path.stem for path in (SQL_DIR / SCHEMA_DIR[flavor]).glob("*.sql"))


def test_a_start_creates_the_tables_and_the_next_keeps_them(root: Path, account: Account) -> None:
    service = started(root, account)
    engine = account.engine()
    with engine.begin() as connection:
        assert connection.execute(text(VERSION)).scalar() == steps(account.flavor)[-1]
        connection.execute(text("INSERT INTO users (username, mail_host) VALUES ('a@b', 'h')"))
    service.render()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT username FROM users")).scalars().all() == ["a@b"]
    engine.dispose()
    assert not (root / "webmail" / "roundcube.db").exists()


def test_an_older_schema_is_upgraded_at_start(root: Path, account: Account) -> None:
    started(root, account)
    engine = account.engine()
    older, newest = steps(account.flavor)[-2:]
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE system SET value = :v WHERE name = 'roundcube-version'"), {"v": older}
        )
        if account.flavor == "postgresql":
            # The index as it was before the newest step (SQL/postgres/2022081200.sql).
            connection.execute(text("DROP INDEX responses_user_id_idx"))
            connection.execute(text("CREATE INDEX responses_user_id_idx ON responses (user_id)"))
    started(root, account)
    with engine.connect() as connection:
        assert connection.execute(text(VERSION)).scalar() == newest
        if account.flavor == "postgresql":
            index = connection.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = 'responses_user_id_idx'")
            ).scalar()
            assert index is not None and "(user_id, del)" in index
    engine.dispose()


def test_what_keeps_roundcube_from_its_database_is_named(root: Path, account: Account) -> None:
    missing = {
        "postgresql": f'database "{account.name}_x" does not exist',
        "mysql": f"Access denied for user '{account.name}'@'%' to database '{account.name}_x'",
    }
    problems = [({"ROUNDCUBE_DB_NAME": f"{account.name}_x"}, missing[account.flavor])]
    # Nothing listens on port 9; PostgreSQL here trusts local logins whatever the password.
    problems.append(({"ROUNDCUBE_DB_HOST": "127.0.0.1:9"}, "Connection refused"))
    if account.flavor == "mysql":
        problems.append(({"ROUNDCUBE_DB_PW": "wrong"}, "(using password: YES)"))
    for values, reason in problems:
        with pytest.raises(ServiceConfigError) as caught:
            started(root, account, **values)
        message = str(caught.value)
        assert "Roundcube could not create its tables in its" in message
        assert reason in message and "ROUNDCUBE_DB_PW, ROUNDCUBE_DB_NAME" in message
        assert account.password not in message
