"""The unit of work every front end uses: open the store, change it, tell the gate.

A change is one transaction: committed when the block ends without error, rolled back
otherwise, and then the running gate is asked to reload over its control socket so the
next lookup sees it (the gate also polls the store's generation, so a gate that does not
answer only delays the change). Reading opens the same checked store without the reload.

Front ends never migrate implicitly: the schema is brought up to date by ``roost init``
or ``roost up`` (:func:`roost.bootstrap.prepare.prepare_store`), except where a front end
asks for it (``config-import`` into a new server, as Mailu's migration guide has users do).

What does not change while a process runs is made once per process: the schema head this
Roost needs (read from its migration scripts) and, for :func:`read` and :func:`change`,
the store's engine and its pool of connections (per database, per process, and for SQLite
per file: a file replaced under the same name gets a new engine). So a request pays only
its own queries, plus one: every transaction first reads the store's schema revision and
refuses a store that a newer or older Roost has migrated meanwhile, as at the first open.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import column, select, table
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from roost.layout import Layout
from roost.settings import Settings
from roost.store import dkimkeys
from roost.store.db import Store, StoreError, alembic_config

__all__ = ["change", "open_store", "read", "reload_gate", "schema_head"]

log = logging.getLogger("roost.store")

Warn = Callable[[str], None]

#: Alembic's bookkeeping table, as far as the schema check reads it.
_ALEMBIC_VERSION = table("alembic_version", column("version_num"))


@lru_cache(maxsize=1)
def schema_head() -> str | None:
    """The schema revision this Roost needs: its newest migration (read once)."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _refusal(shown: str, revision: str | None) -> StoreError:
    head = schema_head()
    if revision is None:
        return StoreError(f"the store {shown} is not initialised: run roost init first")
    return StoreError(
        f"the store {shown} has schema {revision}, this Roost needs {head}: run roost init first"
    )


def _sqlite_file(url: URL) -> Path | None:
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database)
    return None


def _file_identity(url: URL) -> tuple[int, int] | None:
    """The SQLite file's identity (device, inode); refuses a file that is not there.

    Checked before opening, which would create the file and its directory: a mistyped
    ROOT must not leave an empty store behind.
    """
    path = _sqlite_file(url)
    if path is None:
        return None
    try:
        found = path.stat()
    except FileNotFoundError:
        shown = url.render_as_string(hide_password=True)
        raise _refusal(shown, None) from None
    return found.st_dev, found.st_ino


def open_store(settings: Settings) -> Store:
    """Open the store and refuse one that ``roost init`` has not prepared.

    Raises :class:`StoreError` naming the store and what to run; the store is disposed of
    before raising. The caller owns the store (and disposes of it).
    """
    _file_identity(make_url(settings.database_uri))
    store = Store.from_settings(settings)
    revision = store.revision()
    if revision != schema_head():
        store.dispose()
        raise _refusal(store.url, revision)
    return store


_lock = threading.Lock()
#: The checked store of each database this process reads: (pid, URL) -> (file, store),
#: the most recently used last. A daemon reads one database; a test process reads many,
#: so only the last few keep their connections open.
_stores: dict[tuple[int, str], tuple[tuple[int, int] | None, Store]] = {}
_KEPT = 4


def _shared_store(settings: Settings) -> Store:
    """This process's checked store for ``settings`` (opened and checked at first use)."""
    uri = settings.database_uri
    identity = _file_identity(make_url(uri))
    key = (os.getpid(), uri)
    with _lock:
        kept = _stores.pop(key, None)
        if kept is not None and kept[0] == identity:
            _stores[key] = kept
            return kept[1]
        if kept is not None:
            # The file was replaced (a new ROOT at the same path): its pool is worthless.
            kept[1].dispose()
        store = open_store(settings)
        _stores[key] = (identity, store)
        while len(_stores) > _KEPT:
            _stores.pop(next(iter(_stores)))[1].dispose()
        return store


def _forget(settings: Settings) -> None:
    with _lock:
        kept = _stores.pop((os.getpid(), settings.database_uri), None)
    if kept is not None:
        kept[1].dispose()


def _check_schema(session: Session, store: Store) -> None:
    """Refuse the store when its schema is no longer this Roost's (one small query)."""
    try:
        found = session.scalars(select(_ALEMBIC_VERSION.c.version_num)).all()
    except DBAPIError:
        # No version table at all, or the database is unwell: let Alembic's own reading
        # of the revision say which (it raises StoreError for a database that is unwell).
        session.rollback()
        found = [revision] if (revision := store.revision()) is not None else []
    revision = found[0] if len(found) == 1 else (",".join(found) if found else None)
    if revision != schema_head():
        raise _refusal(store.url, revision)


def is_new(settings: Settings) -> bool:
    """True when the store has never been initialised (no file, or no schema yet)."""
    url = make_url(settings.database_uri)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        return True
    store = Store.from_settings(settings)
    try:
        return store.revision() is None
    finally:
        store.dispose()


@contextmanager
def read(settings: Settings) -> Iterator[Session]:
    """One transaction on the checked store (committed at the end, as reads change nothing)."""
    store = _shared_store(settings)
    with store.session() as session:
        try:
            _check_schema(session, store)
        except StoreError:
            _forget(settings)  # opened again, and checked in full, next time
            raise
        dkimkeys.bind(session, settings)  # a deleted domain's DKIM key goes with it
        yield session


@contextmanager
def change(settings: Settings, warn: Warn | None = None) -> Iterator[Session]:
    """One transaction that changes the store; after the commit, ask the gate to reload.

    ``warn`` receives the one-line warning when a running gate does not answer (default:
    the ``roost.store`` log). Nothing is reloaded when the block raises.
    """
    with read(settings) as session:
        yield session
    reload_gate(settings, warn)


def reload_gate(settings: Settings, warn: Warn | None = None) -> None:
    """Ask the gate to load the change now; without a gate running there is nothing to do.

    A gate that fails to reload is a warning, not an error: the change is committed, and
    the gate's poll of the store generation picks it up anyway.
    """
    from roost.gate.control import GateControlError, request_reload

    try:
        request_reload(Layout(settings))
    except GateControlError as exc:
        (warn or log.warning)(str(exc))
