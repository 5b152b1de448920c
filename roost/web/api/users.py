"""``/user`` (Mailu's user.py): every field Mailu's API takes, through the rule book.

Each field goes through its entity's declaration or operation: the quota through
``set_quota`` (the domain's max_quota_bytes), forwarding through ``set_forward``, the
auto-reply through ``set_autoreply``, plain fields through their ``FIELDS`` parsers, so the
API refuses what the CLI refuses, with the same message.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, cast

from fastapi import APIRouter
from sqlalchemy import Boolean, ColumnElement, Integer, Row, String, Table, select, type_coerce
from sqlalchemy.orm import Session
from starlette.responses import Response

from roost.store.entities import user as users
from roost.store.entities.domain import check_room
from roost.store.entities.fields import day
from roost.store.entities.names import check_address_free, show_domain
from roost.store.models import StoreGeneration, User
from roost.web.api import schemas
from roost.web.api.backend import Backend, conflict, invalid, parsed
from roost.web.api.lookups import find_domain, find_user, stored_email
from roost.web.api.responses import MailuJSON, PathText, answers, done

__all__ = ["RowCache", "UserList", "apply_user", "router", "user_records", "user_rows"]

#: Fields that are one column each, checked by their declared parser.
_PLAIN = (
    "comment",
    "global_admin",
    "enabled",
    "enable_imap",
    "enable_pop",
    "allow_spoofing",
    "displayed_name",
    "spam_enabled",
    "spam_mark_as_read",
    "spam_threshold",
    "change_pw_next_login",
)
_COLUMNS = (
    User.email,
    User.comment,
    User.quota_bytes,
    User.quota_bytes_used,
    User.global_admin,
    User.enabled,
    User.change_pw_next_login,
    User.enable_imap,
    User.enable_pop,
    User.allow_spoofing,
    User.forward_enabled,
    User.forward_destination,
    User.forward_keep,
    User.reply_enabled,
    User.reply_subject,
    User.reply_body,
    User.reply_startdate,
    User.reply_enddate,
    User.displayed_name,
    User.spam_enabled,
    User.spam_mark_as_read,
    User.spam_threshold,
)
_NAMES = tuple(c.key for c in _COLUMNS)
_TABLE = cast(Table, User.__table__)
_DATES = ("reply_startdate", "reply_enddate")
_USED = _NAMES.index("quota_bytes_used")
_SQLITE_DATE = re.compile(r"(\d+)-(\d+)-(\d+)")
_BOOLEANS = frozenset(c.key for c in _COLUMNS if isinstance(c.type, Boolean))


def _raw(name: str) -> ColumnElement[Any]:
    """The column as the database hands it over: no result processing in Python (the
    forward list its stored comma-separated text, a date SQLite's ISO text or the driver's
    date, a boolean 0/1 or the driver's bool). Only a row not seen before is decoded."""
    column = _TABLE.c[name]
    if name == "forward_destination" or name in _DATES:
        return type_coerce(column, String)
    if name in _BOOLEANS:
        return type_coerce(column, Integer)
    return column


_RAW_QUERY = select(*(_raw(name) for name in _NAMES)).order_by(
    _TABLE.c.domain_name, _TABLE.c.localpart
)


@lru_cache(maxsize=4096)
def _shown_domain(name: str) -> str:
    return show_domain(name)


def _shown(email: str) -> str:
    local, _, domain = email.rpartition("@")
    return f"{local}@{_shown_domain(domain)}" if local else email


def _day(value: Any) -> str:
    """ISO 8601 from a date, or from SQLite's text read as SQLAlchemy reads it."""
    if isinstance(value, str):
        found = _SQLITE_DATE.match(value)
        if found is None:
            raise ValueError(f"not a date: {value!r}")
        value = dt.date(*(int(part) for part in found.groups()))
    return str(value.isoformat())


def _record(row: Sequence[Any]) -> dict[str, Any]:
    """The UserGet record of one raw row (see :func:`_raw`). Null fields are left out, as
    Mailu's marshalling does."""
    record = dict(zip(_NAMES, row, strict=True))
    for name in _BOOLEANS:
        record[name] = bool(record[name])
    record["email"] = _shown(record["email"])
    forward = record["forward_destination"]
    record["forward_destination"] = [_shown(a) for a in forward.split(",") if a] if forward else []
    for name in _DATES:
        record[name] = _day(record[name])
    return {k: v for k, v in record.items() if v is not None}


def _raw_rows(
    session: Session, domain: str | None = None, email: str | None = None
) -> Sequence[Row[Any]]:
    query = _RAW_QUERY
    if domain is not None:
        query = query.where(_TABLE.c.domain_name == domain)
    if email is not None:
        query = query.where(_TABLE.c.email == email)
    # Core, not the ORM: the session's connection, so the same transaction.
    return session.connection().execute(query).all()


def user_records(
    session: Session, domain: str | None = None, email: str | None = None
) -> list[dict[str, Any]]:
    """UserGet records read with one column select (no ORM objects: 10,000 users are one
    list answer in Mailu's API). The password hash, which Mailu's API shows, is never
    shown."""
    return [_record(row) for row in _raw_rows(session, domain, email)]


def user_rows(session: Session, domain: str | None = None) -> MailuJSON:
    """The users (of ``domain``) as the list answer, encoded at once."""
    return MailuJSON(user_records(session, domain))


class RowCache:
    """Each user's encoded JSON record, keyed by the raw row it was made from.

    The key is every column the record shows, exactly as read, so a record is reused only
    for a row that is the same in every field: nothing stale can be served, and after a
    change only the changed rows are decoded and encoded again. Each rebuild keeps only the
    rows it saw, so the cache never holds more than the users there are.
    """

    def __init__(self) -> None:
        self._encoded: dict[tuple[Any, ...], bytes] = {}

    def body(self, session: Session) -> bytes:
        """``GET /user``'s JSON from the store."""
        return self.encode(_raw_rows(session))

    def encode(self, rows: Sequence[Row[Any]]) -> bytes:
        """``GET /user``'s JSON of ``rows`` (read by :func:`_raw_rows`): Mailu's separators,
        as ``json.dumps`` of the list of records writes them."""
        known = self._encoded
        fresh: dict[tuple[Any, ...], bytes] = {}
        parts = []
        for row in rows:
            key = tuple(row)
            encoded = known.get(key)
            if encoded is None:
                encoded = json.dumps(_record(key)).encode("utf-8")
            fresh[key] = encoded
            parts.append(encoded)
        self._encoded = fresh
        return b"[" + b", ".join(parts) + b"]"


class UserList:
    """``GET /user``'s answer, kept while the store is unchanged.

    Every committed write bumps the store's generation (roost/store/db.py), except
    Dovecot's quota usage, which is written without one; so the key is the generation and
    the quota usage column itself, read in the same transaction as the answer. While the
    generation is the one kept, only the usage column is read to check; otherwise the rows
    are read at once, and the answer is built from them, reusing the encoded record of
    every row that did not change (:class:`RowCache`).
    """

    def __init__(self) -> None:
        self._key: tuple[int, int] | None = None
        self._body = b""
        self._rows = RowCache()
        self._lock = threading.Lock()

    def answer(self, session: Session) -> Response:
        generation = int(session.scalar(select(StoreGeneration.generation)) or 0)
        with self._lock:
            key, body = self._key, self._body
        if key is not None and key[0] == generation:
            usage = session.scalars(
                select(User.quota_bytes_used).order_by(User.domain_name, User.localpart)
            )
            if hash(tuple(usage)) == key[1]:
                return Response(body, media_type="application/json")
        rows = _raw_rows(session)
        used = hash(tuple(row[_USED] for row in rows))
        with self._lock:
            # One build at a time: each replaces the row cache whole.
            body = self._rows.encode(rows)
            self._key, self._body = (generation, used), body
        return Response(body, media_type="application/json")


def apply_user(session: Session, user: User, body: schemas.UserUpdate) -> None:
    """Apply the fields a create or update names; None leaves a field as it is."""
    email = user.email
    if body.raw_password is not None:
        # The CLI's reset also forces a change at the next login; Mailu's API does not,
        # so the flag keeps its value unless the request sets it.
        keep = user.change_pw_next_login
        invalid(lambda: users.set_password(session, email, body.raw_password or ""))
        user.change_pw_next_login = keep
    for name in _PLAIN:
        value = getattr(body, name)
        if value is not None:
            setattr(user, name, parsed(users.FIELDS, name, value))
    if body.quota_bytes is not None:
        quota = body.quota_bytes
        invalid(lambda: users.set_quota(session, email, quota))
    if (body.forward_enabled, body.forward_destination, body.forward_keep) != (None,) * 3:
        # Mailu ignores an empty destination list rather than clearing the stored one.
        targets = body.forward_destination or None
        invalid(
            lambda: users.set_forward(
                session, email, targets, keep=body.forward_keep, enabled=body.forward_enabled
            )
        )
    replies = (body.reply_subject, body.reply_body, body.reply_startdate, body.reply_enddate)
    if body.reply_enabled is not None or replies != (None,) * 4:
        start = None if body.reply_startdate is None else invalid(lambda: day(body.reply_startdate))
        end = None if body.reply_enddate is None else invalid(lambda: day(body.reply_enddate))
        enabled = user.reply_enabled if body.reply_enabled is None else body.reply_enabled
        invalid(
            lambda: users.set_autoreply(
                session,
                email,
                enabled=enabled,
                subject=body.reply_subject,
                body=body.reply_body,
                start=start,
                end=end,
            )
        )


def router(backend: Backend) -> APIRouter:
    api = APIRouter(tags=["user"])
    settings = backend.settings
    everyone = UserList()

    @api.get("/user", response_model=list[schemas.UserGet], responses=answers())
    def list_users() -> Any:
        with backend.reading() as session:
            return everyone.answer(session)

    @api.post("/user", response_model=schemas.Result, responses=answers(404, 409))
    def create_user(body: schemas.UserCreate) -> Any:
        with backend.changing() as session:
            email = stored_email(body.email)
            local, _, domain_part = email.rpartition("@")
            parent = find_domain(session, domain_part)
            conflict(lambda: check_address_free(session, email))
            conflict(lambda: check_room(session, parent, User))
            user = invalid(
                lambda: users.create_user(
                    session,
                    settings,
                    local,
                    parent.name,
                    body.raw_password or "",
                    global_admin=bool(body.global_admin),
                    change_pw_next_login=bool(body.change_pw_next_login),
                )
            )
            session.flush()
            apply_user(session, user, body.model_copy(update={"raw_password": None}))
            shown = _shown(user.email)
        return done(f"User {shown} has been created")

    @api.get("/user/{email}", response_model=schemas.UserGet, responses=answers(404))
    def get_user(email: PathText) -> Any:
        with backend.reading() as session:
            found = find_user(session, email).email
            return MailuJSON(user_records(session, email=found)[0])

    @api.patch("/user/{email}", response_model=schemas.Result, responses=answers(404))
    def update_user(body: schemas.UserUpdate, email: PathText) -> Any:
        with backend.changing() as session:
            user = find_user(session, email)
            apply_user(session, user, body)
            shown = _shown(user.email)
        return done(f"User {shown} has been updated")

    @api.delete("/user/{email}", response_model=schemas.Result, responses=answers(404))
    def delete_user(email: PathText) -> Any:
        with backend.changing() as session:
            user = find_user(session, email)
            shown = _shown(user.email)
            # Mailu's API deletes (the CLI's default only disables).
            users.delete_user(session, user.email, really=True)
        return done(f"User {shown} has been deleted")

    return api
