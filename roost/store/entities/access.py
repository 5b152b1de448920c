"""Domain access grants: who may create anonymous aliases in a domain (Mailu's
``domain_access`` table), and the rule that decides it.

A user may create anonymous aliases in a domain when they are a global administrator (every
domain), manage the domain, hold a grant for it, or belong to it while the domain has
``anonmail_enabled`` on. A grant is unique per (domain, user); deleting either deletes it.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from roost.store.entities.names import (
    ManageError,
    domain_name,
    parse_email,
    require_domain,
    show_domain,
    show_email,
)
from roost.store.models import Domain, DomainAccess, User

__all__ = [
    "AccessExists",
    "UnknownUser",
    "anonmail_domains",
    "grant_access",
    "list_access",
    "revoke_access",
]


class AccessExists(ManageError):
    """The user holds a grant for the domain already."""


class UnknownUser(ManageError):
    """The grant names no user."""


def list_access(session: Session, domain: str) -> list[DomainAccess]:
    """The grants of ``domain``, by user address."""
    parent = require_domain(session, domain_name(domain))
    query = (
        select(DomainAccess)
        .where(DomainAccess.domain_name == parent.name)
        .order_by(DomainAccess.user_email, DomainAccess.id)
    )
    return list(session.scalars(query))


def grant_access(session: Session, domain: str, email: str, comment: str = "") -> DomainAccess:
    """Let the user ``email`` create anonymous aliases in ``domain``."""
    parent = require_domain(session, domain_name(domain))
    try:
        stored = parse_email(email)
    except ManageError as exc:
        raise UnknownUser(str(exc)) from None
    user = session.get(User, stored)
    if user is None:
        raise UnknownUser(f"user '{show_email(stored)}' does not exist")
    found = session.scalar(
        select(DomainAccess.id).where(
            DomainAccess.domain_name == parent.name, DomainAccess.user_email == user.email
        )
    )
    if found is not None:
        raise AccessExists(
            f"{show_email(user.email)} may create anonymous aliases in "
            f"{show_domain(parent.name)} already"
        )
    if len(comment) > 255:
        raise ManageError("comment: longer than 255 characters")
    access = DomainAccess(domain=parent, user=user, comment=comment)
    session.add(access)
    session.flush()
    return access


def revoke_access(session: Session, domain: str, access_id: int) -> DomainAccess:
    """Delete the grant ``access_id`` of ``domain``; returns it (deleted)."""
    parent = require_domain(session, domain_name(domain))
    access = session.get(DomainAccess, access_id)
    if access is None or access.domain_name != parent.name:
        raise ManageError(f"domain '{show_domain(parent.name)}' has no access grant {access_id}")
    session.delete(access)
    return access


def anonmail_domains(session: Session, email: str) -> list[str]:
    """The domains (stored names, sorted) where ``email`` may create anonymous aliases.

    None for a user that does not exist or is disabled.
    """
    user = session.get(User, email)
    if user is None or not user.enabled:
        return []
    if user.global_admin:
        return list(session.scalars(select(Domain.name).order_by(Domain.name)))
    names = {d.name for d in user.manager_of}
    names.update(
        session.scalars(
            select(DomainAccess.domain_name).where(DomainAccess.user_email == user.email)
        )
    )
    if user.domain.anonmail_enabled:
        names.add(user.domain_name)
    return sorted(names)
