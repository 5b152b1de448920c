"""A database and a user of its own for Roundcube on the local PostgreSQL or MariaDB, as
an operator creates them (docs/webmail.md), dropped afterwards; used by
tests/db/test_roundcube_schema.py and the WEBMAIL e2e tests on each server.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine, create_engine, text

from tests.db.conftest import SERVERS, admin_engine

#: ROUNDCUBE_DB_FLAVOR -> the server of tests/db/conftest.py
SERVER_OF = {"postgresql": "postgresql", "mysql": "mariadb"}
PORTS = {"postgresql": 5432, "mysql": 3306}


@dataclass(frozen=True)
class Account:
    flavor: str
    name: str  # the user's and the database's
    password: str

    @property
    def host(self) -> str:
        return f"127.0.0.1:{PORTS[self.flavor]}"

    def settings(self) -> dict[str, str]:
        """Roost's settings for it."""
        return {
            "ROUNDCUBE_DB_FLAVOR": self.flavor,
            "ROUNDCUBE_DB_HOST": self.host,
            "ROUNDCUBE_DB_USER": self.name,
            "ROUNDCUBE_DB_PW": self.password,
            "ROUNDCUBE_DB_NAME": self.name,
        }

    def engine(self) -> Engine:
        """An administrator's connection to the account's database, to look inside."""
        server = SERVERS[SERVER_OF[self.flavor]]
        return create_engine(server.url_template.format(database=self.name))


@contextmanager
def roundcube_account(flavor: str) -> Iterator[Account]:
    """A fresh, empty database owned by a user of the same name with a password holding
    the characters a URL must escape."""
    name = f"rc_{secrets.token_hex(6)}"
    account = Account(flavor, name, f"{secrets.token_hex(8)}@:/%+")
    admin = admin_engine(SERVERS[SERVER_OF[flavor]])
    if flavor == "postgresql":
        create = [
            f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{account.password}'",
            f'CREATE DATABASE "{name}" OWNER "{name}" ENCODING \'UTF8\'',
        ]
        drop = [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'DROP ROLE IF EXISTS "{name}"']
    else:
        create = [
            f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4",
            f"CREATE USER '{name}'@'%' IDENTIFIED BY '{account.password}'",
            f"GRANT ALL ON `{name}`.* TO '{name}'@'%'",
        ]
        drop = [f"DROP DATABASE IF EXISTS `{name}`", f"DROP USER IF EXISTS '{name}'@'%'"]
    with admin.connect() as connection:
        for statement in create:
            connection.execute(text(statement))
    try:
        yield account
    finally:
        with admin.connect() as connection:
            for statement in drop:
                connection.execute(text(statement))
        admin.dispose()
