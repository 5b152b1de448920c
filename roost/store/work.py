"""The unit of work every front end uses: open the store, change it, tell the gate.

A change is one transaction: committed when the block ends without error, rolled back
otherwise, and then the running gate is asked to reload over its control socket so the
next lookup sees it (the gate also polls the store's generation, so a gate that does not
answer only delays the change). Reading opens the same checked store without the reload.

Front ends never migrate implicitly: the schema is brought up to date by ``roost init``
or ``roost up`` (:func:`roost.bootstrap.prepare.prepare_store`), except where a front end
asks for it (``config-import`` into a new server, as Mailu's migration guide has users do).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from roost.layout import Layout
from roost.settings import Settings
from roost.store.db import Store, StoreError, alembic_config

__all__ = ["change", "open_store", "read", "reload_gate"]

log = logging.getLogger("roost.store")

Warn = Callable[[str], None]


def open_store(settings: Settings) -> Store:
    """Open the store and refuse one that ``roost init`` has not prepared.

    Raises :class:`StoreError` naming the store and what to run; the store is disposed of
    before raising.
    """
    url = make_url(settings.database_uri)
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        # Checked before opening, which would create the file and its directory: a
        # mistyped ROOT must not leave an empty store behind.
        raise StoreError(f"the store {shown} is not initialised: run roost init first")
    store = Store.from_settings(settings)
    revision = store.revision()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if revision != head:
        store.dispose()
        if revision is None:
            raise StoreError(f"the store {store.url} is not initialised: run roost init first")
        raise StoreError(
            f"the store {store.url} has schema {revision}, this Roost needs {head}: "
            "run roost init first"
        )
    return store


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
    store = open_store(settings)
    try:
        with store.session() as session:
            yield session
    finally:
        store.dispose()


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
