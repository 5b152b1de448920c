"""Users: their fields, the rules their values follow, and the operations on them.

The rules here hold for every front end: the CLI calls the operations, config-import
parses each field with the same parser and then applies the same cross-field rules
(:func:`check_quota`, :func:`check_reply_dates`, :func:`check_forward_length`), so a value
refused by one is refused by the other with the same message.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from roost.core import totp
from roost.core.passwords import hash_password
from roost.settings import Settings
from roost.store.db import Store, StoreError
from roost.store.entities.alias import parse_destinations
from roost.store.entities.domain import check_room, ensure_domain, in_domain
from roost.store.entities.fields import (
    REQUIRED,
    Field,
    boolean,
    day,
    integer,
    optional,
    text,
)
from roost.store.entities.names import (
    ManageError,
    check_address_free,
    require_user,
    show_domain,
    show_email,
    strip_scheme,
    user_email,
)
from roost.store.models import Domain, User

__all__ = [
    "ADMIN_MODES",
    "FIELDS",
    "KEY",
    "LIST_COLUMN_MAX",
    "REPLY_BODY_MAX",
    "REPLY_END_DEFAULT",
    "REPLY_START_DEFAULT",
    "REPLY_SUBJECT_MAX",
    "Enrolment",
    "TwoFactorStatus",
    "admin",
    "begin_enrolment",
    "check_forward_length",
    "check_quota",
    "check_reply_body",
    "check_reply_dates",
    "check_reply_subject",
    "check_two_factor",
    "confirm_enrolment",
    "create_user",
    "default_quota",
    "delete_user",
    "disable_two_factor",
    "import_user",
    "list_users",
    "new_user_values",
    "parse_reply_date",
    "record_quota_usage",
    "regenerate_recovery_codes",
    "set_autoreply",
    "set_fields",
    "set_forward",
    "set_password",
    "set_quota",
    "set_spam",
    "two_factor_required",
    "two_factor_status",
    "verify_second_factor",
]

ADMIN_MODES = ("create", "ifmissing", "update")

#: Mailu's column defaults: no start, no end (core/admin/mailu/models.py, User.reply_*).
REPLY_START_DEFAULT = dt.date(1900, 1, 1)
REPLY_END_DEFAULT = dt.date(2999, 12, 31)
#: The subject column's width.
REPLY_SUBJECT_MAX = 255
#: Longest reply body: a letter, not an attachment. Dovecot compiles the whole before
#: script, body included, at each delivery (and refuses scripts over 1 MiB).
REPLY_BODY_MAX = 100_000
#: Width of the store's list columns (Mailu's CommaSeparatedList is a String(4096)).
LIST_COLUMN_MAX = 4096

_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
_BODY_UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# -- rules ---------------------------------------------------------------------------------


def check_reply_subject(subject: str) -> str:
    """A subject is one header line: not too long, no control characters."""
    if not isinstance(subject, str):
        raise ManageError("auto-reply subject must be text")
    if len(subject) > REPLY_SUBJECT_MAX:
        raise ManageError(
            f"auto-reply subject is {len(subject)} characters; at most {REPLY_SUBJECT_MAX}"
        )
    if _HEADER_UNSAFE.search(subject):
        raise ManageError("auto-reply subject must be one line without control characters")
    return subject


def check_reply_body(body: str) -> str:
    """A body is a letter: at most 100 kB, line breaks and tabs but no other controls.

    CRLF line ends become LF. Whatever the text holds is safe in the generated Sieve
    script (roost.core.sieve quotes it); the rule keeps what the sender reads readable.
    """
    if not isinstance(body, str):
        raise ManageError("auto-reply body must be text")
    body = body.replace("\r\n", "\n")
    if len(body) > REPLY_BODY_MAX:
        raise ManageError(f"auto-reply body is {len(body)} characters; at most {REPLY_BODY_MAX}")
    if _BODY_UNSAFE.search(body):
        raise ManageError("auto-reply body must not contain control characters")
    return body


def check_reply_dates(user: User) -> None:
    if user.reply_startdate > user.reply_enddate:
        raise ManageError(
            f"auto-reply ends ({user.reply_enddate}) before it starts ({user.reply_startdate})"
        )


def check_quota_value(quota_bytes: int) -> int:
    if quota_bytes < 0:
        raise ManageError(f"quota {quota_bytes}: accepts 0 (unlimited) or a number of bytes")
    return quota_bytes


def check_quota(user: User, domain: Domain, quota_bytes: int) -> int:
    """A quota (0: unlimited) within the domain's max_quota_bytes (0: no cap).

    Mailu's UI enforces the cap only with its slider, and its API and import not at all;
    here every front end checks it, so none can hand out more than the domain allows.
    """
    check_quota_value(quota_bytes)
    cap = domain.max_quota_bytes
    if cap and (quota_bytes == 0 or quota_bytes > cap):
        wanted = "unlimited" if quota_bytes == 0 else f"{quota_bytes} bytes"
        raise ManageError(
            f"quota for '{show_email(user.email)}': {wanted} is above the {cap} bytes domain "
            f"'{show_domain(domain.name)}' allows (its max_quota_bytes)"
        )
    return quota_bytes


def check_forward_length(user: User, targets: Sequence[str]) -> None:
    if len(",".join(targets)) > LIST_COLUMN_MAX:
        raise ManageError(
            f"forward destinations of '{show_email(user.email)}' are longer than "
            f"{LIST_COLUMN_MAX} characters in all"
        )


def default_quota(settings: Settings, domain: Domain) -> int:
    """DEFAULT_QUOTA, capped by the domain's max_quota_bytes (0 means no cap on either)."""
    quota = settings.DEFAULT_QUOTA
    cap = domain.max_quota_bytes
    if cap and (quota == 0 or cap < quota):
        return cap
    return quota


def _quota(value: Any) -> int:
    return check_quota_value(integer(-(2**63))(value))


def _sealed_secret(value: Any) -> str:
    """A TOTP secret as the store keeps it: sealed (roost.core.totp), never in the clear."""
    secret = text(255)(value)
    if not secret.startswith("v1:"):
        raise ValueError("expected a sealed secret as config-export writes it (v1:...)")
    return secret


def _recovery_hashes(value: Any) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(
        isinstance(i, str) and len(i) == 64 and all(c in "0123456789abcdef" for c in i)
        for i in items
    ):
        raise ValueError("expected a list of stored recovery code hashes (64 hex characters)")
    return list(items)


# -- fields --------------------------------------------------------------------------------

KEY = "email"
FIELDS: tuple[Field, ...] = (
    Field("email", read=lambda u: show_email(u.email)),
    Field("allow_spoofing", boolean, False),
    Field("change_pw_next_login", boolean, False),
    Field("comment", text(255), "", read=lambda u: u.comment or ""),
    Field("displayed_name", text(160), "", read=lambda u: u.displayed_name or ""),
    Field("enable_imap", boolean, True),
    Field("enable_pop", boolean, True),
    Field("enabled", boolean, True),
    Field("fetches", default=()),  # nested objects: roost.store.entities.fetch
    Field(
        "forward_destination",
        default=(),
        read=lambda u: [show_email(a) for a in u.forward_destination or []],
    ),
    Field("forward_enabled", boolean, False),
    Field("forward_keep", boolean, True),
    Field("global_admin", boolean, False),
    Field("hash_password", default=False, exported=False),
    Field(
        "manager_of", default=(), read=lambda u: sorted(show_domain(d.name) for d in u.manager_of)
    ),
    Field("password", default=REQUIRED),
    Field("quota_bytes", _quota, lambda s: s.DEFAULT_QUOTA),
    Field("reply_body", optional(check_reply_body), None),
    Field("reply_enabled", boolean, False),
    Field("reply_enddate", day, REPLY_END_DEFAULT),
    Field("reply_startdate", day, REPLY_START_DEFAULT),
    Field("reply_subject", optional(check_reply_subject), None),
    Field("spam_enabled", boolean, True),
    Field("spam_mark_as_read", boolean, True),
    Field("spam_threshold", integer(0, 100), lambda s: s.DEFAULT_SPAM_THRESHOLD),
    Field("tokens", default=()),  # nested objects: roost.store.entities.token
    # Two-factor login (Roost's own). The sealed secret opens only with the same
    # SECRET_KEY: a move to a server with another key needs a new enrolment.
    Field("totp_enabled", boolean, False),
    Field("totp_last_step", optional(integer(0)), None, full_only=True),
    Field(
        "totp_recovery_codes",
        _recovery_hashes,
        (),
        read=lambda u: list(u.totp_recovery_codes or []),
    ),
    Field("totp_secret", optional(_sealed_secret), None),
)

#: Fields config-export writes as ``<hidden>`` unless ``--secrets`` (Mailu's rule for a
#: fetch's password and a DKIM key); config-import keeps the stored value for ``<hidden>``.
SECRETS: frozenset[str] = frozenset({"totp_secret"})


def new_user_values(settings: Settings, domain: Domain) -> dict[str, Any]:
    """What a new user's columns start as: the fields' defaults, the quota capped."""
    values = {f.name: f.stored_default(settings) for f in FIELDS if f.column}
    values["quota_bytes"] = default_quota(settings, domain)
    return values


# -- operations ----------------------------------------------------------------------------


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
    check_address_free(session, email)
    check_room(session, parent, User)
    user = User(
        email=email,
        localpart=local,
        domain=parent,
        password=password_hash,
        **new_user_values(settings, parent),
    )
    user.global_admin = global_admin
    user.change_pw_next_login = change_pw_next_login
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


def list_users(session: Session, domain: str | None = None) -> list[User]:
    query = select(User).order_by(User.domain_name, User.localpart)
    stored = in_domain(session, domain)
    if stored is not None:
        query = query.where(User.domain_name == stored)
    return list(session.scalars(query))


def set_forward(
    session: Session,
    email: str,
    destination: str | Sequence[str] | None = None,
    *,
    keep: bool | None = None,
    enabled: bool | None = None,
) -> User:
    """Change a user's forwarding (Mailu's forward_enabled, forward_destination,
    forward_keep); ``None`` keeps a value.

    New destinations turn forwarding on unless ``enabled`` says otherwise; turning it off
    keeps the destinations, so turning it on again needs none. ``keep`` is forward_keep:
    a copy stays in the mailbox too.
    """
    user = require_user(session, email)
    if destination is not None:
        targets = parse_destinations(destination, what="forwarding")
        check_forward_length(user, targets)
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


#: Plain switches and texts a front end sets as they are, through their fields' parsers;
#: everything else has its own operation (quota, forwarding, auto-reply, spam, password,
#: two-factor login) with the rules that go across fields.
SETTABLE = frozenset(
    {
        "allow_spoofing",
        "change_pw_next_login",
        "comment",
        "displayed_name",
        "enable_imap",
        "enable_pop",
        "enabled",
        "global_admin",
    }
)


def set_fields(session: Session, email: str, values: Mapping[str, Any]) -> User:
    """Set plain fields of a user, each checked by its declared parser (as import does)."""
    user = require_user(session, email)
    parsers = {field.name: field.parse for field in FIELDS if field.name in SETTABLE}
    for name, raw in values.items():
        parse = parsers.get(name)
        if parse is None:
            raise ManageError(f"{name}: not a field that can be set this way")
        try:
            setattr(user, name, parse(raw))
        except ValueError as exc:
            raise ManageError(f"{name.replace('_', ' ')}: {exc}") from None
    return user


#: Mailu's spam threshold scale: 0 catches everything, 100 nothing.
SPAM_THRESHOLD_MAX = 100


def set_spam(
    session: Session,
    email: str,
    *,
    enabled: bool | None = None,
    mark_as_read: bool | None = None,
    threshold: int | None = None,
) -> User:
    """Change a user's spam filing (Junk folder, mark as read, threshold); ``None`` keeps."""
    user = require_user(session, email)
    if threshold is not None:
        if not 0 <= threshold <= SPAM_THRESHOLD_MAX:
            raise ManageError(
                f"spam threshold {threshold}: accepts a whole number from 0 to {SPAM_THRESHOLD_MAX}"
            )
        user.spam_threshold = threshold
    if enabled is not None:
        user.spam_enabled = enabled
    if mark_as_read is not None:
        user.spam_mark_as_read = mark_as_read
    return user


def set_quota(session: Session, email: str, quota_bytes: int) -> User:
    """Set a user's quota (0: unlimited), within the domain's max_quota_bytes."""
    user = require_user(session, email)
    user.quota_bytes = check_quota(user, user.domain, quota_bytes)
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
    table = cast(Table, User.__table__)
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
    """
    user = require_user(session, email)
    if subject is not None:
        user.reply_subject = check_reply_subject(subject)
    if body is not None:
        user.reply_body = check_reply_body(body)
    if start is not None:
        user.reply_startdate = start
    if end is not None:
        user.reply_enddate = end
    check_reply_dates(user)
    if enabled and not (user.reply_body or "").strip():
        raise ManageError(f"auto-reply for '{show_email(user.email)}' needs a body (--body)")
    user.reply_enabled = enabled
    return user


# -- two-factor login ----------------------------------------------------------------------
# Roost's own (Mailu has no two-factor login). The codes and the sealing are
# roost.core.totp; here is what the store keeps and when. The web asks for a code after a
# good password when the gate says so (docs/two-factor.md).


@dataclass(frozen=True)
class Enrolment:
    """A begun enrolment: the secret (shown once, for typing in) and the URI (the QR code)."""

    secret: str
    uri: str


@dataclass(frozen=True)
class TwoFactorStatus:
    """Where a user stands: ``required`` by the domain or by AUTH_REQUIRE_TOTP."""

    enabled: bool
    required: bool
    pending: bool
    recovery_codes_left: int


def _totp_keys(settings: Settings) -> totp.TotpKeys:
    return totp.TotpKeys.from_secret_key(settings.SECRET_KEY)


def check_two_factor(user: User) -> None:
    """Two-factor login on needs a secret to check codes against."""
    if user.totp_enabled and not user.totp_secret:
        raise ManageError(f"two-factor login of '{show_email(user.email)}' is on without a secret")


def two_factor_required(settings: Settings, user: User) -> bool:
    """Whether the user must have two-factor login: AUTH_REQUIRE_TOTP or the domain's flag."""
    return bool(settings.AUTH_REQUIRE_TOTP or user.domain.totp_required)


def two_factor_status(session: Session, settings: Settings, email: str) -> TwoFactorStatus:
    user = require_user(session, email)
    return TwoFactorStatus(
        enabled=user.totp_enabled,
        required=two_factor_required(settings, user),
        pending=bool(user.totp_secret) and not user.totp_enabled,
        recovery_codes_left=len(user.totp_recovery_codes or []) if user.totp_enabled else 0,
    )


def begin_enrolment(session: Session, settings: Settings, email: str) -> Enrolment:
    """Give the user a new secret to enrol in an app; it is not used until confirmed.

    Beginning again replaces a secret not yet confirmed. A user who has two-factor login
    on turns it off first (or keeps the app and regenerates recovery codes).
    """
    user = require_user(session, email)
    if user.totp_enabled:
        raise ManageError(
            f"two-factor login of '{show_email(user.email)}' is already on; turn it off "
            "before enrolling another app"
        )
    secret = totp.new_secret()
    user.totp_secret = _totp_keys(settings).seal(secret, user.email)
    user.totp_last_step = None
    user.totp_recovery_codes = []
    uri = totp.provisioning_uri(secret, show_email(user.email), settings.SITENAME)
    return Enrolment(secret=secret, uri=uri)


def confirm_enrolment(
    session: Session, settings: Settings, email: str, code: str, *, now: float | None = None
) -> list[str]:
    """Turn two-factor login on when ``code`` is right for the begun enrolment.

    Returns the recovery codes, to show once: only their HMACs are kept. A wrong code
    changes nothing and raises :class:`ManageError`.
    """
    user = require_user(session, email)
    if user.totp_enabled:
        raise ManageError(f"two-factor login of '{show_email(user.email)}' is already on")
    if not user.totp_secret:
        raise ManageError(f"'{show_email(user.email)}' has no enrolment to confirm; begin one")
    keys = _totp_keys(settings)
    try:
        secret = keys.unseal(user.totp_secret, user.email)
    except totp.SealError as exc:
        raise ManageError(f"{exc}; begin the enrolment again") from None
    step = totp.matching_step(secret, code, time.time() if now is None else now, None)
    if step is None:
        raise ManageError(
            "that code is not the app's current one; check the phone's clock and try the next code"
        )
    codes = totp.new_recovery_codes()
    user.totp_enabled = True
    user.totp_last_step = step
    user.totp_recovery_codes = [keys.recovery_hash(c) for c in codes]
    return codes


def disable_two_factor(session: Session, email: str) -> User:
    """Turn two-factor login off and forget the secret and the recovery codes."""
    user = require_user(session, email)
    user.totp_enabled = False
    user.totp_secret = None
    user.totp_last_step = None
    user.totp_recovery_codes = []
    return user


def regenerate_recovery_codes(session: Session, settings: Settings, email: str) -> list[str]:
    """New recovery codes (returned, to show once); the old ones stop working."""
    user = require_user(session, email)
    if not user.totp_enabled:
        raise ManageError(f"two-factor login of '{show_email(user.email)}' is off")
    keys = _totp_keys(settings)
    codes = totp.new_recovery_codes()
    user.totp_recovery_codes = [keys.recovery_hash(c) for c in codes]
    return codes


def verify_second_factor(
    session: Session, settings: Settings, email: str, code: str, *, now: float | None = None
) -> str | None:
    """Check a login's second factor: ``"totp"`` or ``"recovery"`` when accepted, else None.

    A TOTP code is accepted once: its time step is stored and no code of that step or an
    earlier one works again. A recovery code is burned. Both writes are conditional
    updates (the row must still hold what was read), so two logins racing with the same
    code cannot both pass, on any database. They are bookkeeping, not configuration: they
    do not count as a change of the store, so the gate does not reload for them (run this
    in ``work.read`` or ``work.change``; both commit).
    """
    table = cast(Table, User.__table__)
    connection = session.connection()
    row = connection.execute(
        select(
            table.c.email,
            table.c.totp_enabled,
            table.c.totp_secret,
            table.c.totp_last_step,
            table.c.totp_recovery_codes,
        ).where(table.c.email == email)
    ).one_or_none()
    if row is None or not row.totp_enabled or not row.totp_secret:
        return None
    keys = _totp_keys(settings)
    keep_updated_at = {"updated_at": table.c.updated_at}
    try:
        secret = keys.unseal(row.totp_secret, row.email)
    except totp.SealError:
        secret = None
    if secret is not None:
        moment = time.time() if now is None else now
        step = totp.matching_step(secret, code, moment, row.totp_last_step)
        if step is not None:
            last = table.c.totp_last_step
            claimed = connection.execute(
                update(table)
                .where(table.c.email == row.email, (last.is_(None)) | (last < step))
                .values(totp_last_step=step, **keep_updated_at)
            )
            _expire(session, row.email)
            return "totp" if claimed.rowcount == 1 else None
    stored = list(row.totp_recovery_codes or [])
    found = keys.find_recovery(stored, code)
    if found is None:
        return None
    rest = [h for h in stored if h != found]
    burned = connection.execute(
        update(table)
        .where(table.c.email == row.email, table.c.totp_recovery_codes == stored)
        .values(totp_recovery_codes=rest, **keep_updated_at)
    )
    _expire(session, row.email)
    return "recovery" if burned.rowcount == 1 else None


def _expire(session: Session, email: str) -> None:
    """Forget a loaded User's columns after a Core update, so it is read again if used."""
    loaded = session.identity_map.get(session.identity_key(User, email))
    if loaded is not None:
        session.expire(loaded)
