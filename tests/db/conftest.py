"""A fresh, uniquely named database on each server for every test, dropped afterwards.

The servers are the local PostgreSQL (trust auth for ``postgres``) and MariaDB (``root``
with an empty password) on 127.0.0.1. Where one is not running the tests skip and say so;
on CI (``CI=true``), where both always run, an unreachable server is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from roost.store.db import Store


@dataclass(frozen=True)
class Server:
    name: str
    admin_url: str  # a database that always exists, for CREATE/DROP DATABASE
    url_template: str  # {database} is replaced with the fresh database's name
    create: str
    drop: str


SERVERS = {
    "postgresql": Server(
        name="PostgreSQL",
        admin_url="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        url_template="postgresql+psycopg://postgres@127.0.0.1:5432/{database}",
        create="CREATE DATABASE \"{database}\" ENCODING 'UTF8'",
        drop='DROP DATABASE IF EXISTS "{database}" WITH (FORCE)',
    ),
    "mariadb": Server(
        name="MariaDB",
        admin_url="mysql+pymysql://root@127.0.0.1:3306/mysql",
        url_template="mysql+pymysql://root@127.0.0.1:3306/{database}",
        # A binary collation compares exactly, like SQLite and PostgreSQL; the migration
        # asks for the same on every table whatever the database default is.
        create="CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
        drop="DROP DATABASE IF EXISTS `{database}`",
    ),
    # What an operator may have created: the server's old latin1 default. The migration
    # must still give every table utf8mb4 and the binary collation.
    "mariadb-latin1": Server(
        name="MariaDB",
        admin_url="mysql+pymysql://root@127.0.0.1:3306/mysql",
        url_template="mysql+pymysql://root@127.0.0.1:3306/{database}",
        create="CREATE DATABASE `{database}` CHARACTER SET latin1",
        drop="DROP DATABASE IF EXISTS `{database}`",
    ),
}
#: Every test runs on these; the latin1 variant only where a test asks for it.
DEFAULT_SERVERS = ("mariadb", "postgresql")


def admin_engine(server: Server) -> Engine:
    engine = create_engine(
        server.admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        engine.dispose()
        reason = f"{server.name} is not reachable at {server.admin_url}: {exc.orig}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: the database servers must be running)")
        pytest.skip(reason)
    return engine


@pytest.fixture(params=DEFAULT_SERVERS)
def server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of an empty database created for this test on one server."""
    server = SERVERS[request.param]
    admin = admin_engine(server)
    database = f"roost_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(server.create.format(database=database)))
    try:
        yield server.url_template.format(database=database)
    finally:
        with admin.connect() as connection:
            connection.execute(text(server.drop.format(database=database)))
        admin.dispose()


@pytest.fixture
def empty_store(server_url: str) -> Iterator[Store]:
    store = Store.open(server_url)
    yield store
    store.dispose()


@pytest.fixture
def server_store(empty_store: Store) -> Store:
    empty_store.upgrade()
    return empty_store
