"""Alternative domains: every ``x@alternative`` is ``x@domain``.

In Mailu's export format they are a list on their domain (``domain[].alternatives``), so
they have no fields of their own; the rule is the shared domain name space.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from roost.store.entities.names import (
    ManageError,
    check_domain_name_free,
    domain_name,
    require_domain,
    show_domain,
)
from roost.store.models import Alternative

__all__ = ["add_alternative", "delete_alternative", "list_alternatives"]


def add_alternative(session: Session, name: str, domain: str) -> Alternative:
    """Make ``name`` an alternative domain: every ``x@name`` is ``x@domain``."""
    stored = domain_name(name)
    parent = require_domain(session, domain_name(domain))
    check_domain_name_free(session, stored)
    alternative = Alternative(name=stored, domain=parent)
    session.add(alternative)
    return alternative


def delete_alternative(session: Session, name: str) -> None:
    stored = domain_name(name)
    alternative = session.get(Alternative, stored)
    if alternative is None:
        raise ManageError(f"alternative domain '{show_domain(stored)}' does not exist")
    session.delete(alternative)


def list_alternatives(session: Session) -> list[Alternative]:
    return list(session.scalars(select(Alternative).order_by(Alternative.name)))
