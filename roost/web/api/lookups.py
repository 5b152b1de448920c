"""Finding the object a path names, with Mailu's 400 (unreadable) and 404 (absent) answers."""

from __future__ import annotations

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


def stored_domain(text: str) -> str:
    """The stored form of a domain name from a path or body (IDN to punycode), or 400."""
    return invalid(lambda: domain_name(text))


def stored_email(text: str) -> str:
    """The stored form of an address (domain part punycoded, lower case), or 400."""
    return invalid(lambda: parse_email(text))


def find_domain(session: Session, text: str) -> Domain:
    name = stored_domain(text)
    domain = session.get(Domain, name)
    if domain is None:
        raise ApiError(404, f"Domain {show_domain(name)} does not exist")
    return domain


def find_user(session: Session, text: str) -> User:
    email = stored_email(text)
    user = session.get(User, email)
    if user is None:
        raise ApiError(404, f"User {show_email(email)} cannot be found")
    return user


def find_alias(session: Session, text: str) -> Alias:
    # A wildcard alias's local part is a pattern ('%'), which no address parser accepts.
    local, at, domain = text.strip().rpartition("@")
    if not at or not local:
        raise ApiError(400, f"Invalid alias {text!r}: expected local@domain")
    email = f"{local.lower()}@{stored_domain(domain)}"
    alias = session.get(Alias, email)
    if alias is None:
        raise ApiError(404, f"Alias {show_email(email)} cannot be found")
    return alias


def find_alternative(session: Session, text: str) -> Alternative:
    name = stored_domain(text)
    alternative = session.get(Alternative, name)
    if alternative is None:
        raise ApiError(404, f"Alternative domain {show_domain(name)} does not exist")
    return alternative


def find_relay(session: Session, text: str) -> Relay:
    name = stored_domain(text)
    relay = session.get(Relay, name)
    if relay is None:
        raise ApiError(404, f"Relayed domain {show_domain(name)} cannot be found")
    return relay
