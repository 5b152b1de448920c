"""Relayed domains: mail for them is passed on to another server (Mailu's ``relay``).

The target (``smtp``) is written ``[mx:|lmtp:]host[:port]``, ``[address]:port`` or empty
for the domain's own MX, as in Mailu's admin UI; roost.core.transport turns it into the
Postfix transport(5) value and says what is wrong with one it cannot.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from roost.core.transport import TransportError, relay_transport
from roost.store.entities.fields import Field, text
from roost.store.entities.names import (
    ManageError,
    check_domain_name_free,
    domain_name,
    show_domain,
)
from roost.store.models import Relay

__all__ = ["FIELDS", "KEY", "add_relay", "check_target", "delete_relay", "list_relays"]

#: The smtp column's width (Mailu: String(80)).
TARGET_MAX = 80


def _target(value: Any) -> str:
    """Mailu's API may store NULL; it means the same as empty (MX of the relayed domain)."""
    return "" if value is None else text(None)(value)


KEY = "name"
FIELDS: tuple[Field, ...] = (
    Field("name", read=lambda r: show_domain(r.name)),
    Field("comment", text(255), "", read=lambda r: r.comment or ""),
    Field("smtp", _target, "", read=lambda r: r.smtp or ""),
)


def check_target(name: str, smtp: str) -> str:
    """The relay target ``smtp`` of the relayed domain ``name`` (stored form), checked."""
    try:
        relay_transport(name, smtp)
    except TransportError as exc:
        raise ManageError(str(exc)) from None
    if len(smtp) > TARGET_MAX:
        raise ManageError(f"relay target {smtp!r} is longer than {TARGET_MAX} characters")
    return smtp


def add_relay(session: Session, name: str, smtp: str = "") -> Relay:
    """Relay mail for ``name`` to ``smtp`` (empty: the domain's MX)."""
    stored = domain_name(name)
    check_domain_name_free(session, stored)
    relay = Relay(name=stored, smtp=check_target(stored, smtp.strip()))
    session.add(relay)
    return relay


def delete_relay(session: Session, name: str) -> None:
    stored = domain_name(name)
    relay = session.get(Relay, stored)
    if relay is None:
        raise ManageError(f"relayed domain '{show_domain(stored)}' does not exist")
    session.delete(relay)


def list_relays(session: Session) -> list[Relay]:
    return list(session.scalars(select(Relay).order_by(Relay.name)))
