"""Fetches: remote POP3/IMAP accounts fetched into a user's mailbox (Mailu's ``fetch``).

Users manage theirs on the web (the operations below); with FETCHMAIL_ENABLED the fetcher
(roost.fetcher) reads them all each round (:func:`accounts_to_fetch`) and records how each
run went (:func:`record_results`), which the user's page shows.
``last_check`` and ``error`` are run-time state, exported only with ``--full``; the
password is a secret, hidden unless ``--secrets``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from roost.store.entities.fields import (
    Field,
    boolean,
    choice,
    integer,
    moment,
    optional,
    text,
)
from roost.store.entities.names import ManageError, require_user, show_email
from roost.store.models import Fetch, User

__all__ = [
    "DEFAULT_PORTS",
    "FIELDS",
    "MATCH",
    "NEEDED",
    "FetchSettings",
    "accounts_to_fetch",
    "add_fetch",
    "change_fetch",
    "delete_fetch",
    "fetch_ids",
    "list_fetches",
    "record_results",
    "user_fetch",
]


def _folders(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(
        isinstance(i, str) and "," not in i and i.isprintable() for i in value
    ):
        raise ValueError("expected a list of folder names without commas or control characters")
    return value


FIELDS: tuple[Field, ...] = (
    Field("id"),
    Field("comment", text(255), "", read=lambda f: f.comment or ""),
    Field("error", optional(text(1023)), None, full_only=True),
    Field("folders", _folders, (), read=lambda f: list(f.folders or [])),
    # Mailu's template shows hash_password on fetches too; fetchmail needs the plaintext,
    # so the flag is accepted and the password kept as given.
    Field("hash_password", default=False, exported=False),
    Field("host", text(255, required=True)),
    Field("invisible", boolean, False),
    Field("keep", boolean, False),
    Field("last_check", optional(moment), None, full_only=True),
    Field("password"),
    Field("port", integer(1, 65535)),
    Field("protocol", choice("imap", "pop3")),
    Field("scan", boolean, False),
    Field("tls", boolean, False),
    Field("username", text(255, required=True)),
)

#: What identifies a fetch without an id when merging (``--update``).
MATCH = ("host", "port", "protocol", "username")
#: What a new fetch must be given (with its password).
NEEDED = MATCH


#: The usual port of each protocol, with and without implicit TLS (RFC 8314).
DEFAULT_PORTS = {
    ("imap", True): 993,
    ("imap", False): 143,
    ("pop3", True): 995,
    ("pop3", False): 110,
}
#: Longest remote password the store keeps (the column's width).
PASSWORD_MAX = 255
#: Longest error text the store keeps (the column's width).
ERROR_MAX = 1023


@dataclass(frozen=True)
class FetchSettings:
    """What a person sets of a fetched account; ``port`` None takes the protocol's usual
    one and ``password`` None keeps the stored password (a new fetch needs one)."""

    protocol: str
    host: str
    username: str
    tls: bool = True
    port: int | None = None
    password: str | None = None
    keep: bool = False
    comment: str = ""
    #: through Postfix, so that Rspamd scans them (Mailu's "rescan emails locally")
    scan: bool = False
    #: fetchmail's ``--invisible`` (Mailu's "keep original metadata")
    invisible: bool = False
    #: IMAP folders to fetch; none: INBOX (POP3 has only the one)
    folders: tuple[str, ...] = ()


def _checked(name: str, label: str, value: Any) -> Any:
    parser = next(field.parse for field in FIELDS if field.name == name)
    assert parser is not None
    try:
        return parser(value)
    except ValueError as exc:
        raise ManageError(f"{label}: {exc}") from None


def _apply(fetch: Fetch, values: FetchSettings) -> None:
    protocol = _checked("protocol", "protocol", values.protocol)
    port = DEFAULT_PORTS[(protocol, values.tls)] if values.port is None else values.port
    fetch.port = _checked("port", "port", port)
    fetch.protocol, fetch.tls = protocol, values.tls
    fetch.host = _checked("host", "server", values.host.strip())
    fetch.username = _checked("username", "user name", values.username.strip())
    fetch.comment = _checked("comment", "comment", values.comment.strip())
    fetch.keep, fetch.scan, fetch.invisible = values.keep, values.scan, values.invisible
    names = [name.strip() for name in values.folders if name.strip()]
    fetch.folders = _checked("folders", "folders", names)
    if values.password:
        if len(values.password) > PASSWORD_MAX:
            raise ManageError(f"password: longer than {PASSWORD_MAX} characters")
        fetch.password = values.password


def user_fetch(session: Session, email: str, fetch_id: int) -> Fetch:
    """The fetch ``fetch_id`` of ``email``; another user's is refused as unknown."""
    fetch = session.get(Fetch, fetch_id)
    if fetch is None or fetch.user_email != email:
        raise ManageError(f"'{show_email(email)}' has no fetched account {fetch_id}")
    return fetch


def list_fetches(session: Session, email: str) -> list[Fetch]:
    user = require_user(session, email)
    return list(
        session.scalars(select(Fetch).where(Fetch.user_email == user.email).order_by(Fetch.id))
    )


def add_fetch(session: Session, email: str, values: FetchSettings) -> Fetch:
    if not values.password:
        raise ManageError("password: a new fetched account needs the remote password")
    fetch = Fetch(user=require_user(session, email), folders=[])
    _apply(fetch, values)
    session.add(fetch)
    return fetch


def change_fetch(session: Session, email: str, fetch_id: int, values: FetchSettings) -> Fetch:
    fetch = user_fetch(session, email, fetch_id)
    _apply(fetch, values)
    return fetch


def delete_fetch(session: Session, email: str, fetch_id: int) -> None:
    session.delete(user_fetch(session, email, fetch_id))


def accounts_to_fetch(session: Session) -> list[Fetch]:
    """Every fetch of an enabled user, oldest first: a disabled user's mailbox takes no
    mail, so their remote accounts are left alone (and keep their messages) meanwhile."""
    query = select(Fetch).join(User, Fetch.user_email == User.email).where(User.enabled)
    return list(session.scalars(query.order_by(Fetch.id)))


def fetch_ids(session: Session) -> set[int]:
    """The id of every fetch, of enabled users or not."""
    return set(session.scalars(select(Fetch.id)))


def record_results(session: Session, results: Mapping[int, tuple[dt.datetime, str]]) -> None:
    """Store each fetch's last check and error (empty: it worked), by fetch id.

    Mailu stores only the time (its loop posts the error under a name the model does not
    have); here the user also sees why the last run failed. A fetch deleted while it ran
    is skipped.
    """
    for fetch_id, (when, error) in results.items():
        fetch = session.get(Fetch, fetch_id)
        if fetch is None:
            continue
        fetch.last_check = when
        fetch.error = error[:ERROR_MAX] or None
