"""How an entity declares its fields: one :class:`Field` per attribute of Mailu's format.

Each field says once what its value is (the parser that checks a document's value, which
also holds the field's rules), what it defaults to, and how it is read for export. The
exporter's column list and default-trimming, the importer's parsers and defaults, and the
values a new object starts with all come from the same declaration, so a field is added
or changed in one place.

Parsers take a raw document value (YAML/JSON: bool, int, str, list, None) and return the
value the store keeps, or raise :class:`ValueError` (:class:`ManageError` is one) with a
message that reads after the field's path: ``user[0].quota_bytes : expected a whole number``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from roost.settings import Settings

__all__ = [
    "REQUIRED",
    "Field",
    "boolean",
    "choice",
    "day",
    "default_of",
    "dump",
    "integer",
    "moment",
    "optional",
    "text",
]

Parser = Callable[[Any], Any]


class _Required:
    """The default of a field that has none: always exported, needed to create."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Field:
    """One attribute of an entity in Mailu's export format.

    ``parse`` is None for a field the entity's importer code handles itself (keys, lists
    merged with Mailu's ``-value`` notation, nested objects, secrets). ``default`` is the
    stored value (a callable takes the settings: DEFAULT_QUOTA); ``exported`` is False for
    fields that are only read (``hash_password``); ``full_only`` fields are
    run-time state exported only with ``--full``. ``column`` says whether the value is the
    model attribute of the same name, set as is.
    """

    name: str
    parse: Parser | None = None
    default: Any = REQUIRED
    read: Callable[[Any], Any] | None = None
    exported: bool = True
    full_only: bool = False

    @property
    def column(self) -> bool:
        return self.parse is not None

    def value(self, obj: Any) -> Any:
        """The field's exported value for the stored object ``obj``."""
        if self.read is not None:
            return self.read(obj)
        return dump(getattr(obj, self.name))

    def stored_default(self, settings: Settings) -> Any:
        """The default as the store keeps it (a fresh list for list fields)."""
        value = self.default(settings) if callable(self.default) else self.default
        return list(value) if isinstance(value, (list, tuple)) else value


def default_of(fields: Sequence[Field], settings: Settings) -> dict[str, Any]:
    """Each exported field's default as exported (dates as text); REQUIRED stays."""
    return {
        f.name: f.default if f.default is REQUIRED else dump(f.stored_default(settings))
        for f in fields
    }


def dump(value: Any) -> Any:
    """A stored value as a document holds it: dates as ISO text, lists as lists."""
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return list(value)
    return value


# -- parsers -------------------------------------------------------------------------------


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def integer(minimum: int, maximum: int | None = None) -> Parser:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("expected a whole number")
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" to {maximum}" if maximum is not None else " or more"
            raise ValueError(f"{value} is out of range ({minimum}{upper})")
        return value

    return parse


def text(limit: int | None, required: bool = False) -> Parser:
    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("expected text")
        if limit is not None and len(value) > limit:
            raise ValueError(f"longer than {limit} characters")
        if required and not value.strip():
            raise ValueError("must not be empty")
        return value

    return parse


def optional(parse: Parser) -> Parser:
    return lambda value: None if value is None else parse(value)


def choice(*choices: str) -> Parser:
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"{value!r}: accepts {', '.join(choices)}")
        return str(value)

    return parse


def day(value: Any) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)")


def moment(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a date and time (RFC 3339)")
