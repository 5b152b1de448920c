"""Domain managers: users who administer a domain (Mailu's ``manager`` table).

In Mailu's export format they are a list on the user (``user[].manager_of``).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from roost.store.entities.names import (
    domain_name,
    parse_email,
    require_domain,
    require_user,
    user_email,
)
from roost.store.models import User

__all__ = ["add_manager", "remove_manager", "set_manager"]


def set_manager(session: Session, domain: str, localpart: str) -> User:
    """Make ``localpart@domain`` a manager of ``domain`` (no change if it already is)."""
    parent = require_domain(session, domain_name(domain))
    return add_manager(session, parent.name, user_email(localpart, parent.name))


def add_manager(session: Session, domain: str, email: str) -> User:
    """Make the user ``email`` a manager of ``domain`` (no change if it already is).

    The user may belong to any domain: Mailu lets an administrator pick a manager among
    the users of every domain they manage.
    """
    parent = require_domain(session, domain_name(domain))
    user = require_user(session, parse_email(email))
    if parent not in user.manager_of:
        user.manager_of.append(parent)
    return user


def remove_manager(session: Session, domain: str, email: str) -> User:
    """Stop ``email`` managing ``domain`` (no change if it does not); the user stays."""
    parent = require_domain(session, domain_name(domain))
    user = require_user(session, parse_email(email))
    if parent in user.manager_of:
        user.manager_of.remove(parent)
    return user
