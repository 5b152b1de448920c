"""Aliases: their fields, their destinations and the operations on them.

With ``wildcard`` the local part is an SQL LIKE pattern, as in Mailu (``%`` any text, ``_``
one character; ``%`` alone is the catch-all).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from roost.core.address import AddressError, parse_address
from roost.core.directory import like_to_matcher
from roost.store.entities.domain import check_room, ensure_domain, in_domain
from roost.store.entities.fields import Field, boolean, optional, text
from roost.store.entities.names import (
    ManageError,
    check_address_free,
    parse_email,
    show_email,
    user_email,
)
from roost.store.models import Alias

__all__ = [
    "FIELDS",
    "KEY",
    "create_alias",
    "delete_alias",
    "list_aliases",
    "matching_wildcard",
    "parse_destinations",
]

KEY = "email"
FIELDS: tuple[Field, ...] = (
    Field("email", read=lambda a: show_email(a.email)),
    Field("comment", text(255), "", read=lambda a: a.comment or ""),
    Field("destination", read=lambda a: [show_email(d) for d in a.destination or []]),
    Field("disabled", boolean, False),
    Field("hostname", optional(text(255)), None),
    Field(
        "owner_email",
        optional(parse_email),
        None,
        read=lambda a: None if a.owner_email is None else show_email(a.owner_email),
    ),
    Field("wildcard", boolean, False),
)


def parse_destinations(destination: str | Iterable[str], what: str = "an alias") -> list[str]:
    """Split and check the destinations of ``what``; each must be a full address."""
    items = destination.split(",") if isinstance(destination, str) else list(destination)
    result: list[str] = []
    for item in items:
        entry = str(item).strip()
        if not entry:
            continue
        try:
            address = str(parse_address(entry))
        except AddressError as exc:
            raise ManageError(f"destination {exc}") from None
        if address not in result:
            result.append(address)
    if not result:
        raise ManageError(f"{what} needs at least one destination address")
    return result


def create_alias(
    session: Session,
    localpart: str,
    domain: str,
    destination: str | Sequence[str],
    wildcard: bool = False,
) -> Alias:
    """Create an alias; with ``wildcard`` the local part is a LIKE pattern (``%`` = all)."""
    email = user_email(localpart, domain, wildcard=wildcard)
    local, _, stored_domain = email.partition("@")
    destinations = parse_destinations(destination)
    parent = ensure_domain(session, stored_domain)
    check_address_free(session, email)
    check_room(session, parent, Alias)
    alias = Alias(
        email=email, localpart=local, domain=parent, wildcard=wildcard, destination=destinations
    )
    session.add(alias)
    return alias


def matching_wildcard(session: Session, email: str) -> Alias | None:
    """The wildcard alias of ``email``'s domain whose pattern matches its local part (the
    longest pattern first, as the gate resolves), enabled or not; None when none does.

    Mail to such an address reaches the alias's destinations today; an account created
    there (by a sign-up, say) would take it from them, as users are resolved before
    aliases.
    """
    local, _, domain = email.lower().rpartition("@")
    patterns = session.scalars(
        select(Alias).where(Alias.domain_name == domain, Alias.wildcard.is_(True))
    )
    for alias in sorted(patterns, key=lambda a: -len(a.localpart)):
        if like_to_matcher(alias.localpart)(local):
            return alias
    return None


def delete_alias(session: Session, email: str) -> None:
    alias = session.get(Alias, email)
    if alias is None:
        raise ManageError(f"alias '{show_email(email)}' does not exist")
    session.delete(alias)


def list_aliases(session: Session, domain: str | None = None) -> list[Alias]:
    query = select(Alias).order_by(Alias.domain_name, Alias.localpart)
    stored = in_domain(session, domain)
    if stored is not None:
        query = query.where(Alias.domain_name == stored)
    return list(session.scalars(query))
