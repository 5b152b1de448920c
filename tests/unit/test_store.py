"""The store on SQLite: opening, migrations, list columns, cascades, the change counter."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError, StatementError

from roost.settings import Settings
from roost.store.db import Store, StoreError
from roost.store.models import Alias, Config, Domain, Relay, StoreGeneration, Token, User
from tests.db import samples


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path}/main.db")
    opened.upgrade()
    # Drop the migrating connection: tests then see what the connect hook sets up, not
    # the pragmas migrating left behind.
    opened.dispose()
    yield opened
    opened.dispose()


# -- opening ---------------------------------------------------------------------------------


def test_from_settings_creates_the_sqlite_directory(tmp_path: Path) -> None:
    settings = Settings(ROOT=tmp_path / "root")
    store = Store.from_settings(settings)
    try:
        store.upgrade()
        assert (tmp_path / "root" / "data" / "main.db").is_file()
        assert store.url == f"sqlite:///{tmp_path}/root/data/main.db"
    finally:
        store.dispose()


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(store: Store) -> None:
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_invalid_url_is_named() -> None:
    with pytest.raises(StoreError, match="not a valid SQLAlchemy URL"):
        Store.open("no url at all")


def test_missing_sqlite_directory_is_explained(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does its directory exist"):
        Store.open(f"sqlite:///{tmp_path}/absent/main.db")


def test_connection_failure_names_the_url_without_its_password() -> None:
    # Port 1 on loopback refuses at once: no server needed to see the message.
    with pytest.raises(StoreError) as failure:
        Store.open("postgresql+psycopg://roost:s3cret@127.0.0.1:1/roost")
    message = str(failure.value)
    assert "postgresql+psycopg://roost:***@127.0.0.1:1/roost" in message
    assert "s3cret" not in message


# -- migrations ------------------------------------------------------------------------------


def test_migrations_create_exactly_the_models_and_downgrade_to_base(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path}/main.db")
    try:
        samples.check_migrations(store)
    finally:
        store.dispose()


def test_two_factor_migration_keeps_rows_up_and_down(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path}/main.db")
    try:
        samples.check_two_factor_migration(store)
    finally:
        store.dispose()


def test_migrating_leaves_foreign_keys_enforced(tmp_path: Path) -> None:
    # SQLite migrations run with foreign keys off; the pooled connection must get them back.
    store = Store.open(f"sqlite:///{tmp_path}/main.db")
    try:
        store.upgrade()
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        store.dispose()


def test_writing_to_a_store_without_schema_raises_store_error(store: Store) -> None:
    store.downgrade("base")
    with pytest.raises(StoreError, match="no such table"), store.session() as session:
        session.add(Domain(name="a.org"))


def test_unknown_revision_is_reported(store: Store) -> None:
    # What a Mailu database carries: its own Alembic history, unknown to Roost.
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9a5866105f5a'"))
    with pytest.raises(StoreError, match="9a5866105f5a"):
        store.upgrade()


def test_generation_of_an_unmigrated_store_says_so(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path}/main.db")
    try:
        with pytest.raises(StoreError, match="no Roost schema yet"):
            store.generation()
    finally:
        store.dispose()


# -- rows --------------------------------------------------------------------------------------


def test_create_read_update_delete(store: Store) -> None:
    with store.session() as session:
        session.add(Domain(name="example.com"))
        session.add(
            User(
                email="joe@example.com", localpart="joe", domain_name="example.com", password="hash"
            )
        )
    with store.session() as session:
        joe = session.get(User, "joe@example.com")
        assert joe is not None
        assert (joe.quota_bytes, joe.enabled, joe.spam_threshold) == (10**9, True, 80)
        assert joe.created_at is not None and joe.updated_at is None
        joe.displayed_name = "Joe"
    with store.session() as session:
        joe = session.get(User, "joe@example.com")
        assert joe is not None and joe.displayed_name == "Joe"
        assert joe.updated_at == joe.created_at
        session.delete(joe)
    with store.session() as session:
        assert session.get(User, "joe@example.com") is None


def test_duplicate_primary_key_raises_integrity_error(store: Store) -> None:
    with store.session() as session:
        session.add(Domain(name="example.com"))
    with pytest.raises(IntegrityError), store.session() as session:
        session.add(Domain(name="example.com"))


def test_user_needs_an_existing_domain(store: Store) -> None:
    with pytest.raises(IntegrityError), store.session() as session:
        session.add(
            User(
                email="joe@nowhere.org", localpart="joe", domain_name="nowhere.org", password="hash"
            )
        )


def test_config_values_are_json(store: Store) -> None:
    with store.session() as session:
        session.add(Config(name="limits", value={"a": [1, 2]}))
    with store.session() as session:
        assert session.get(Config, "limits").value == {"a": [1, 2]}  # type: ignore[union-attr]


# -- CommaSeparatedList (Mailu's list column) --------------------------------------------------


def _stored_destination(store: Store, email: str) -> str | None:
    with store.engine.connect() as connection:
        return connection.execute(
            text("SELECT destination FROM alias WHERE email = :email"), {"email": email}
        ).scalar()


def _add_alias(store: Store, email: str, destination: object) -> None:
    with store.session() as session:
        if session.get(Domain, "example.com") is None:
            session.add(Domain(name="example.com"))
            session.flush()
        session.add(
            Alias(
                email=email,
                localpart=email.partition("@")[0],
                domain_name="example.com",
                destination=destination,
            )
        )


def test_list_column_is_deduplicated_and_sorted(store: Store) -> None:
    _add_alias(store, "a@example.com", ["c@x.org", "a@x.org", "c@x.org", "b@x.org"])
    assert _stored_destination(store, "a@example.com") == "a@x.org,b@x.org,c@x.org"
    with store.session() as session:
        alias = session.get(Alias, "a@example.com")
        assert alias is not None and alias.destination == ["a@x.org", "b@x.org", "c@x.org"]


def test_list_column_empty_and_null_read_as_empty_lists(store: Store) -> None:
    _add_alias(store, "empty@example.com", [])
    assert _stored_destination(store, "empty@example.com") == ""
    with store.session() as session:
        session.add(Domain(name="other.org"))
        session.add(
            User(
                email="u@other.org",
                localpart="u",
                domain_name="other.org",
                password="hash",
                forward_destination=None,
            )
        )
    with store.engine.begin() as connection:
        connection.execute(text('UPDATE "user" SET forward_destination = NULL'))
    with store.session() as session:
        user = session.get(User, "u@other.org")
        alias = session.get(Alias, "empty@example.com")
        assert user is not None and user.forward_destination == []
        assert alias is not None and alias.destination == []


def test_list_column_refuses_items_with_a_comma(store: Store) -> None:
    with pytest.raises(StatementError, match="must not contain a comma"):
        _add_alias(store, "bad@example.com", ["a@x.org,b@x.org", "c@x.org"])


# -- cascades ----------------------------------------------------------------------------------


def test_deleting_a_domain_deletes_what_belongs_to_it(store: Store) -> None:
    samples.check_domain_cascades(store)


def test_deleting_a_user_deletes_its_tokens_fetches_and_owned_aliases(store: Store) -> None:
    samples.check_user_cascades(store)


def test_database_cascades_without_the_orm(store: Store) -> None:
    # Another writer (or a hand-written DELETE) relies on ON DELETE CASCADE, which SQLite
    # only enforces with foreign_keys=ON on the connection.
    samples.add_domain_with_everything(store)
    with store.engine.begin() as connection:
        connection.execute(delete(Domain))
    for model in (User, Alias, Token):
        assert samples.count(store, model) == 0


# -- the change counter ------------------------------------------------------------------------


def test_generation_counts_committed_changes_once_per_commit(store: Store) -> None:
    assert store.generation() == 0
    with store.session() as session:
        session.add_all([Domain(name="a.org"), Domain(name="b.org")])
    assert store.generation() == 1
    with store.session() as session:
        domain = session.get(Domain, "a.org")
        assert domain is not None
        domain.max_users = 5
    assert store.generation() == 2
    with store.session() as session:
        session.delete(session.get(Domain, "b.org"))
    assert store.generation() == 3


def test_generation_stays_for_reads_and_unchanged_values(store: Store) -> None:
    with store.session() as session:
        session.add(Domain(name="a.org", max_users=5))
    with store.session() as session:
        domain = session.get(Domain, "a.org")
        assert domain is not None
        domain.max_users = 5  # the same value: no row changes
        session.execute(select(Domain)).all()
    assert store.generation() == 1


def test_generation_stays_when_the_session_fails(store: Store) -> None:
    with pytest.raises(RuntimeError), store.session() as session:
        session.add(Domain(name="a.org"))
        session.flush()
        raise RuntimeError("abort")
    assert store.generation() == 0
    with store.session() as session:
        assert session.get(Domain, "a.org") is None


def test_generation_counts_bulk_statements_that_touch_rows(store: Store) -> None:
    with store.session() as session:
        session.execute(insert(Relay), [{"name": "r1.org"}, {"name": "r2.org"}])
    assert store.generation() == 1
    with store.session() as session:
        session.execute(update(Relay).values(smtp="mx.r.org"))
    assert store.generation() == 2
    with store.session() as session:
        session.execute(delete(Relay).where(Relay.name == "absent.org"))
    assert store.generation() == 2


def test_generation_row_is_recreated_if_deleted(store: Store) -> None:
    with store.engine.begin() as connection:
        connection.execute(delete(StoreGeneration))
    assert store.generation() == 0
    with store.session() as session:
        session.add(Domain(name="a.org"))
    assert store.generation() == 1


def test_another_process_sees_the_generation_move(store: Store) -> None:
    other = Store.open(str(store.engine.url))
    try:
        with other.session() as session:
            session.add(Domain(name="a.org"))
        assert store.generation() == 1
    finally:
        other.dispose()


def test_a_writer_waits_for_another_writers_lock(store: Store, tmp_path: Path) -> None:
    # Without busy_timeout the second writer fails at once with "database is locked".
    holder = sqlite3.connect(tmp_path / "main.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute(
        "INSERT INTO relay (name, smtp, created_at) VALUES ('held.org', '', '2025-01-01')"
    )
    release = threading.Timer(0.3, holder.execute, args=("COMMIT",))
    release.start()
    try:
        with store.session() as session:
            session.add(Domain(name="a.org"))
    finally:
        release.join()
        holder.close()
    assert samples.count(store, Relay) == 1
    assert store.generation() == 1


# -- consistent reads --------------------------------------------------------------------------


def test_reading_sees_one_state_while_others_commit(store: Store) -> None:
    with store.session() as session:
        session.add(Domain(name="a.org"))
    with store.reading() as connection:
        assert connection.execute(select(Domain.name)).scalars().all() == ["a.org"]
        with store.session() as session:
            session.add(Domain(name="b.org"))
        assert connection.execute(select(Domain.name)).scalars().all() == ["a.org"]
    with store.reading() as connection:
        assert sorted(connection.execute(select(Domain.name)).scalars()) == ["a.org", "b.org"]
