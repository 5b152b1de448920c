"""Names and addresses as the store keeps them, and the lookups every entity shares.

Names are stored as the core spells them (lower-case, punycode domains) and shown to people
in Unicode. Domains, alternative domains and relayed domains share one name space, and
users and aliases share one address space: each lookup here raises :class:`ManageError`
with one line naming the problem, so every front end only has to show the message.
"""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from roost.core.address import (
    AddressError,
    check_localpart,
    check_wildcard_pattern,
    domain_to_ascii,
    domain_to_unicode,
    parse_address,
)
from roost.store.models import Alias, Alternative, Domain, Relay, User

__all__ = [
    "ManageError",
    "address_in_use",
    "check_address_free",
    "check_domain_name_free",
    "count",
    "domain_name",
    "domain_name_use",
    "domain_or_free",
    "parse_email",
    "require_domain",
    "require_user",
    "show_domain",
    "show_email",
    "strip_scheme",
    "user_email",
]


class ManageError(ValueError):
    """A change the store must not take; the message names the object and the problem."""


def domain_name(text: str) -> str:
    """The stored (lower-case punycode) form of a domain name typed by a person."""
    try:
        return domain_to_ascii(text.strip())
    except AddressError as exc:
        raise ManageError(str(exc)) from None


def check_local(localpart: str, *, wildcard: bool = False) -> str:
    """The stored form of a new user's or alias's local part (see core.address)."""
    try:
        return check_wildcard_pattern(localpart) if wildcard else check_localpart(localpart)
    except AddressError as exc:
        raise ManageError(str(exc)) from None


def user_email(localpart: str, domain: str, *, wildcard: bool = False) -> str:
    """Build ``local@domain`` for a new user or alias, checking the local part's syntax.

    Stricter than Mailu's CLI, which stores anything: the local part must be the dot-atom
    Mailu's admin UI accepts (``LOCALPART_REGEX`` in core/admin/mailu/ui/forms.py), less
    '/', so every address Roost creates can be written in an SMTP command, the store's
    comma lists and a mailbox path, without quoting.
    """
    return f"{check_local(localpart, wildcard=wildcard)}@{domain_name(domain)}"


def parse_email(text: str) -> str:
    """The stored form of a full address (``EMAIL`` arguments: user-delete, alias-delete)."""
    try:
        return str(parse_address(text.strip()))
    except AddressError as exc:
        raise ManageError(str(exc)) from None


def show_domain(name: str) -> str:
    """A stored domain name as people write it (Unicode); unchanged if it cannot decode."""
    try:
        return domain_to_unicode(name)
    except AddressError:
        return name


def show_email(email: str) -> str:
    local, _, domain = email.rpartition("@")
    return f"{local}@{show_domain(domain)}" if local else email


_SCHEME = re.compile(r"^\{[A-Za-z0-9._-]+\}")


def strip_scheme(password_hash: str) -> str:
    """Drop a Dovecot-style ``{SCHEME}`` prefix (``{BLF-CRYPT}$2b$...``, as older Mailu
    stores and Dovecot's passwd files hold them); the core recognises each format itself."""
    value = password_hash.strip()
    stripped = _SCHEME.sub("", value, count=1)
    if not stripped or any(ch.isspace() for ch in stripped):
        raise ManageError(f"password hash {value!r} is empty or contains white space")
    return stripped


# -- lookups -------------------------------------------------------------------------------


def domain_name_use(session: Session, name: str) -> str | None:
    """What already uses ``name`` among domains, alternatives and relays, as a phrase.

    The three share one name space: Postfix would otherwise see one name both as a local
    and as a relayed domain (virtual_mailbox_domains and relay_domains must not overlap).
    """
    if session.get(Domain, name) is not None:
        return "a domain"
    alternative = session.get(Alternative, name)
    if alternative is not None:
        return f"an alternative domain of '{show_domain(alternative.domain_name)}'"
    if session.get(Relay, name) is not None:
        return "a relayed domain"
    return None


def check_domain_name_free(session: Session, name: str) -> None:
    use = domain_name_use(session, name)
    if use is not None:
        raise ManageError(f"'{show_domain(name)}' is already {use}")


def domain_or_free(session: Session, name: str) -> Domain | None:
    """The domain ``name``; None when the name is free; an error when it names an
    alternative or relayed domain instead."""
    domain = session.get(Domain, name)
    if domain is not None:
        return domain
    use = domain_name_use(session, name)
    if use is not None:
        raise ManageError(f"'{show_domain(name)}' is {use}, not a domain")
    return None


def require_domain(session: Session, name: str) -> Domain:
    """The domain ``name`` (stored form), or an error that says what the name is instead."""
    domain = domain_or_free(session, name)
    if domain is None:
        raise ManageError(f"domain '{show_domain(name)}' does not exist")
    return domain


def address_in_use(session: Session, email: str) -> str | None:
    """'a user' or 'an alias' when ``email`` is taken (compared case-insensitively)."""
    wanted = email.lower()
    if session.scalar(select(User.email).where(func.lower(User.email) == wanted)) is not None:
        return "a user"
    if session.scalar(select(Alias.email).where(func.lower(Alias.email) == wanted)) is not None:
        return "an alias"
    return None


def check_address_free(session: Session, email: str) -> None:
    use = address_in_use(session, email)
    if use is not None:
        raise ManageError(f"'{show_email(email)}' is already {use}")


def require_user(session: Session, email: str) -> User:
    user = session.get(User, email)
    if user is None:
        raise ManageError(f"user '{show_email(email)}' does not exist")
    return user


def count(session: Session, model: type[User] | type[Alias], domain: str) -> int:
    """How many users or aliases ``domain`` has."""
    return (
        session.scalar(select(func.count()).select_from(model).where(model.domain_name == domain))
        or 0
    )
