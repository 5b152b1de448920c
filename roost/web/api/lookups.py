"""Finding the object a path names, with Mailu's 400 (unreadable) and 404 (absent) answers."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy.orm import Session

from roost.store.entities.names import domain_name, parse_email, show_domain, show_email
from roost.store.models import Alias, Alternative, Domain, Relay, User
from roost.web.api.backend import ApiError, invalid

__all__ = [
    "find_alias",
    "find_alternative",
    "find_domain",
    "find_relay",
    "find_user",
    "stored_domain",
    "stored_email",
]

_Row = TypeVar("_Row", Domain, User, Alias, Alternative, Relay)


def stored_domain(text: str) -> str:
    """The stored form of a domain name from a path or body (IDN to punycode), or 400."""
    return invalid(lambda: domain_name(text))


def stored_email(text: str) -> str:
    """The stored form of an address (domain part punycoded, lower case), or 400."""
    return invalid(lambda: parse_email(text))


def _existing(session: Session, model: type[_Row], key: str, missing: str) -> _Row:
    """The row of ``model`` stored under ``key``, or Mailu's 404 with the ``missing`` text.

    Every lookup answers an absent object the same way; only the wording differs, as
    Mailu's does (some say "does not exist", others "cannot be found")."""
    found = session.get(model, key)
    if found is None:
        raise ApiError(404, missing)
    return found


def find_domain(session: Session, text: str) -> Domain:
    name = stored_domain(text)
    return _existing(session, Domain, name, f"Domain {show_domain(name)} does not exist")


def find_user(session: Session, text: str) -> User:
    email = stored_email(text)
    return _existing(session, User, email, f"User {show_email(email)} cannot be found")


def find_alias(session: Session, text: str) -> Alias:
    # A wildcard alias's local part is a pattern ('%'), which no address parser accepts.
    local, at, domain = text.strip().rpartition("@")
    if not at or not local:
        raise ApiError(400, f"Invalid alias {text!r}: expected local@domain")
    email = f"{local.lower()}@{stored_domain(domain)}"
    return _existing(session, Alias, email, f"Alias {show_email(email)} cannot be found")


def find_alternative(session: Session, text: str) -> Alternative:
    name = stored_domain(text)
    missing = f"Alternative domain {show_domain(name)} does not exist"
    return _existing(session, Alternative, name, missing)


def find_relay(session: Session, text: str) -> Relay:
    name = stored_domain(text)
    return _existing(session, Relay, name, f"Relayed domain {show_domain(name)} cannot be found")
