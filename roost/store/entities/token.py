"""App tokens: per-client passwords, stored hashed, optionally limited to networks.

A token is 32 lower-case hex characters (Mailu's ``Token`` model, core/admin/mailu/models.py),
shown once when it is made; only its hash is kept.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from roost.core.passwords import generate_token, hash_token
from roost.store.entities.fields import Field, text
from roost.store.entities.names import ManageError, require_user, show_email
from roost.store.models import Token

__all__ = ["FIELDS", "add_token", "delete_token", "list_tokens", "parse_networks"]


def parse_networks(items: Iterable[str]) -> list[str]:
    """Networks a token is limited to, as CIDR text (a bare address is a /32 or /128)."""
    networks: list[str] = []
    for item in items:
        for part in str(item).split(","):
            entry = part.strip()
            if not entry:
                continue
            try:
                networks.append(str(ipaddress.ip_network(entry, strict=False)))
            except ValueError:
                raise ManageError(f"{entry!r} is not an IP address or network") from None
    return networks


def _networks(value: Any) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError("expected a list of networks")
    return parse_networks(str(i) for i in items)


#: The comment column's width.
COMMENT_MAX = 255

FIELDS: tuple[Field, ...] = (
    Field("id"),
    Field("comment", text(COMMENT_MAX), "", read=lambda t: t.comment or ""),
    Field("hash_password", default=False, exported=False),
    Field("ip", _networks, (), read=lambda t: list(t.ip or [])),
    Field("password"),
)


def add_token(
    session: Session, email: str, comment: str = "", networks: Iterable[str] = ()
) -> tuple[Token, str]:
    """Create an app token; returns it and the raw secret, which is never stored."""
    user = require_user(session, email)
    if len(comment) > COMMENT_MAX:
        raise ManageError(f"comment: longer than {COMMENT_MAX} characters")
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


def list_tokens(session: Session, email: str) -> list[Token]:
    user = require_user(session, email)
    return list(
        session.scalars(select(Token).where(Token.user_email == user.email).order_by(Token.id))
    )
