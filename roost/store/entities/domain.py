"""Domains: their fields, their limits and the operations on them.

A domain's limits follow Mailu: ``max_users`` and ``max_aliases`` are counts where -1 means
unlimited, ``max_quota_bytes`` caps each user's quota where 0 means no cap. Mailu's CLI and
config-import ignore the counts; Roost's CLI enforces them (:func:`check_room`), and the
importer can with one flag (``import_config(check_limits=True)``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from roost.core import dkim
from roost.settings import Settings
from roost.store import dkimkeys
from roost.store.entities.fields import Field, boolean, integer, text
from roost.store.entities.names import (
    ManageError,
    check_domain_name_free,
    count,
    domain_name,
    domain_or_free,
    require_domain,
    show_domain,
)
from roost.store.models import Alias, Domain, User

__all__ = [
    "FIELDS",
    "KEY",
    "check_limits",
    "check_room",
    "create_domain",
    "delete_domain",
    "dkim_public_key",
    "dkim_published",
    "ensure_domain",
    "generate_dkim_key",
    "list_domains",
    "set_anonmail_enabled",
    "set_dkim_key",
    "set_domain",
    "set_limits",
    "set_totp_required",
]


def check_max_users(value: int) -> int:
    if value < -1:
        raise ManageError(f"max_users {value}: accepts -1 (unlimited) or a count")
    return value


def check_max_aliases(value: int) -> int:
    if value < -1:
        raise ManageError(f"max_aliases {value}: accepts -1 (unlimited) or a count")
    return value


def check_max_quota(value: int) -> int:
    if value < 0:
        raise ManageError(f"max_quota_bytes {value}: accepts 0 (no cap) or a number of bytes")
    return value


def _checked(rule: Any) -> Any:
    whole = integer(-(2**63))
    return lambda value: rule(whole(value))


def _alternatives(domain: Domain) -> list[str]:
    return sorted(show_domain(a.name) for a in domain.alternatives)


KEY = "name"
FIELDS: tuple[Field, ...] = (
    Field("name", read=lambda d: show_domain(d.name)),
    Field("alternatives", default=(), read=_alternatives),
    Field("anonmail_enabled", boolean, False),
    Field("comment", text(255), "", read=lambda d: d.comment or ""),
    # A file, not a column (roost.store.dkimkeys): the importer and the export handle it.
    Field("dkim_key", default="", read=lambda d: ""),
    Field("max_aliases", _checked(check_max_aliases), -1),
    Field("max_quota_bytes", _checked(check_max_quota), 0),
    Field("max_users", _checked(check_max_users), -1),
    Field("signup_enabled", boolean, False),
    # Roost's own: every user of the domain must enrol in two-factor login at the next
    # web login (docs/two-factor.md).
    Field("totp_required", boolean, False),
)


def check_limits(max_users: int, max_aliases: int, max_quota_bytes: int) -> None:
    """-1 means unlimited for counts (Mailu), 0 means no per-user cap for the quota."""
    check_max_users(max_users)
    check_max_aliases(max_aliases)
    check_max_quota(max_quota_bytes)


def check_room(session: Session, domain: Domain, model: type[User] | type[Alias]) -> None:
    """Refuse one more user or alias than the domain's max_users / max_aliases allows.

    Mailu's CLI and config-import do not check this; every Roost front end that creates a
    user or alias one at a time does, and config-import does when asked to.
    """
    limit = domain.max_users if model is User else domain.max_aliases
    if limit < 0:
        return
    if count(session, model, domain.name) >= limit:
        kind = "users" if model is User else "aliases"
        raise ManageError(
            f"domain '{show_domain(domain.name)}' already has its maximum of {limit} {kind}"
        )


def create_domain(
    session: Session,
    name: str,
    max_users: int = -1,
    max_aliases: int = -1,
    max_quota_bytes: int = 0,
) -> Domain:
    stored = domain_name(name)
    check_limits(max_users, max_aliases, max_quota_bytes)
    check_domain_name_free(session, stored)
    domain = Domain(
        name=stored, max_users=max_users, max_aliases=max_aliases, max_quota_bytes=max_quota_bytes
    )
    session.add(domain)
    return domain


def ensure_domain(session: Session, name: str) -> Domain:
    """The domain ``name``, created with default limits if no name of that kind exists.

    Mailu's ``admin``, ``user`` and ``alias`` commands create a missing domain and scripts
    rely on it; an alternative or relayed name is still refused rather than shadowed.
    """
    domain = domain_or_free(session, name)
    if domain is None:
        domain = Domain(name=name, max_users=-1, max_aliases=-1, max_quota_bytes=0)
        session.add(domain)
    return domain


def set_domain(
    session: Session,
    name: str,
    max_users: int | None = None,
    max_aliases: int | None = None,
    max_quota_bytes: int | None = None,
) -> tuple[Domain, bool]:
    """Create the domain, or change the limits given for an existing one.

    Mailu's ``domain`` command ignores its options for an existing domain; here running it
    again with other limits applies them, and running it unchanged is harmless. Returns the
    domain and whether it was created.
    """
    stored = domain_name(name)
    domain = session.get(Domain, stored)
    if domain is None:
        return (
            create_domain(
                session,
                stored,
                -1 if max_users is None else max_users,
                -1 if max_aliases is None else max_aliases,
                0 if max_quota_bytes is None else max_quota_bytes,
            ),
            True,
        )
    set_limits(session, stored, max_users, max_aliases, max_quota_bytes)
    return domain, False


def set_limits(
    session: Session,
    name: str,
    max_users: int | None,
    max_aliases: int | None,
    max_quota_bytes: int | None,
) -> Domain:
    """Change a domain's limits; ``None`` keeps a value. Existing users stay as they are."""
    domain = require_domain(session, domain_name(name))
    new_users = domain.max_users if max_users is None else max_users
    new_aliases = domain.max_aliases if max_aliases is None else max_aliases
    new_quota = domain.max_quota_bytes if max_quota_bytes is None else max_quota_bytes
    check_limits(new_users, new_aliases, new_quota)
    domain.max_users, domain.max_aliases, domain.max_quota_bytes = (
        new_users,
        new_aliases,
        new_quota,
    )
    return domain


def set_totp_required(session: Session, name: str, required: bool) -> Domain:
    """Require (or stop requiring) two-factor login of every user of the domain.

    Users who have not enrolled keep logging in to mail with their password; the web
    makes them enrol at their next login there (docs/two-factor.md).
    """
    domain = require_domain(session, domain_name(name))
    domain.totp_required = required
    return domain


def set_anonmail_enabled(session: Session, name: str, enabled: bool) -> Domain:
    """Open (or close) the domain to anonymous aliases for every one of its users.

    Mailu's "Enable Global Anonymous Email Service": with it on, a user of the domain may
    create anonymous aliases in it without a per-user access grant.
    """
    domain = require_domain(session, domain_name(name))
    domain.anonmail_enabled = enabled
    return domain


def delete_domain(session: Session, name: str, really: bool = False) -> None:
    """Delete a domain with its alternatives; one with users or aliases needs ``really``.

    Deleting a domain deletes its users and aliases with it (the store cascades), which is
    rarely what a typo meant.
    """
    domain = require_domain(session, domain_name(name))
    users, aliases = count(session, User, domain.name), count(session, Alias, domain.name)
    if (users or aliases) and not really:
        raise ManageError(
            f"domain '{show_domain(domain.name)}' has {users} users and {aliases} aliases; "
            "add --really to delete them with it"
        )
    session.delete(domain)


def list_domains(session: Session) -> list[Domain]:
    return list(session.scalars(select(Domain).order_by(Domain.name)))


def in_domain(session: Session, domain: str | None) -> str | None:
    """The stored name of an optional DOMAIN filter, checked to exist."""
    return None if domain is None else require_domain(session, domain_name(domain)).name


def generate_dkim_key(session: Session, settings: Settings, name: str) -> Domain:
    """Give the domain a new RSA-2048 DKIM key (Mailu's "Generate keys"), replacing any.

    The key file is written when the transaction commits; the gate then hands it to
    Rspamd, which signs the domain's mail (and its alternatives') with it from then on.
    Until the new record is in DNS, receivers fail the signature: publish it at once
    (``roost dkim show``).
    """
    domain = require_domain(session, domain_name(name))
    dkimkeys.stage(session, settings, domain.name, dkim.generate_key())
    return domain


def set_dkim_key(session: Session, settings: Settings, name: str, pem: str | None) -> Domain:
    """Give the domain this private key (checked, any PEM form), or None to remove it."""
    domain = require_domain(session, domain_name(name))
    try:
        key = None if pem is None else dkim.normalise_key(pem)
    except dkim.DkimKeyError as exc:
        raise ManageError(f"dkim_key: {exc}") from None
    dkimkeys.stage(session, settings, domain.name, key)
    return domain


def dkim_published(session: Session, settings: Settings, name: str) -> list[tuple[str, str]]:
    """(selector, public key) of each key the domain publishes, the one it signs with
    first (two while a rotation runs); a key staged in this transaction counts."""
    stored = domain_name(name)
    keys = dkimkeys.DkimKeys(settings)
    try:
        out = keys.published(stored)
        pem = dkimkeys.staged(session, stored)
        if pem is not None:
            active = (keys.active(stored), dkim.public_key(pem))
            out = [active, *[k for k in out if k[0] != active[0]]]
        return out
    except dkim.DkimKeyError as exc:
        raise ManageError(f"DKIM key of '{show_domain(stored)}': {exc}") from None


def dkim_public_key(session: Session, settings: Settings, name: str) -> str | None:
    """The base64 public half of the domain's key, as the DKIM record publishes it, or
    None without a key; a key staged in this transaction counts."""
    stored = domain_name(name)
    pem = dkimkeys.staged(session, stored)
    try:
        if pem is not None:
            return dkim.public_key(pem)
        return dkimkeys.DkimKeys(settings).public(stored)
    except dkim.DkimKeyError as exc:
        raise ManageError(f"DKIM key of '{show_domain(stored)}': {exc}") from None
