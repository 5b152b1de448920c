"""The store's tables, with Mailu's names, columns and defaults (core/admin/mailu/models.py).

Keeping Mailu's schema means a Mailu database and a Mailu ``config-export`` carry over
unchanged. Addresses and domain names are stored lower-cased with the domain in punycode;
Python code sees them that way too (the CLI converts to Unicode for display).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "fk": "%(table_name)s_%(column_0_name)s_fkey",
    "pk": "%(table_name)s_pkey",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ix": "ix_%(table_name)s_%(column_0_name)s",
}


class CommaSeparatedList(TypeDecorator[list[str]]):
    """Mailu's list column: de-duplicated, sorted, joined with commas (``CommaSeparatedList``)."""

    impl = String(4096)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str:
        if not value:
            return ""
        if isinstance(value, str):
            value = value.split(",")
        items = {str(item).strip() for item in value if str(item).strip()}
        if any("," in item for item in items):
            raise ValueError("list items must not contain a comma")
        return ",".join(sorted(items))

    def process_result_value(self, value: str | None, dialect: Dialect) -> list[str]:
        return [item for item in value.split(",") if item] if value else []


class JSONEncoded(TypeDecorator[Any]):
    """Mailu's JSON column: JSON text in a String(255), NULL stays None (``JSONEncoded``)."""

    impl = String(255)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else json.dumps(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


def _today() -> dt.date:
    return dt.date.today()


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Audited:
    """Columns every Mailu table has."""

    created_at: Mapped[dt.date] = mapped_column(Date, nullable=False, default=_today)
    updated_at: Mapped[dt.date | None] = mapped_column(Date, nullable=True, onupdate=_today)
    comment: Mapped[str | None] = mapped_column(String(255), nullable=True, default="")


manager = Table(
    "manager",
    Base.metadata,
    Column("domain_name", String(80), ForeignKey("domain.name", ondelete="CASCADE")),
    Column("user_email", String(255), ForeignKey("user.email", ondelete="CASCADE")),
)


class Domain(Audited, Base):
    __tablename__ = "domain"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    max_users: Mapped[int] = mapped_column(Integer, nullable=False, default=-1)
    max_aliases: Mapped[int] = mapped_column(Integer, nullable=False, default=-1)
    max_quota_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    signup_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    anonmail_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Roost's own (Mailu has no two-factor login): every user of the domain must enrol.
    totp_required: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )

    users: Mapped[list[User]] = relationship(
        back_populates="domain", cascade="all, delete-orphan", passive_deletes=True
    )
    aliases: Mapped[list[Alias]] = relationship(
        back_populates="domain", cascade="all, delete-orphan", passive_deletes=True
    )
    alternatives: Mapped[list[Alternative]] = relationship(
        back_populates="domain", cascade="all, delete-orphan", passive_deletes=True
    )
    managers: Mapped[list[User]] = relationship(
        secondary=manager, back_populates="manager_of", passive_deletes=True
    )
    domain_accesses: Mapped[list[DomainAccess]] = relationship(
        back_populates="domain", cascade="all, delete-orphan", passive_deletes=True
    )


class Alternative(Audited, Base):
    """A domain alias: every ``x@alternative`` is ``x@domain``."""

    __tablename__ = "alternative"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    domain_name: Mapped[str] = mapped_column(
        String(80), ForeignKey("domain.name", ondelete="CASCADE"), nullable=False
    )
    domain: Mapped[Domain] = relationship(back_populates="alternatives")


class Relay(Audited, Base):
    """A relayed domain; ``smtp`` is the target host (roost.core.transport reads it)."""

    __tablename__ = "relay"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    smtp: Mapped[str | None] = mapped_column(String(80), nullable=True, default="")


class User(Audited, Base):
    __tablename__ = "user"

    email: Mapped[str] = mapped_column(String(255), primary_key=True)
    localpart: Mapped[str] = mapped_column(String(80), nullable=False)
    domain_name: Mapped[str] = mapped_column(
        String(80), ForeignKey("domain.name", ondelete="CASCADE"), nullable=False
    )
    password: Mapped[str] = mapped_column(String(255), nullable=False)
    quota_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=10**9)
    quota_bytes_used: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    global_admin: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    change_pw_next_login: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    enable_imap: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    enable_pop: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    allow_spoofing: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    forward_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    forward_destination: Mapped[list[str]] = mapped_column(
        CommaSeparatedList, nullable=True, default=list
    )
    forward_keep: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    reply_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    reply_subject: Mapped[str | None] = mapped_column(String(255), nullable=True)
    reply_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    reply_startdate: Mapped[dt.date] = mapped_column(
        Date, nullable=False, default=dt.date(1900, 1, 1)
    )
    reply_enddate: Mapped[dt.date] = mapped_column(
        Date, nullable=False, default=dt.date(2999, 12, 31)
    )
    displayed_name: Mapped[str] = mapped_column(String(160), nullable=False, default="")
    spam_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    spam_mark_as_read: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    spam_threshold: Mapped[int] = mapped_column(Integer, nullable=False, default=80)
    # Roost's own (Mailu has no two-factor login), roost/core/totp.py: the TOTP secret
    # sealed with a key derived from SECRET_KEY (set at enrolment, in use once enabled),
    # the last time step accepted (a code is never accepted twice) and the HMACs of the
    # unused recovery codes.
    totp_enabled: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    totp_secret: Mapped[str | None] = mapped_column(String(255), nullable=True)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    totp_recovery_codes: Mapped[list[str]] = mapped_column(
        CommaSeparatedList, nullable=True, default=list
    )

    domain: Mapped[Domain] = relationship(back_populates="users")
    tokens: Mapped[list[Token]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )
    fetches: Mapped[list[Fetch]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )
    manager_of: Mapped[list[Domain]] = relationship(
        secondary=manager, back_populates="managers", passive_deletes=True
    )
    owned_aliases: Mapped[list[Alias]] = relationship(
        back_populates="owner", cascade="all, delete-orphan", passive_deletes=True
    )
    domain_accesses: Mapped[list[DomainAccess]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )


class Alias(Audited, Base):
    """An alias; with ``wildcard`` the local part is an SQL LIKE pattern (``%`` = catch-all)."""

    __tablename__ = "alias"

    email: Mapped[str] = mapped_column(String(255), primary_key=True)
    localpart: Mapped[str] = mapped_column(String(80), nullable=False)
    domain_name: Mapped[str] = mapped_column(
        String(80), ForeignKey("domain.name", ondelete="CASCADE"), nullable=False
    )
    wildcard: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    destination: Mapped[list[str]] = mapped_column(CommaSeparatedList, nullable=False, default=list)
    hostname: Mapped[str | None] = mapped_column(String(255), nullable=True)
    owner_email: Mapped[str | None] = mapped_column(
        String(255), ForeignKey("user.email", ondelete="CASCADE"), nullable=True
    )
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    domain: Mapped[Domain] = relationship(back_populates="aliases")
    owner: Mapped[User | None] = relationship(back_populates="owned_aliases")


class Token(Audited, Base):
    """An app password: 32 hex characters, stored hashed, optionally bound to networks."""

    __tablename__ = "token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_email: Mapped[str] = mapped_column(
        String(255), ForeignKey("user.email", ondelete="CASCADE"), nullable=False
    )
    password: Mapped[str] = mapped_column(String(255), nullable=False)
    ip: Mapped[list[str]] = mapped_column(CommaSeparatedList, nullable=True, default=list)

    user: Mapped[User] = relationship(back_populates="tokens")


class Fetch(Audited, Base):
    """A remote POP3/IMAP account fetched into the user's mailbox."""

    __tablename__ = "fetch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_email: Mapped[str] = mapped_column(
        String(255), ForeignKey("user.email", ondelete="CASCADE"), nullable=False
    )
    protocol: Mapped[str] = mapped_column(Enum("imap", "pop3", name="protocol"), nullable=False)
    host: Mapped[str] = mapped_column(String(255), nullable=False)
    port: Mapped[int] = mapped_column(Integer, nullable=False)
    tls: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    username: Mapped[str] = mapped_column(String(255), nullable=False)
    password: Mapped[str] = mapped_column(String(255), nullable=False)
    keep: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    scan: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    invisible: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    folders: Mapped[list[str]] = mapped_column(CommaSeparatedList, nullable=True, default=list)
    last_check: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    error: Mapped[str | None] = mapped_column(String(1023), nullable=True)

    user: Mapped[User] = relationship(back_populates="fetches")


class DomainAccess(Audited, Base):
    """A grant to create anonymous aliases in a domain."""

    __tablename__ = "domain_access"
    __table_args__ = (UniqueConstraint("domain_name", "user_email", name="uq_domain_access_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    domain_name: Mapped[str] = mapped_column(
        String(80), ForeignKey("domain.name", ondelete="CASCADE"), nullable=False
    )
    user_email: Mapped[str | None] = mapped_column(
        String(255), ForeignKey("user.email", ondelete="CASCADE"), nullable=True
    )

    domain: Mapped[Domain] = relationship(back_populates="domain_accesses")
    user: Mapped[User | None] = relationship(back_populates="domain_accesses")


class Config(Audited, Base):
    """Mailu's key/value table; unused, kept so a Mailu database carries over."""

    __tablename__ = "config"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONEncoded, nullable=True)


class StoreGeneration(Base):
    """One row counting committed changes, so every reader can tell the store moved.

    The gate polls it (cheap) in addition to the CLI's direct reload request, which
    covers writers on other hosts sharing a PostgreSQL or MariaDB store.
    """

    __tablename__ = "roost_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
