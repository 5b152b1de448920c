"""Opening the store, its sessions, its migrations and its change counter.

Several processes write the store (the CLI, the web app, an import) while the gate reads it.
Two things make that safe and visible:

* every committing session that changed a row also increments the single
  ``roost_generation`` row in the same transaction, so a reader learns of any writer's
  change by polling one row;
* on SQLite the database runs in WAL mode (readers never block the writer) with a busy
  timeout (a writer waits for another writer instead of failing at once) and with foreign
  keys enforced (SQLite leaves them off per connection unless asked).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError
from sqlalchemy import Engine, Table, create_engine, event, inspect, select, update
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker
from sqlalchemy.orm.session import SessionTransaction

from roost.settings import Settings
from roost.store.models import StoreGeneration

__all__ = ["MIGRATIONS_DIR", "Store", "StoreError", "alembic_config"]

#: Alembic's script directory, inside the package so an installed Roost can migrate.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: How long an SQLite writer waits for another writer's lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 15_000

#: The id of the one ``roost_generation`` row (created by the first migration).
GENERATION_ROW_ID = 1

#: Seconds to wait for a database server to accept a connection.
CONNECT_TIMEOUT_S = 10

_CHANGED = "roost_store_changed"
_generation = cast(Table, StoreGeneration.__table__)


class StoreError(RuntimeError):
    """The store cannot be opened, migrated or reached; the message names the database."""


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration built in code: no ``alembic.ini`` is needed or shipped.

    ``connection`` is handed to ``env.py``; a developer adding a revision passes one to
    ``alembic.command.revision(..., autogenerate=True)`` (see ``migrations/README.md``).
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


class Store:
    """One database holding Roost's state; create it with :meth:`open` or :meth:`from_settings`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        _track_changes(self._sessions)

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, uri: str) -> Store:
        """Connect to ``uri`` (an SQLAlchemy URL) and check that the database answers."""
        url = _parse_url(uri)
        try:
            engine = create_engine(url, **_engine_options(url))
        except (NoSuchModuleError, ImportError) as exc:
            raise StoreError(
                f"database {_display(url)}: no driver for {url.drivername} ({exc}); "
                "install roost[postgresql] or roost[mysql]"
            ) from None
        if url.get_backend_name() == "sqlite":
            event.listen(engine, "connect", _configure_sqlite)
        store = cls(engine)
        try:
            with engine.connect():
                pass
        except DBAPIError as exc:
            engine.dispose()
            hint = " (does its directory exist?)" if url.get_backend_name() == "sqlite" else ""
            raise StoreError(f"cannot connect to {store.url}: {_reason(exc)}{hint}") from None
        return store

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        """Open ``settings.database_uri``, creating the SQLite file's directory if needed."""
        uri = settings.database_uri
        url = _parse_url(uri)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        return cls.open(uri)

    @property
    def url(self) -> str:
        """The database URL with its password masked, fit for messages and logs."""
        return _display(self.engine.url)

    def dispose(self) -> None:
        """Close every pooled connection (before a fork, or when the process is done)."""
        self.engine.dispose()

    # -- using -----------------------------------------------------------------------------

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed when the block ends, rolled back if it raises.

        Objects stay readable after the block (``expire_on_commit=False``): sessions are
        short, so values read just before the commit are what the caller wants to show.
        A lost connection or a lock that outlasted the busy timeout raises StoreError;
        constraint violations (``IntegrityError``) pass through for the caller to explain.
        Changes made through ORM objects and ``insert``/``update``/``delete`` statements
        count towards the generation; raw SQL text does not, so do not write with it.
        """
        session = self._sessions()
        try:
            yield session
            session.commit()
        except DBAPIError as exc:
            session.rollback()
            if exc.connection_invalidated or isinstance(exc, OperationalError):
                raise StoreError(f"database {self.url}: {_reason(exc)}") from exc
            raise
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection whose queries all see the same committed state of the store.

        The snapshot loader reads several tables; without one transaction around them a
        writer committing in between would give it users from before and aliases from
        after. SQLite's driver only opens a transaction before a write, so one is begun
        explicitly (in WAL mode a read transaction never blocks the writer); servers are
        asked for REPEATABLE READ, which is a snapshot on PostgreSQL and InnoDB.
        """
        try:
            with self.engine.connect() as connection:
                if connection.dialect.name == "sqlite":
                    connection.exec_driver_sql("BEGIN")
                else:
                    connection = connection.execution_options(isolation_level="REPEATABLE READ")
                try:
                    yield connection
                finally:
                    connection.rollback()
        except DBAPIError as exc:
            raise StoreError(f"database {self.url}: {_reason(exc)}") from exc

    def generation(self) -> int:
        """The change counter; 0 when its row is missing. Cheap enough to poll every second."""
        try:
            with self.engine.connect() as connection:
                value = connection.execute(
                    select(_generation.c.generation).where(_generation.c.id == GENERATION_ROW_ID)
                ).scalar()
        except DBAPIError as exc:
            raise StoreError(
                f"cannot read the store generation from {self.url}: {self._explain(exc)}"
            ) from None
        return int(value or 0)

    def _explain(self, exc: DBAPIError) -> str:
        """The driver's reason, or that the schema is missing when that is the cause."""
        try:
            migrated = inspect(self.engine).has_table(_generation.name)
        except DBAPIError:
            return _reason(exc)
        if not migrated:
            return "the database has no Roost schema yet; run the migrations (Store.upgrade)"
        return _reason(exc)

    # -- migrating -------------------------------------------------------------------------

    def revision(self) -> str | None:
        """The Alembic revision the database is at; None for a database never migrated."""
        try:
            with self.engine.connect() as connection:
                return MigrationContext.configure(connection).get_current_revision()
        except DBAPIError as exc:
            raise StoreError(f"database {self.url}: {_reason(exc)}") from None

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` (the newest by default); safe to run every start."""
        self._migrate(command.upgrade, revision)

    def downgrade(self, revision: str) -> None:
        """Take the schema back to ``revision`` (``base`` drops every table)."""
        self._migrate(command.downgrade, revision)

    def _migrate(self, step: Callable[[Config, str], None], revision: str) -> None:
        """Run one Alembic command in a single transaction on one connection.

        On SQLite, foreign keys are switched off while migrating: Alembic's batch mode
        rebuilds a table by dropping and recreating it, and with ``ON DELETE CASCADE``
        enforced that drop would delete every dependent row. They are checked afterwards.
        An explicit BEGIN makes SQLite's DDL atomic as well (the driver would not open a
        transaction for it), so a failed migration leaves the file as it was.
        """
        sqlite = self.engine.dialect.name == "sqlite"
        try:
            with self.engine.connect() as connection:
                if sqlite:
                    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
                    connection.commit()
                    connection.exec_driver_sql("BEGIN")
                try:
                    if not connection.in_transaction():
                        connection.begin()
                    step(alembic_config(connection), revision)
                    if sqlite:
                        _check_foreign_keys(connection)
                    connection.commit()
                finally:
                    if sqlite:
                        connection.rollback()
                        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                        connection.commit()
        except CommandError as exc:
            raise StoreError(f"cannot migrate {self.url} to {revision!r}: {exc}") from None
        except DBAPIError as exc:
            raise StoreError(f"cannot migrate {self.url} to {revision!r}: {_reason(exc)}") from None


# -- engine configuration ------------------------------------------------------------------


def _parse_url(uri: str) -> URL:
    try:
        return make_url(uri)
    except ArgumentError:
        raise StoreError(f"database URL {uri!r} is not a valid SQLAlchemy URL") from None


def _engine_options(url: URL) -> dict[str, Any]:
    backend = url.get_backend_name()
    if backend == "sqlite":
        return {}
    # A server that went away must fail a command in seconds, not hang it.
    connect_args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S}
    options: dict[str, Any] = {"pool_pre_ping": True, "connect_args": connect_args}
    if backend == "mysql":
        # Display names and local parts may lie beyond the BMP; MySQL's "utf8" stops there.
        connect_args["charset"] = "utf8mb4"
        # MariaDB closes idle connections after wait_timeout (8 h by default).
        options["pool_recycle"] = 3600
    return options


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """Per-connection settings SQLite does not remember (journal_mode is remembered)."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def _check_foreign_keys(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        tables = sorted({str(row[0]) for row in broken})
        raise StoreError("migration left rows pointing at missing parents in " + ", ".join(tables))


def _display(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _reason(exc: DBAPIError) -> str:
    """The driver's own message, without SQLAlchemy's SQL text and parameters."""
    return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)


# -- change counting -----------------------------------------------------------------------


def _track_changes(sessions: sessionmaker[Session]) -> None:
    """Count a commit in ``roost_generation`` when its transaction changed any row."""
    event.listen(sessions, "before_flush", _note_flush)
    event.listen(sessions, "do_orm_execute", _note_statement)
    event.listen(sessions, "before_commit", _bump_generation)
    event.listen(sessions, "after_transaction_end", _forget_changes)


def _note_flush(session: Session, _flush_context: Any, _instances: Any) -> None:
    if (
        session.new
        or session.deleted
        or any(session.is_modified(instance) for instance in session.dirty)
    ):
        session.info[_CHANGED] = True


def _note_statement(state: ORMExecuteState) -> Any:
    """Bulk ``insert``/``update``/``delete`` statements bypass the flush; count them here."""
    if not (state.is_insert or state.is_update or state.is_delete):
        return None
    result = state.invoke_statement()
    if getattr(result, "rowcount", -1) != 0:
        state.session.info[_CHANGED] = True
    return result


def _bump_generation(session: Session) -> None:
    # Commit flushes only after this hook runs; flush first so pending objects count.
    session.flush()
    if not session.info.pop(_CHANGED, False):
        return
    # Core execution on the session's connection: same transaction, no ORM events.
    connection = session.connection()
    bumped = connection.execute(
        update(_generation)
        .where(_generation.c.id == GENERATION_ROW_ID)
        .values(generation=_generation.c.generation + 1)
    )
    if bumped.rowcount == 0:  # the row was deleted by hand: start counting again
        connection.execute(_generation.insert().values(id=GENERATION_ROW_ID, generation=1))


def _forget_changes(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_CHANGED, None)
