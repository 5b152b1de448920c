"""Anonymous aliases: random aliases a user makes for themself, one per web site.

An anonymous alias is an alias row with an owner (Mailu's ``alias.owner_email``): its
destination is the owner, its ``hostname`` the site it was made for (empty when none was
given), its comment the owner's note. Only the owner lists, disables, enables or deletes
it; it stops resolving while disabled or while its owner is disabled
(:mod:`roost.core.directory`), and goes when the owner is deleted.

The address is ``<site label>.<word>@domain`` or a random token (:mod:`roost.core.anonmail`),
in a domain the owner may use (:func:`roost.store.entities.access.anonmail_domains`). A
candidate is taken only when no user, no alias row and no active wildcard alias of the
domain has it, so a new alias never hides or is hidden by another; after
ANONMAIL_MAX_RETRIES taken candidates the creation fails. (A catch-all alias therefore
leaves no room for anonymous aliases in its domain, as in Mailu.)
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from roost.core.anonmail import local_part_for
from roost.core.directory import like_to_matcher
from roost.store.entities.access import anonmail_domains
from roost.store.entities.names import (
    ManageError,
    address_in_use,
    domain_name,
    parse_email,
    require_user,
    show_domain,
    show_email,
    user_email,
)
from roost.store.models import Alias, User

__all__ = [
    "HOSTNAME_MAX",
    "NOTE_MAX",
    "AliasExhausted",
    "NoAnonmailAccess",
    "NotOwned",
    "create_anonymous_alias",
    "delete_anonymous_alias",
    "list_anonymous_aliases",
    "own_alias",
    "set_anonymous_alias_disabled",
]

#: The widths of the ``hostname`` and ``comment`` columns.
HOSTNAME_MAX = 255
NOTE_MAX = 255


class NoAnonmailAccess(ManageError):
    """The user may not create anonymous aliases in the domain (or in any domain)."""


class AliasExhausted(ManageError):
    """Every candidate address tried was taken."""


class NotOwned(ManageError):
    """No anonymous alias of this user has the address."""


def _pattern_takes(session: Session, local: str, domain: str) -> bool:
    """True when an active wildcard alias of ``domain`` matches ``local``."""
    patterns = session.scalars(
        select(Alias).where(
            Alias.domain_name == domain, Alias.wildcard.is_(True), Alias.disabled.is_(False)
        )
    )
    for alias in patterns:
        if alias.owner_email is not None:
            owner = session.get(User, alias.owner_email)
            if owner is None or not owner.enabled:
                continue
        if like_to_matcher(alias.localpart)(local):
            return True
    return False


def create_anonymous_alias(
    session: Session,
    owner: str,
    domain: str | None,
    *,
    hostname: str | None,
    note: str,
    retries: int,
    local_part: Callable[[str | None], str] = local_part_for,
) -> Alias:
    """A new anonymous alias of ``owner`` (a stored address) in ``domain``.

    ``domain`` None picks one of the owner's domains at random. Raises
    :class:`NoAnonmailAccess` when the owner may not use the domain (or any),
    :class:`AliasExhausted` after ``retries`` taken candidates, :class:`ManageError` for a
    note or host name too long.
    """
    user = require_user(session, owner)
    allowed = anonmail_domains(session, user.email)
    if domain is None:
        if not allowed:
            raise NoAnonmailAccess("You do not have access to any domains for creating aliases")
        stored_domain = secrets.choice(allowed)
    else:
        stored_domain = domain_name(domain)
        if stored_domain not in allowed:
            raise NoAnonmailAccess(
                f"you may not create anonymous aliases in {show_domain(stored_domain)}"
            )
    site = (hostname or "").strip()
    if len(site) > HOSTNAME_MAX:
        raise ManageError(f"hostname: longer than {HOSTNAME_MAX} characters")
    if len(note) > NOTE_MAX:
        raise ManageError(f"note: longer than {NOTE_MAX} characters")
    for _ in range(max(1, retries)):
        try:
            email = user_email(local_part(site or None), stored_domain)
        except ManageError:
            continue
        local = email.partition("@")[0]
        if address_in_use(session, email) or _pattern_takes(session, local, stored_domain):
            continue
        alias = Alias(
            email=email,
            localpart=local,
            domain_name=stored_domain,
            wildcard=False,
            destination=[user.email],
            owner_email=user.email,
            hostname=site,
            disabled=False,
            comment=note,
        )
        session.add(alias)
        session.flush()
        return alias
    raise AliasExhausted("Unable to find a unique alias after several retries")


def own_alias(session: Session, owner: str, email: str) -> Alias:
    """The anonymous alias ``email`` of ``owner``; :class:`NotOwned` for anything else."""
    try:
        stored = parse_email(email)
    except ManageError:
        stored = email.strip().lower()
    alias = session.get(Alias, stored)
    if alias is None or alias.owner_email is None or alias.owner_email != owner:
        raise NotOwned(f"you have no anonymous alias '{show_email(stored)}'")
    return alias


def set_anonymous_alias_disabled(session: Session, owner: str, email: str, disabled: bool) -> Alias:
    alias = own_alias(session, owner, email)
    alias.disabled = disabled
    return alias


def delete_anonymous_alias(session: Session, owner: str, email: str) -> None:
    session.delete(own_alias(session, owner, email))


def list_anonymous_aliases(session: Session, owner: str) -> list[Alias]:
    """``owner``'s anonymous aliases, newest first."""
    query = (
        select(Alias)
        .where(Alias.owner_email == owner)
        .order_by(Alias.created_at.desc(), Alias.domain_name, Alias.localpart)
    )
    return list(session.scalars(query))
