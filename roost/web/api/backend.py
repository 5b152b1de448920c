"""How the API reaches the store, and how refusals become Mailu's answers.

Reads share one store opened at the first request (:func:`roost.store.work.open_store`, the
same schema check every front end makes); every change is one
:func:`roost.store.work.change` transaction, which commits and then asks the gate to reload.
Nothing here holds a rule: the entity modules do, and their :class:`ManageError` becomes a
400 with the rule book's message (a duplicate or a full domain a 409, as Mailu answers).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from roost.settings import Settings
from roost.store import work
from roost.store.db import Store
from roost.store.entities.fields import Field
from roost.store.entities.names import ManageError

__all__ = ["ApiError", "Backend", "conflict", "invalid", "parsed"]

log = logging.getLogger("roost.web.api")

T = TypeVar("T")


class ApiError(Exception):
    """An answer other than success: Mailu's ``{"code": <status>, "message": <text>}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def conflict(check: Callable[[], T]) -> T:
    """Run an entity check whose refusal Mailu answers with 409 (exists, in use, full)."""
    try:
        return check()
    except ManageError as exc:
        raise ApiError(409, str(exc)) from None


def invalid(check: Callable[[], T]) -> T:
    """Run an entity parser; its refusal (ManageError or the parsers' ValueError) is a 400."""
    try:
        return check()
    except ValueError as exc:  # ManageError is a ValueError
        raise ApiError(400, str(exc)) from None


def parsed(fields: Sequence[Field], name: str, value: Any) -> Any:
    """``value`` checked by the parser the entity declares for its field ``name`` (400)."""
    parse = next(f.parse for f in fields if f.name == name and f.parse is not None)
    return invalid(lambda: parse(value))


class Backend:
    """The store as the API uses it: a shared reader and one unit of work per change."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: Store | None = None
        self._lock = threading.Lock()

    def _reader(self) -> Store:
        with self._lock:
            if self._store is None:
                self._store = work.open_store(self.settings)
            return self._store

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with self._reader().session() as session:
            yield session

    @contextmanager
    def changing(self) -> Iterator[Session]:
        """One transaction through the unit of work; a gate that does not answer is only
        logged (the change is committed and the gate's poll of the store picks it up)."""
        with work.change(self.settings, warn=log.warning) as session:
            yield session

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.dispose()
                self._store = None
