"""What config-export and config-import share: Mailu's sections and keys, and the entities'
field declarations (roost.store.entities) from which both take their fields and defaults."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from roost.settings import Settings
from roost.store.entities import alias, domain, fetch, relay, token, user
from roost.store.entities.fields import REQUIRED, Field, default_of
from roost.store.models import Alias, Domain, Relay, User

__all__ = [
    "FIELDS",
    "HIDDEN",
    "KEYS",
    "KINDS",
    "PRUNE",
    "REQUIRED",
    "SECTIONS",
    "ConfigValidationError",
    "all_rows",
    "default_values",
    "exported",
]

HIDDEN = "<hidden>"
SECTIONS = ("domain", "user", "alias", "relay")
#: Object kinds in the order the counters list them.
KINDS = ("domain", "alternative", "user", "token", "fetch", "alias", "relay")
PRUNE = "-prune-"


class ConfigValidationError(Exception):
    """The document cannot be imported; ``errors`` holds ``(path, message)`` pairs."""

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__(f"{len(self.errors)} errors occurred during input validation")

    def lines(self) -> list[str]:
        """Mailu's report: one headline, then ``- <path> : <message>`` per problem."""
        return [f"[ValidationError] {self}"] + [f"- {p} : {m}" for p, m in self.errors]


KEYS = {"domain": "name", "user": "email", "alias": "email", "relay": "name"}

#: Each kind's fields, declared once by its entity module.
FIELDS: dict[str, tuple[Field, ...]] = {
    "domain": domain.FIELDS,
    "user": user.FIELDS,
    "token": token.FIELDS,
    "fetch": fetch.FIELDS,
    "alias": alias.FIELDS,
    "relay": relay.FIELDS,
}


def default_values(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each field's default as exported; ``REQUIRED`` fields have none."""
    return {kind: default_of(fields, settings) for kind, fields in FIELDS.items()}


def exported(kind: str) -> tuple[Field, ...]:
    return tuple(f for f in FIELDS[kind] if f.exported)


def all_rows(session: Session, section: str) -> list[Any]:
    model: Any = {"domain": Domain, "user": User, "alias": Alias, "relay": Relay}[section]
    key = Domain.name if model is Domain else Relay.name if model is Relay else model.email
    return list(session.scalars(select(model).order_by(key)))
