"""Loading the gate's directory from the store (SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from roost.store.db import Store
from roost.store.models import Domain, User
from roost.store.snapshot import load_directory, load_generation, load_snapshot
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


def test_empty_store_gives_an_empty_directory(store: Store) -> None:
    generation, directory = load_snapshot(store)
    assert generation == 0
    assert directory.counts() == {
        "domains": 0,
        "alternatives": 0,
        "relays": 0,
        "users": 0,
        "aliases": 0,
        "tokens": 0,
    }


def test_round_trip_of_every_indexed_field(store: Store) -> None:
    samples.check_snapshot(store)


def test_directory_follows_the_generation(store: Store) -> None:
    samples.add_domain_with_everything(store)
    seen = load_snapshot(store)
    assert load_generation(store) == seen.generation
    with store.session() as session:
        joe = session.get(User, "joe@example.com")
        assert joe is not None
        joe.enabled = False
        session.add(Domain(name="new.org"))
    assert load_generation(store) == seen.generation + 1
    directory = load_directory(store)
    assert not directory.users["joe@example.com"].enabled
    assert "new.org" in directory.domains
    # The disabled owner's anonymous alias stops resolving (in Mailu an owned alias is
    # active only while its owner is enabled).
    assert directory.resolve("shop.apple@example.com") == ("ann@example.com",)
