"""The store on PostgreSQL and MariaDB: the same checks as on SQLite, plus server specifics."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from roost.store.db import Store
from roost.store.models import Domain, User
from roost.store.snapshot import load_snapshot
from tests.db import samples

pytestmark = pytest.mark.db


def test_migrations_create_exactly_the_models_and_downgrade_to_base(empty_store: Store) -> None:
    samples.check_migrations(empty_store)


def test_two_factor_migration_keeps_rows_up_and_down(empty_store: Store) -> None:
    samples.check_two_factor_migration(empty_store)


def test_snapshot_round_trip(server_store: Store) -> None:
    samples.check_snapshot(server_store)


def test_deleting_a_domain_deletes_what_belongs_to_it(server_store: Store) -> None:
    samples.check_domain_cascades(server_store)


def test_deleting_a_user_deletes_its_dependants(server_store: Store) -> None:
    samples.check_user_cascades(server_store)


def test_generation_counts_commits_not_reads(server_store: Store) -> None:
    with server_store.session() as session:
        session.add(Domain(name="a.org"))
    with server_store.session() as session:
        session.get(Domain, "a.org")
    assert server_store.generation() == 1


def test_reading_sees_one_state_while_others_commit(server_store: Store) -> None:
    with server_store.session() as session:
        session.add(Domain(name="a.org"))
    with server_store.reading() as connection:
        assert connection.execute(text("SELECT count(*) FROM domain")).scalar() == 1
        with server_store.session() as session:
            session.add(Domain(name="b.org"))
        assert connection.execute(text("SELECT count(*) FROM domain")).scalar() == 1
    assert load_snapshot(server_store).directory.domains == {"a.org", "b.org"}


def test_longest_keys_and_four_byte_characters_are_stored(server_store: Store) -> None:
    # 255-character primary keys of 4-byte characters: 1020 bytes, inside InnoDB's 3072-byte
    # index limit (DYNAMIC rows, large prefixes); and text beyond the BMP round-trips.
    domain = "d" * 80
    email = "😀" * (255 - 1 - len(domain)) + "@" + domain
    with server_store.session() as session:
        session.add(Domain(name=domain))
        session.add(
            User(
                email=email,
                localpart="x",
                domain_name=domain,
                password="hash",
                displayed_name="📨 Post",
            )
        )
    with server_store.session() as session:
        user = session.get(User, email)
        assert user is not None
        assert (len(user.email), user.displayed_name) == (255, "📨 Post")


@pytest.mark.parametrize("server_url", ["mariadb", "mariadb-latin1"], indirect=True)
def test_mariadb_tables_are_utf8mb4_with_a_binary_collation(server_store: Store) -> None:
    with server_store.engine.connect() as connection:
        assert connection.execute(text("SELECT @@character_set_connection")).scalar() == ("utf8mb4")
        collations = dict(
            connection.execute(
                text(
                    "SELECT table_name, table_collation FROM information_schema.tables "
                    "WHERE table_schema = DATABASE()"
                )
            ).all()
        )
    assert set(collations) >= {"domain", "user", "alias", "token", "roost_generation"}
    assert {collation for name, collation in collations.items() if name != "alembic_version"} == {
        "utf8mb4_bin"
    }
    samples.check_snapshot(server_store)
