"""``/user`` (Mailu's user.py): every field Mailu's API takes, through the rule book.

Each field goes through its entity's declaration or operation: the quota through
``set_quota`` (the domain's max_quota_bytes), forwarding through ``set_forward``, the
auto-reply through ``set_autoreply``, plain fields through their ``FIELDS`` parsers, so the
API refuses what the CLI refuses, with the same message.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

from fastapi import APIRouter
from sqlalchemy import select
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

__all__ = ["UserList", "apply_user", "router", "user_records", "user_rows"]

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


@lru_cache(maxsize=4096)
def _shown_domain(name: str) -> str:
    return show_domain(name)


def _shown(email: str) -> str:
    local, _, domain = email.rpartition("@")
    return f"{local}@{_shown_domain(domain)}" if local else email


def user_records(
    session: Session, domain: str | None = None, email: str | None = None
) -> list[dict[str, Any]]:
    """UserGet records read with one column select (no ORM objects: 10,000 users are one
    list answer in Mailu's API). Null fields are left out, as Mailu's marshalling does.
    The password hash, which Mailu's API shows, is never shown."""
    query = select(*_COLUMNS).order_by(User.domain_name, User.localpart)
    if domain is not None:
        query = query.where(User.domain_name == domain)
    if email is not None:
        query = query.where(User.email == email)
    rows = []
    for row in session.execute(query):
        record = dict(zip(_NAMES, row, strict=True))
        record["email"] = _shown(record["email"])
        record["forward_destination"] = [_shown(a) for a in record["forward_destination"] or []]
        record["reply_startdate"] = record["reply_startdate"].isoformat()
        record["reply_enddate"] = record["reply_enddate"].isoformat()
        rows.append({k: v for k, v in record.items() if v is not None})
    return rows


def user_rows(session: Session, domain: str | None = None) -> MailuJSON:
    """The users (of ``domain``) as the list answer, encoded at once."""
    return MailuJSON(user_records(session, domain))


class UserList:
    """``GET /user``'s answer, kept while the store is unchanged.

    With 10,000 users, reading and encoding every field takes a few hundred milliseconds on
    a small machine; checking that nothing changed takes a few. Every committed write bumps
    the store's generation (roost/store/db.py), except Dovecot's quota usage, which is
    written without one; so the key is the generation and the quota usage column itself,
    read in the same transaction as the answer would be.
    """

    def __init__(self) -> None:
        self._key: tuple[int, int] | None = None
        self._body = b""
        self._lock = threading.Lock()

    def answer(self, session: Session) -> Response:
        generation = session.scalar(select(StoreGeneration.generation)) or 0
        usage = tuple(
            session.scalars(
                select(User.quota_bytes_used).order_by(User.domain_name, User.localpart)
            )
        )
        key = (int(generation), hash(usage))
        with self._lock:
            if key == self._key:
                return Response(self._body, media_type="application/json")
        body = user_rows(session).body
        with self._lock:
            self._key, self._body = key, bytes(body)
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
