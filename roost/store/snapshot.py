"""Load the store into the gate's in-memory :class:`~roost.core.directory.Directory`.

The gate rebuilds its index whenever the store's generation moves, so this runs often and
must stay fast with tens of thousands of rows: it selects plain columns (no ORM objects,
no identity map, no relationship loading) inside one consistent read, and turns each row
straight into the frozen entry dataclasses core defines.

Each query is derived from the entry's own fields, so a field core adds that has a
same-named column is loaded without a change here, and one without a column fails at
import instead of being silently left at its default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Dialect,
    String,
    Table,
    TypeDecorator,
    func,
    literal,
    select,
    true,
    type_coerce,
)

from roost.core.directory import AliasEntry, Directory, RelayEntry, TokenEntry, UserEntry
from roost.store.db import GENERATION_ROW_ID, Store
from roost.store.models import (
    Alias,
    Alternative,
    CommaSeparatedList,
    Domain,
    Relay,
    StoreGeneration,
    Token,
    User,
)

__all__ = ["Snapshot", "load_directory", "load_generation", "load_snapshot"]


class Snapshot(NamedTuple):
    """A directory and the generation it was read at, both from the same transaction."""

    generation: int
    directory: Directory


def _table(model: type) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


class _StoredTuple(TypeDecorator[tuple[str, ...]]):
    """A CommaSeparatedList column (``a,b,c``, Mailu's list column) read straight into a tuple.

    The entries are immutable, so converting in the result processor saves building a
    list per row only to copy it.
    """

    impl = String
    cache_ok = True

    def process_result_value(self, value: str | None, dialect: Dialect) -> tuple[str, ...]:
        return tuple(filter(None, value.split(","))) if value else ()


class _Loader:
    """The query for one entry type and the conversion of its rows to entries.

    Columns come in field order and every conversion happens in SQL or in a column's result
    processor, so each row becomes an entry positionally with no per-row Python fix-ups.
    """

    def __init__(self, entry: type[Any], table: Table, renamed: Mapping[str, str]) -> None:
        self.entry: Callable[..., Any] = entry
        self.statement = select(
            *(
                _field_column(table.c[renamed.get(field.name, field.name)], field)
                for field in dataclasses.fields(entry)
            )
        )

    def load(self, connection: Connection) -> list[Any]:
        entry = self.entry
        return [entry(*row) for row in connection.execute(self.statement)]


def _field_column(column: Column[Any], field: dataclasses.Field[Any]) -> ColumnElement[Any]:
    if isinstance(column.type, CommaSeparatedList):
        return type_coerce(column, _StoredTuple()).label(field.name)
    if column.nullable and field.default not in (dataclasses.MISSING, None):
        # A NULL (a comment left empty) means the field's default when the entry has one.
        return func.coalesce(column, literal(field.default, column.type)).label(field.name)
    return column.label(field.name)


_USERS = _Loader(UserEntry, _table(User), {"password_hash": "password", "domain": "domain_name"})
_ALIASES = _Loader(AliasEntry, _table(Alias), {"domain": "domain_name"})
_TOKENS = _Loader(TokenEntry, _table(Token), {"password_hash": "password"})
_RELAYS = _Loader(RelayEntry, _table(Relay), {})

_domain = _table(Domain)
_alternative = _table(Alternative)
_generation = _table(StoreGeneration)


def load_snapshot(store: Store) -> Snapshot:
    """Read everything the gate answers from, and the generation that state carries.

    Reading both in one transaction lets the gate compare a later :func:`load_generation`
    against exactly the state it indexed: no change can slip between the two.
    """
    with store.reading() as connection:
        generation = connection.execute(
            select(_generation.c.generation).where(_generation.c.id == GENERATION_ROW_ID)
        ).scalar()
        directory = Directory.build(
            domains=connection.execute(select(_domain.c.name)).scalars().all(),
            alternatives=dict(
                connection.execute(select(_alternative.c.name, _alternative.c.domain_name)).all()
            ),
            relays=_RELAYS.load(connection),
            users=_USERS.load(connection),
            aliases=_ALIASES.load(connection),
            tokens=_TOKENS.load(connection),
            totp_domains=connection.execute(
                select(_domain.c.name).where(_domain.c.totp_required == true())
            )
            .scalars()
            .all(),
        )
    return Snapshot(int(generation or 0), directory)


def load_directory(store: Store) -> Directory:
    """The gate's index of the store as it is now (see :func:`load_snapshot`)."""
    return load_snapshot(store).directory


def load_generation(store: Store) -> int:
    """The store's change counter; poll it and reload when it differs from the snapshot's."""
    return store.generation()
