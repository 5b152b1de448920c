"""``GET /user``'s row cache (roost/web/api/users.py, RowCache) on a real SQLite store: the
answer is byte for byte what Mailu's marshalling of the ORM's users gives, after any change
to any field (written through the ORM, or behind its back with SQL text, as Dovecot's quota
report is), and only changed rows are decoded again."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.orm import Session

from roost.settings import load_settings
from roost.store.db import Store
from roost.store.entities.names import show_domain
from roost.store.models import Domain, User
from roost.web.api import users as api_users
from roost.web.api.users import RowCache, user_rows

DOMAINS = ("example.com", "xn--bcher-kva.test")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    env = tmp_path / "mailu.env"
    env.write_text(
        f"ROOT={tmp_path / 'root'}\nDOMAIN=example.com\nHOSTNAMES=mail.example.com\n"
        "SECRET_KEY=cache-test-secret-0123456789\n"
    )
    opened = Store.from_settings(load_settings(env_file=env, environ={}))
    opened.upgrade()
    with opened.session() as session:
        session.execute(insert(Domain), [{"name": d} for d in DOMAINS])
        session.execute(
            insert(User),
            [
                {
                    "email": f"u{n}@{DOMAINS[n % 2]}",
                    "localpart": f"u{n}",
                    "domain_name": DOMAINS[n % 2],
                    "password": "x",
                    "comment": "" if n % 3 else None,
                }
                for n in range(40)
            ],
        )
    try:
        yield opened
    finally:
        opened.dispose()


def _shown(email: str) -> str:
    local, _, domain = email.rpartition("@")
    return f"{local}@{show_domain(domain)}"


def expected(session: Session) -> bytes:
    """Mailu's marshalling of the ORM's users, written out independently of the API."""
    records = []
    query = select(User).order_by(User.domain_name, User.localpart)
    for user in session.scalars(query):
        record: dict[str, Any] = {
            "email": _shown(user.email),
            "comment": user.comment,
            "quota_bytes": user.quota_bytes,
            "quota_bytes_used": user.quota_bytes_used,
            "global_admin": user.global_admin,
            "enabled": user.enabled,
            "change_pw_next_login": user.change_pw_next_login,
            "enable_imap": user.enable_imap,
            "enable_pop": user.enable_pop,
            "allow_spoofing": user.allow_spoofing,
            "forward_enabled": user.forward_enabled,
            "forward_destination": [_shown(a) for a in user.forward_destination or []],
            "forward_keep": user.forward_keep,
            "reply_enabled": user.reply_enabled,
            "reply_subject": user.reply_subject,
            "reply_body": user.reply_body,
            "reply_startdate": user.reply_startdate.isoformat(),
            "reply_enddate": user.reply_enddate.isoformat(),
            "displayed_name": user.displayed_name,
            "spam_enabled": user.spam_enabled,
            "spam_mark_as_read": user.spam_mark_as_read,
            "spam_threshold": user.spam_threshold,
        }
        records.append({k: v for k, v in record.items() if v is not None})
    session.expunge_all()
    return json.dumps(records).encode()


#: One change to each field the answer shows (the email: a rename).
CHANGES: dict[str, Any] = {
    "email": None,
    "comment": "a comment ü",
    "quota_bytes": 123,
    "quota_bytes_used": 77,
    "global_admin": True,
    "enabled": False,
    "change_pw_next_login": True,
    "enable_imap": False,
    "enable_pop": False,
    "allow_spoofing": True,
    "forward_enabled": True,
    "forward_destination": ["b@xn--bcher-kva.test", "a@example.com"],
    "forward_keep": False,
    "reply_enabled": True,
    "reply_subject": "Away",
    "reply_body": 'Back "soon"\nbye',
    "reply_startdate": dt.date(2026, 1, 2),
    "reply_enddate": dt.date(2026, 12, 31),
    "displayed_name": "Ünal",
    "spam_enabled": False,
    "spam_mark_as_read": False,
    "spam_threshold": 42,
}


def test_every_field_covered() -> None:
    assert tuple(CHANGES) == api_users._NAMES


def test_the_answer_is_the_orm_view_byte_for_byte(store: Store) -> None:
    cache = RowCache()
    with store.session() as session:
        want = expected(session)
        assert cache.body(session) == want
        assert cache.body(session) == want  # from the cache
        assert bytes(user_rows(session).body) == want
        assert "bücher.test" in json.loads(want)[-1]["email"]


@pytest.mark.parametrize("name", list(CHANGES))
def test_a_change_to_any_field_is_seen_and_only_its_row_decoded_again(
    store: Store, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = RowCache()
    with store.session() as session:
        cache.body(session)
    decoded: list[Any] = []
    real = api_users._record

    def counting(row: Any) -> dict[str, Any]:
        decoded.append(row[0])
        return real(row)

    monkeypatch.setattr(api_users, "_record", counting)
    target = f"u5@{DOMAINS[1]}"
    with store.session() as session:
        if name == "email":
            session.execute(
                update(User)
                .where(User.email == target)
                .values(email=f"renamed@{DOMAINS[1]}", localpart="renamed")
            )
            target = f"renamed@{DOMAINS[1]}"
        else:
            session.execute(update(User).where(User.email == target).values({name: CHANGES[name]}))
    with store.session() as session:
        assert cache.body(session) == expected(session)
    assert decoded == [target]


def test_raw_sql_writes_and_deletions_are_seen(store: Store) -> None:
    cache = RowCache()
    with store.session() as session:
        before = cache.body(session)
    with store.engine.begin() as connection:  # behind the ORM's back, no generation bump
        connection.execute(
            text("UPDATE user SET quota_bytes_used = 5 WHERE email = 'u0@example.com'")
        )
        connection.execute(text("DELETE FROM user WHERE email = 'u2@example.com'"))
    with store.session() as session:
        after = cache.body(session)
        assert after != before and after == expected(session)
    listed = json.loads(after)
    assert len(listed) == 39 and not any(u["email"] == "u2@example.com" for u in listed)
    assert len(cache._encoded) == 39  # deleted rows are not kept
