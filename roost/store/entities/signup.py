"""Sign-ups: accounts and domains that people create for themselves (Mailu's ``/user/signup``
and ``/domain/signup``).

Both go through the same operations as every other front end (the user entity's
:func:`~roost.store.entities.user.create_user`, with its room check against the domain's
``max_users``; the domain entity's :func:`~roost.store.entities.domain.create_domain`, with
its shared name space), plus the rules only a sign-up has:

* an account may be signed up only in a domain with ``signup_enabled``;
* the address must be free of users and aliases, wildcard patterns included (a catch-all
  closes a domain to sign-ups, as in Mailu);
* the new user's quota is the domain's ``max_quota_bytes``, or DEFAULT_QUOTA when the
  domain has no cap, and the password must be changed at the first sign-in (Mailu forces
  both);
* a registered domain gets 10 users, 10 aliases and DEFAULT_QUOTA per user, and the
  person who registered it manages it.

Whether the domain's MX points here is a DNS question the web asks before it calls
:func:`sign_up_domain`; this module does no I/O beyond the session.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from roost.settings import Settings
from roost.store.entities import user as users
from roost.store.entities.alias import matching_wildcard
from roost.store.entities.domain import create_domain
from roost.store.entities.names import (
    ManageError,
    check_address_free,
    domain_name,
    require_user,
    show_domain,
    show_email,
    user_email,
)
from roost.store.models import Domain, User

__all__ = [
    "SIGNUP_MAX_ALIASES",
    "SIGNUP_MAX_USERS",
    "OpenDomain",
    "open_domains",
    "sign_up_domain",
    "sign_up_user",
    "signup_domain",
    "signup_open",
]

#: Limits of a domain registered through the sign-up page (Mailu's).
SIGNUP_MAX_USERS = 10
SIGNUP_MAX_ALIASES = 10


@dataclass(frozen=True, slots=True)
class OpenDomain:
    """A domain that takes sign-ups: its stored and shown name."""

    name: str
    shown: str


def _users_per_domain(session: Session) -> dict[str, int]:
    rows = session.execute(select(User.domain_name, func.count()).group_by(User.domain_name))
    return {name: int(n) for name, n in rows}


def _has_room(domain: Domain, counts: dict[str, int]) -> bool:
    return domain.max_users < 0 or counts.get(domain.name, 0) < domain.max_users


def open_domains(session: Session) -> list[OpenDomain]:
    """Domains with ``signup_enabled`` and room for one more user, by name."""
    candidates = list(
        session.scalars(select(Domain).where(Domain.signup_enabled.is_(True)).order_by(Domain.name))
    )
    if not candidates:
        return []
    counts = _users_per_domain(session)
    return [OpenDomain(d.name, show_domain(d.name)) for d in candidates if _has_room(d, counts)]


def signup_open(session: Session, settings: Settings) -> bool:
    """Whether the sign-in page should offer to sign up: a domain takes sign-ups, or
    DOMAIN_REGISTRATION lets anyone register one."""
    if settings.DOMAIN_REGISTRATION:
        return True
    return (
        session.scalar(select(Domain.name).where(Domain.signup_enabled.is_(True)).limit(1))
        is not None
    )


def signup_domain(session: Session, name: str) -> Domain:
    """The domain ``name`` if it takes sign-ups, else an error that says it does not."""
    stored = domain_name(name)
    domain = session.get(Domain, stored)
    if domain is None or not domain.signup_enabled:
        raise ManageError(f"domain '{show_domain(stored)}' does not take sign-ups")
    return domain


def _check_free(session: Session, email: str) -> None:
    check_address_free(session, email)
    wildcard = matching_wildcard(session, email)
    if wildcard is not None:
        raise ManageError(
            f"'{show_email(email)}' is already taken by the alias '{show_email(wildcard.email)}'"
        )


def sign_up_user(
    session: Session, settings: Settings, localpart: str, domain: str, password: str
) -> User:
    """Create the account ``localpart@domain`` that a visitor asked for."""
    parent = signup_domain(session, domain)
    email = user_email(localpart, parent.name)
    _check_free(session, email)
    user = users.create_user(
        session, settings, localpart, parent.name, password, change_pw_next_login=True
    )
    user.quota_bytes = users.check_quota(
        user, parent, parent.max_quota_bytes or settings.DEFAULT_QUOTA
    )
    return user


def sign_up_domain(
    session: Session,
    settings: Settings,
    name: str,
    *,
    manager: str | None = None,
    localpart: str | None = None,
    password: str | None = None,
) -> tuple[Domain, User]:
    """Register the domain ``name``, managed by the existing user ``manager`` or by its
    new first user ``localpart`` (with ``password``, which the registrant chose and need
    not change). Returns the domain and its manager."""
    if (manager is None) == (localpart is None):
        raise ManageError("a registered domain needs either its manager or its first user")
    owner = require_user(session, manager) if manager is not None else None
    domain = create_domain(
        session,
        name,
        max_users=SIGNUP_MAX_USERS,
        max_aliases=SIGNUP_MAX_ALIASES,
        max_quota_bytes=settings.DEFAULT_QUOTA,
    )
    if owner is None:
        assert localpart is not None
        session.flush()
        owner = users.create_user(
            session, settings, localpart, domain.name, password or "", change_pw_next_login=False
        )
    owner.manager_of.append(domain)
    return domain, owner
