"""Store checks shared by the SQLite unit tests and the PostgreSQL/MariaDB tests.

Each function takes an open Store and asserts; the same assertions run on every backend,
so a difference between SQLite and a server shows up as the same test failing on one.
"""

from __future__ import annotations

import datetime as dt

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Integer, MetaData, Table, func, insert, inspect, select

from roost.core.directory import AliasEntry, RelayEntry, TokenEntry, UserEntry
from roost.store.db import Store
from roost.store.models import (
    Alias,
    Alternative,
    Base,
    Domain,
    DomainAccess,
    Fetch,
    Relay,
    Token,
    User,
    manager,
)
from roost.store.snapshot import load_snapshot


def schema_differences(store: Store) -> list[object]:
    """What Alembic's autogenerate would still change: empty when migrations match models."""
    with store.engine.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


def table_names(store: Store) -> set[str]:
    return set(inspect(store.engine).get_table_names())


def check_migrations(store: Store) -> None:
    """Empty database -> head matches the models -> base drops everything -> head again."""
    assert store.revision() is None
    assert "domain" not in table_names(store)
    store.upgrade()
    assert store.revision() == "0002"
    assert schema_differences(store) == []
    assert store.generation() == 0
    store.upgrade()  # already at head: nothing to do, nothing fails
    store.downgrade("base")
    assert store.revision() is None
    assert table_names(store) <= {"alembic_version"}
    store.upgrade()
    assert schema_differences(store) == []


def _fill_required(table: Table, values: dict[str, object]) -> dict[str, object]:
    """``values`` plus a plain value for every NOT NULL column without a server default."""
    row = dict(values)
    for column in table.columns:
        if column.name in row or column.nullable or column.server_default is not None:
            continue
        if column.autoincrement is True or (
            column.primary_key and isinstance(column.type, Integer)
        ):
            continue
        python_type = column.type.python_type
        if python_type is bool:
            row[column.name] = False
        elif python_type is int:
            row[column.name] = 0
        elif python_type is dt.date:
            row[column.name] = dt.date(2024, 1, 1)
        else:
            row[column.name] = "x"
    return row


def check_two_factor_migration(store: Store) -> None:
    """0001 -> 0002 keeps existing rows with two-factor login off; 0002 -> 0001 drops only
    the new columns and keeps the rows; up again works."""
    store.upgrade("0001")
    with store.engine.begin() as connection:
        meta = MetaData()
        domain = Table("domain", meta, autoload_with=connection)
        user = Table("user", meta, autoload_with=connection)
        connection.execute(insert(domain).values(_fill_required(domain, {"name": "old.org"})))
        connection.execute(
            insert(user).values(
                _fill_required(
                    user,
                    {"email": "joe@old.org", "localpart": "joe", "domain_name": "old.org"},
                )
            )
        )
    store.upgrade()
    assert store.revision() == "0002"
    assert schema_differences(store) == []
    with store.session() as session:
        joe = session.get(User, "joe@old.org")
        assert joe is not None and joe.domain is not None
        assert (joe.totp_enabled, joe.totp_secret, joe.totp_last_step) == (False, None, None)
        assert joe.totp_recovery_codes == []
        assert joe.domain.totp_required is False
        joe.totp_enabled, joe.totp_secret, joe.totp_last_step = True, "v1:sealed", 2**40
        joe.totp_recovery_codes = ["a" * 64, "b" * 64]
        joe.domain.totp_required = True
    with store.session() as session:
        joe = session.get(User, "joe@old.org")
        assert joe is not None
        assert (joe.totp_enabled, joe.totp_last_step) == (True, 2**40)
        assert joe.totp_recovery_codes == ["a" * 64, "b" * 64]
    store.downgrade("0001")
    assert store.revision() == "0001"
    columns = {c["name"] for c in inspect(store.engine).get_columns("user")}
    assert "email" in columns and not {c for c in columns if c.startswith("totp_")}
    domain_columns = {c["name"] for c in inspect(store.engine).get_columns("domain")}
    assert "totp_required" not in domain_columns
    with store.engine.connect() as connection:
        table = Table("user", MetaData(), autoload_with=connection)
        assert connection.execute(select(table.c.email)).scalars().all() == ["joe@old.org"]
    store.upgrade()
    assert schema_differences(store) == []


def add_domain_with_everything(store: Store) -> None:
    """example.com with an alternative, a manager, users, aliases, a token and a fetch."""
    with store.session() as session:
        domain = Domain(name="example.com", max_users=10)
        joe = User(
            email="joe@example.com",
            localpart="joe",
            domain=domain,
            password="$2b$12$joehash",
            forward_enabled=True,
            forward_destination=["b@elsewhere.org", "a@elsewhere.org", "b@elsewhere.org"],
            displayed_name="Joé 📨",
            quota_bytes=2_000_000,
            reply_subject="away",
            spam_threshold=70,
        )
        ann = User(email="ann@example.com", localpart="ann", domain=domain, password="x")
        session.add_all([domain, joe, ann])
        session.add(Alternative(name="example.net", domain=domain))
        session.add(Relay(name="relayed.org", smtp="mx.relayed.org"))
        session.add(
            Alias(
                email="team@example.com",
                localpart="team",
                domain=domain,
                destination=["joe@example.com", "ann@example.com"],
            )
        )
        session.add(
            Alias(
                email="%@example.com",
                localpart="%",
                domain=domain,
                wildcard=True,
                destination=["ann@example.com"],
            )
        )
        session.add(
            Alias(
                email="shop.apple@example.com",
                localpart="shop.apple",
                domain=domain,
                destination=["joe@example.com"],
                owner=joe,
                hostname="shop.test",
            )
        )
        session.add(
            Token(user=joe, password="$pbkdf2-sha256$1$x", ip=["192.0.2.0/24"], comment="phone")
        )
        session.add(
            Fetch(
                user=joe,
                protocol="imap",
                host="imap.remote.test",
                port=993,
                username="joe",
                password="secret",
            )
        )
        session.add(DomainAccess(domain=domain, user=ann))
        domain.managers.append(ann)


def count(store: Store, model: object) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(model)).scalar_one())


def check_user_cascades(store: Store) -> None:
    """Deleting a user deletes its tokens, fetches, owned aliases, grants and manager rows."""
    add_domain_with_everything(store)
    with store.session() as session:
        session.delete(session.get(User, "joe@example.com"))
    assert count(store, Token) == 0
    assert count(store, Fetch) == 0
    with store.session() as session:
        assert session.get(Alias, "shop.apple@example.com") is None
        assert session.get(Alias, "team@example.com") is not None
        session.delete(session.get(User, "ann@example.com"))
    assert count(store, DomainAccess) == 0
    assert count(store, manager) == 0


def check_domain_cascades(store: Store) -> None:
    """Deleting a domain deletes its users, aliases, alternatives and what hangs off users."""
    add_domain_with_everything(store)
    with store.session() as session:
        session.delete(session.get(Domain, "example.com"))
    for model in (User, Alias, Alternative, Token, Fetch, DomainAccess, manager):
        assert count(store, model) == 0, model
    assert count(store, Relay) == 1


def check_snapshot(store: Store) -> None:
    """Every field core indexes comes back from the store with its stored value."""
    before = store.generation()
    add_domain_with_everything(store)
    generation, directory = load_snapshot(store)
    assert generation == store.generation() == before + 1
    assert directory.domains == frozenset({"example.com"})
    assert dict(directory.alternatives) == {"example.net": "example.com"}
    assert dict(directory.relays) == {"relayed.org": RelayEntry("relayed.org", "mx.relayed.org")}
    assert directory.users["joe@example.com"] == UserEntry(
        email="joe@example.com",
        localpart="joe",
        domain="example.com",
        password_hash="$2b$12$joehash",
        forward_enabled=True,
        forward_destination=("a@elsewhere.org", "b@elsewhere.org"),
        displayed_name="Joé 📨",
        quota_bytes=2_000_000,
        reply_subject="away",
        reply_startdate=dt.date(1900, 1, 1),
        reply_enddate=dt.date(2999, 12, 31),
        spam_threshold=70,
    )
    assert directory.users["ann@example.com"].forward_destination == ()
    assert sorted(directory.aliases, key=lambda a: a.email) == [
        AliasEntry("%@example.com", "%", "example.com", True, ("ann@example.com",)),
        AliasEntry(
            "shop.apple@example.com",
            "shop.apple",
            "example.com",
            False,
            ("joe@example.com",),
            owner_email="joe@example.com",
        ),
        AliasEntry(
            "team@example.com", "team", "example.com", False, ("ann@example.com", "joe@example.com")
        ),
    ]
    (token,) = directory.tokens_of("joe@example.com")
    assert token == TokenEntry(
        token.id, "joe@example.com", "$pbkdf2-sha256$1$x", ("192.0.2.0/24",), "phone"
    )
    assert directory.resolve("team@example.net") == ("ann@example.com", "joe@example.com")
    assert directory.resolve("nobody@example.com") == ("ann@example.com",)
