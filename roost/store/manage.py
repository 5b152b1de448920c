"""Validated changes to the store: the operations behind the CLI, the web UI and the API.

Mailu's CLI writes whatever it is given and lets the database or the mail flow fail later
(a duplicate user is an IntegrityError traceback, an alias whose address is also a user
silently shadows it, a domain name used twice breaks routing). Every operation here checks
first and raises :class:`ManageError` with one line naming the problem, so each front end
only has to show the message.

All functions take an open SQLAlchemy session and leave committing to the caller (one
``Store.session()`` block per command), so a failed check never leaves a half-made change.
Names are stored as the core spells them (lower case, punycode domains) and shown to people
in Unicode.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from roost.core.address import (
    AddressError,
    check_localpart,
    check_wildcard_pattern,
    domain_to_ascii,
    domain_to_unicode,
    parse_address,
)
from roost.core.passwords import generate_token, hash_password, hash_token
from roost.core.transport import TransportError, relay_transport
from roost.settings import Settings
from roost.store.db import Store, StoreError
from roost.store.models import Alias, Alternative, Domain, Relay, Token, User

__all__ = [
    "ADMIN_MODES",
    "ManageError",
    "add_alternative",
    "add_relay",
    "add_token",
    "address_in_use",
    "admin",
    "check_domain_name_free",
    "check_limits",
    "create_alias",
    "create_domain",
    "create_user",
    "default_quota",
    "delete_alias",
    "delete_alternative",
    "delete_domain",
    "delete_relay",
    "delete_token",
    "delete_user",
    "domain_name",
    "domain_name_use",
    "ensure_domain",
    "import_user",
    "list_aliases",
    "list_alternatives",
    "list_domains",
    "list_relays",
    "list_tokens",
    "list_users",
    "parse_destinations",
    "parse_email",
    "parse_networks",
    "parse_reply_date",
    "record_quota_usage",
    "require_domain",
    "require_user",
    "set_autoreply",
    "set_domain",
    "set_forward",
    "set_limits",
    "set_manager",
    "set_password",
    "set_quota",
    "show_domain",
    "show_email",
    "strip_scheme",
    "user_email",
]

ADMIN_MODES = ("create", "ifmissing", "update")


class ManageError(ValueError):
    """A change the store must not take; the message names the object and the problem."""


# -- names -------------------------------------------------------------------------------


def domain_name(text: str) -> str:
    """The stored (lower-case punycode) form of a domain name typed by a person."""
    try:
        return domain_to_ascii(text.strip())
    except AddressError as exc:
        raise ManageError(str(exc)) from None


def user_email(localpart: str, domain: str, *, wildcard: bool = False) -> str:
    """Build ``local@domain`` for a new user or alias, checking the local part's syntax.

    Stricter than Mailu's CLI, which stores anything: the local part must be the dot-atom
    the UI accepts (reference §3.3), so every address Roost creates can be written in an
    SMTP command and the store's comma lists, without quoting.
    """
    try:
        local = check_wildcard_pattern(localpart) if wildcard else check_localpart(localpart)
    except AddressError as exc:
        raise ManageError(str(exc)) from None
    return f"{local}@{domain_name(domain)}"


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
    """Drop a Dovecot ``{SCHEME}`` prefix as Mailu does on import (reference §3.4)."""
    value = password_hash.strip()
    stripped = _SCHEME.sub("", value, count=1)
    if not stripped or any(ch.isspace() for ch in stripped):
        raise ManageError(f"password hash {value!r} is empty or contains white space")
    return stripped


# -- lookups -----------------------------------------------------------------------------


def domain_name_use(session: Session, name: str) -> str | None:
    """What already uses ``name`` among domains, alternatives and relays, as a phrase.

    The three share one name space: Postfix would otherwise see one name both as a local
    and as a relayed domain (reference §3.3, "Name collisions").
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


def _domain_or_free(session: Session, name: str) -> Domain | None:
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
    domain = _domain_or_free(session, name)
    if domain is None:
        raise ManageError(f"domain '{show_domain(name)}' does not exist")
    return domain


def ensure_domain(session: Session, name: str) -> Domain:
    """The domain ``name``, created with default limits if no name of that kind exists.

    Mailu's ``admin``, ``user`` and ``alias`` commands create a missing domain and scripts
    rely on it; an alternative or relayed name is still refused rather than shadowed.
    """
    domain = _domain_or_free(session, name)
    if domain is None:
        domain = Domain(name=name, max_users=-1, max_aliases=-1, max_quota_bytes=0)
        session.add(domain)
    return domain


def address_in_use(session: Session, email: str) -> str | None:
    """'a user' or 'an alias' when ``email`` is taken (compared case-insensitively)."""
    wanted = email.lower()
    if session.scalar(select(User.email).where(func.lower(User.email) == wanted)) is not None:
        return "a user"
    if session.scalar(select(Alias.email).where(func.lower(Alias.email) == wanted)) is not None:
        return "an alias"
    return None


def _check_address_free(session: Session, email: str) -> None:
    use = address_in_use(session, email)
    if use is not None:
        raise ManageError(f"'{show_email(email)}' is already {use}")


def require_user(session: Session, email: str) -> User:
    user = session.get(User, email)
    if user is None:
        raise ManageError(f"user '{show_email(email)}' does not exist")
    return user


def _count(session: Session, model: type[User] | type[Alias], domain: str) -> int:
    return (
        session.scalar(select(func.count()).select_from(model).where(model.domain_name == domain))
        or 0
    )


# -- domains -----------------------------------------------------------------------------


def check_limits(max_users: int, max_aliases: int, max_quota_bytes: int) -> None:
    """-1 means unlimited for counts (Mailu), 0 means no per-user cap for the quota."""
    if max_users < -1:
        raise ManageError(f"max_users {max_users}: accepts -1 (unlimited) or a count")
    if max_aliases < -1:
        raise ManageError(f"max_aliases {max_aliases}: accepts -1 (unlimited) or a count")
    if max_quota_bytes < 0:
        raise ManageError(
            f"max_quota_bytes {max_quota_bytes}: accepts 0 (no cap) or a number of bytes"
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


def delete_domain(session: Session, name: str, really: bool = False) -> None:
    """Delete a domain with its alternatives; one with users or aliases needs ``really``.

    Deleting a domain deletes its users and aliases with it (the store cascades), which is
    rarely what a typo meant.
    """
    domain = require_domain(session, domain_name(name))
    users, aliases = _count(session, User, domain.name), _count(session, Alias, domain.name)
    if (users or aliases) and not really:
        raise ManageError(
            f"domain '{show_domain(domain.name)}' has {users} users and {aliases} aliases; "
            "add --really to delete them with it"
        )
    session.delete(domain)


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


def add_relay(session: Session, name: str, smtp: str = "") -> Relay:
    """Relay mail for ``name`` to ``smtp`` (reference §7.1.4; empty: the domain's MX)."""
    stored = domain_name(name)
    check_domain_name_free(session, stored)
    target = smtp.strip()
    try:
        relay_transport(stored, target)
    except TransportError as exc:
        raise ManageError(str(exc)) from None
    if len(target) > 80:
        raise ManageError(f"relay target {target!r} is longer than 80 characters")
    relay = Relay(name=stored, smtp=target)
    session.add(relay)
    return relay


def delete_relay(session: Session, name: str) -> None:
    stored = domain_name(name)
    relay = session.get(Relay, stored)
    if relay is None:
        raise ManageError(f"relayed domain '{show_domain(stored)}' does not exist")
    session.delete(relay)


# -- users -------------------------------------------------------------------------------


def default_quota(settings: Settings, domain: Domain) -> int:
    """DEFAULT_QUOTA, capped by the domain's max_quota_bytes (0 means no cap on either)."""
    quota = settings.DEFAULT_QUOTA
    cap = domain.max_quota_bytes
    if cap and (quota == 0 or cap < quota):
        return cap
    return quota


def _check_room(session: Session, domain: Domain, model: type[User] | type[Alias]) -> None:
    """Enforce max_users / max_aliases, which Mailu's CLI ignores (reference §3.3)."""
    limit = domain.max_users if model is User else domain.max_aliases
    if limit < 0:
        return
    if _count(session, model, domain.name) >= limit:
        kind = "users" if model is User else "aliases"
        raise ManageError(
            f"domain '{show_domain(domain.name)}' already has its maximum of {limit} {kind}"
        )


def _check_password(password: str) -> None:
    if not password:
        raise ManageError("password is empty")


def _new_user(
    session: Session,
    settings: Settings,
    localpart: str,
    domain: str,
    password_hash: str,
    *,
    global_admin: bool,
    change_pw_next_login: bool,
) -> User:
    email = user_email(localpart, domain)
    local, _, stored_domain = email.partition("@")
    parent = ensure_domain(session, stored_domain)
    _check_address_free(session, email)
    _check_room(session, parent, User)
    user = User(
        email=email,
        localpart=local,
        domain=parent,
        password=password_hash,
        quota_bytes=default_quota(settings, parent),
        spam_threshold=settings.DEFAULT_SPAM_THRESHOLD,
        global_admin=global_admin,
        change_pw_next_login=change_pw_next_login,
    )
    session.add(user)
    return user


def create_user(
    session: Session,
    settings: Settings,
    localpart: str,
    domain: str,
    password: str,
    *,
    global_admin: bool = False,
    change_pw_next_login: bool = True,
) -> User:
    """Create a user (Mailu ``user``: a new password must be changed at first login)."""
    _check_password(password)
    return _new_user(
        session,
        settings,
        localpart,
        domain,
        hash_password(password),
        global_admin=global_admin,
        change_pw_next_login=change_pw_next_login,
    )


def import_user(
    session: Session, settings: Settings, localpart: str, domain: str, password_hash: str
) -> User:
    """Create a user whose password is already hashed (Mailu ``user-import``).

    The hash is stored as given, minus a ``{SCHEME}`` prefix; any format the core verifies
    works, and it is replaced by Argon2id at the user's first login.
    """
    return _new_user(
        session,
        settings,
        localpart,
        domain,
        strip_scheme(password_hash),
        global_admin=False,
        change_pw_next_login=False,
    )


def admin(
    session: Session,
    settings: Settings,
    localpart: str,
    domain: str,
    password: str,
    mode: str = "create",
) -> str:
    """Mailu's ``admin`` command; returns the line to print.

    ``create`` refuses an existing user, ``ifmissing`` leaves one alone (for start-up
    scripts that run every time) and ``update`` resets its password.
    """
    if mode not in ADMIN_MODES:
        raise ManageError(f"mode {mode!r}: accepts " + ", ".join(ADMIN_MODES))
    _check_password(password)
    email = user_email(localpart, domain)
    existing = session.get(User, email)
    if existing is not None:
        if mode == "create":
            raise ManageError(f"user '{show_email(email)}' exists, not created")
        if mode == "ifmissing":
            return f"user '{show_email(email)}' exists, not updating"
        existing.password = hash_password(password)
        return "updated admin password"
    create_user(
        session,
        settings,
        localpart,
        domain,
        password,
        global_admin=True,
        change_pw_next_login=False,
    )
    return "created admin user"


def set_password(session: Session, email: str, password: str) -> User:
    """Reset a password; as in Mailu the user must choose a new one at the next login."""
    _check_password(password)
    user = require_user(session, email)
    user.password = hash_password(password)
    user.change_pw_next_login = True
    return user


def delete_user(session: Session, email: str, really: bool = False) -> None:
    """Disable a user (Mailu's default: the address cannot be reused by accident), or
    delete it with ``really``; its tokens, fetches and anonymous aliases go with it."""
    user = require_user(session, email)
    if really:
        session.delete(user)
    else:
        user.enabled = False


def set_manager(session: Session, domain: str, localpart: str) -> User:
    """Make ``localpart@domain`` a manager of ``domain`` (no change if it already is)."""
    parent = require_domain(session, domain_name(domain))
    user = require_user(session, user_email(localpart, parent.name))
    if parent not in user.manager_of:
        user.manager_of.append(parent)
    return user


# -- aliases -----------------------------------------------------------------------------


def parse_destinations(destination: str | Iterable[str], what: str = "an alias") -> list[str]:
    """Split and check the destinations of ``what``; each must be a full address."""
    items = destination.split(",") if isinstance(destination, str) else list(destination)
    result: list[str] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            address = str(parse_address(text))
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
    _check_address_free(session, email)
    _check_room(session, parent, Alias)
    alias = Alias(
        email=email, localpart=local, domain=parent, wildcard=wildcard, destination=destinations
    )
    session.add(alias)
    return alias


def delete_alias(session: Session, email: str) -> None:
    alias = session.get(Alias, email)
    if alias is None:
        raise ManageError(f"alias '{show_email(email)}' does not exist")
    session.delete(alias)


# -- forwarding --------------------------------------------------------------------------

#: Width of the store's list columns (reference §3.1 CommaSeparatedList).
LIST_COLUMN_MAX = 4096


def set_forward(
    session: Session,
    email: str,
    destination: str | Sequence[str] | None = None,
    *,
    keep: bool | None = None,
    enabled: bool | None = None,
) -> User:
    """Change a user's forwarding (reference §3.2 forward_*); ``None`` keeps a value.

    New destinations turn forwarding on unless ``enabled`` says otherwise; turning it off
    keeps the destinations, so turning it on again needs none. ``keep`` is forward_keep:
    a copy stays in the mailbox too.
    """
    user = require_user(session, email)
    if destination is not None:
        targets = parse_destinations(destination, what="forwarding")
        if len(",".join(targets)) > LIST_COLUMN_MAX:
            raise ManageError(
                f"forward destinations of '{show_email(user.email)}' are longer than "
                f"{LIST_COLUMN_MAX} characters in all"
            )
        user.forward_destination = targets
        if enabled is None:
            enabled = True
    if enabled and not user.forward_destination:
        raise ManageError(
            f"'{show_email(user.email)}' has no forward destination: name one or more"
        )
    if enabled is not None:
        user.forward_enabled = enabled
    if keep is not None:
        user.forward_keep = keep
    return user


# -- app tokens --------------------------------------------------------------------------


def parse_networks(items: Iterable[str]) -> list[str]:
    """Networks a token is limited to, as CIDR text (a bare address is a /32 or /128)."""
    networks: list[str] = []
    for item in items:
        for part in str(item).split(","):
            text = part.strip()
            if not text:
                continue
            try:
                networks.append(str(ipaddress.ip_network(text, strict=False)))
            except ValueError:
                raise ManageError(f"{text!r} is not an IP address or network") from None
    return networks


def add_token(
    session: Session, email: str, comment: str = "", networks: Iterable[str] = ()
) -> tuple[Token, str]:
    """Create an app token; returns it and the raw secret, which is never stored."""
    user = require_user(session, email)
    raw = generate_token()
    token = Token(user=user, password=hash_token(raw), ip=parse_networks(networks), comment=comment)
    session.add(token)
    return token, raw


def delete_token(session: Session, email: str, token_id: int) -> None:
    user = require_user(session, email)
    token = session.get(Token, token_id)
    if token is None or token.user_email != user.email:
        raise ManageError(f"user '{show_email(user.email)}' has no token {token_id}")
    session.delete(token)


# -- listing -----------------------------------------------------------------------------


def list_tokens(session: Session, email: str) -> list[Token]:
    user = require_user(session, email)
    return list(
        session.scalars(select(Token).where(Token.user_email == user.email).order_by(Token.id))
    )


def list_domains(session: Session) -> list[Domain]:
    return list(session.scalars(select(Domain).order_by(Domain.name)))


def _in_domain(session: Session, domain: str | None) -> str | None:
    return None if domain is None else require_domain(session, domain_name(domain)).name


def list_users(session: Session, domain: str | None = None) -> list[User]:
    query = select(User).order_by(User.domain_name, User.localpart)
    stored = _in_domain(session, domain)
    if stored is not None:
        query = query.where(User.domain_name == stored)
    return list(session.scalars(query))


def list_aliases(session: Session, domain: str | None = None) -> list[Alias]:
    query = select(Alias).order_by(Alias.domain_name, Alias.localpart)
    stored = _in_domain(session, domain)
    if stored is not None:
        query = query.where(Alias.domain_name == stored)
    return list(session.scalars(query))


def list_alternatives(session: Session) -> list[Alternative]:
    return list(session.scalars(select(Alternative).order_by(Alternative.name)))


def list_relays(session: Session) -> list[Relay]:
    return list(session.scalars(select(Relay).order_by(Relay.name)))


# -- quotas ------------------------------------------------------------------------------


def set_quota(session: Session, email: str, quota_bytes: int) -> User:
    """Set a user's quota (0: unlimited), within the domain's max_quota_bytes.

    Mailu's UI enforces the cap with its slider and the API not at all (reference §3.3);
    here every change is checked, so no front end can hand out more than the domain allows.
    """
    user = require_user(session, email)
    if quota_bytes < 0:
        raise ManageError(f"quota {quota_bytes}: accepts 0 (unlimited) or a number of bytes")
    cap = user.domain.max_quota_bytes
    if cap and (quota_bytes == 0 or quota_bytes > cap):
        wanted = "unlimited" if quota_bytes == 0 else f"{quota_bytes} bytes"
        raise ManageError(
            f"quota for '{show_email(user.email)}': {wanted} is above the {cap} bytes domain "
            f"'{show_domain(user.domain_name)}' allows (its max_quota_bytes)"
        )
    user.quota_bytes = quota_bytes
    return user


def record_quota_usage(store: Store, usage: Mapping[str, int]) -> None:
    """Store what Dovecot's quota_clone reports: the bytes each user's mailbox holds.

    Written with one Core statement outside :meth:`Store.session`, on purpose: usage is
    not configuration, so it must not count as a change of the store (every change makes
    the gate reload its whole index) nor touch ``updated_at`` (Mailu leaves it alone too).
    An address that is no longer a user matches no row and is ignored.
    """
    if not usage:
        return
    table = User.__table__
    statement = (
        update(table)
        .where(table.c.email == bindparam("mailbox"))
        .values(quota_bytes_used=bindparam("used"), updated_at=table.c.updated_at)
    )
    rows = [{"mailbox": email, "used": used} for email, used in usage.items()]
    try:
        with store.engine.begin() as connection:
            connection.execute(statement, rows)
    except DBAPIError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise StoreError(f"database {store.url}: {reason}") from None


# -- auto-reply --------------------------------------------------------------------------

#: Mailu's column defaults: no start, no end (reference §3.2).
REPLY_START_DEFAULT = dt.date(1900, 1, 1)
REPLY_END_DEFAULT = dt.date(2999, 12, 31)
#: The subject column's width.
REPLY_SUBJECT_MAX = 255
#: Longest reply body: a letter, not an attachment. Dovecot compiles the whole before
#: script, body included, at each delivery (and refuses scripts over 1 MiB).
REPLY_BODY_MAX = 100_000
_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
_BODY_UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def parse_reply_date(text: str, default: dt.date) -> dt.date:
    """A ``YYYY-MM-DD`` date; an empty text means ``default`` (no limit on that side)."""
    value = text.strip()
    if not value:
        return default
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ManageError(f"date {text!r}: accepts YYYY-MM-DD, such as 2025-07-31") from None


def set_autoreply(
    session: Session,
    email: str,
    *,
    enabled: bool,
    subject: str | None = None,
    body: str | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> User:
    """Change a user's auto-reply; ``None`` keeps a stored value.

    The texts are checked here rather than cleaned up later: a subject is one line, and
    neither text carries control characters, so what the sender reads is what was typed.
    Whatever they contain is safe in the generated Sieve script (roost.core.sieve).
    """
    user = require_user(session, email)
    if subject is not None:
        if len(subject) > REPLY_SUBJECT_MAX:
            raise ManageError(
                f"auto-reply subject is {len(subject)} characters; at most {REPLY_SUBJECT_MAX}"
            )
        if _HEADER_UNSAFE.search(subject):
            raise ManageError("auto-reply subject must be one line without control characters")
        user.reply_subject = subject
    if body is not None:
        body = body.replace("\r\n", "\n")
        if len(body) > REPLY_BODY_MAX:
            raise ManageError(
                f"auto-reply body is {len(body)} characters; at most {REPLY_BODY_MAX}"
            )
        if _BODY_UNSAFE.search(body):
            raise ManageError("auto-reply body must not contain control characters")
        user.reply_body = body
    if start is not None:
        user.reply_startdate = start
    if end is not None:
        user.reply_enddate = end
    if user.reply_startdate > user.reply_enddate:
        raise ManageError(
            f"auto-reply ends ({user.reply_enddate}) before it starts ({user.reply_startdate})"
        )
    if enabled and not (user.reply_body or "").strip():
        raise ManageError(f"auto-reply for '{show_email(user.email)}' needs a body (--body)")
    user.reply_enabled = enabled
    return user
