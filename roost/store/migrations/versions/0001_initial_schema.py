"""Initial schema: Mailu's tables (core/admin/mailu/models.py) and Roost's change counter.

Revision ID: 0001
Revises:
Created: 2025-01-01

Written out in full rather than imported from ``models``: a migration must keep creating
the schema of its own day after the models move on. Constraint names follow the naming
convention in ``models.NAMING_CONVENTION`` (Mailu's ``<table>_<column>_fkey``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Addresses and display names are Unicode beyond the BMP. A binary collation compares
# exactly, as SQLite and PostgreSQL do: addresses are lower-cased by Roost already, and a
# case- or accent-folding collation would make two distinct local parts collide in a
# primary key.
MYSQL_TABLE: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}

PROTOCOL = sa.Enum("imap", "pop3", name="protocol")


def _audited() -> list[sa.Column]:
    """The columns every Mailu table carries."""
    return [
        sa.Column("created_at", sa.Date(), nullable=False),
        sa.Column("updated_at", sa.Date(), nullable=True),
        sa.Column("comment", sa.String(255), nullable=True),
    ]


def _cascade_fk(column: str, table: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [target], name=f"{table}_{column}_fkey", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "domain",
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("max_users", sa.Integer(), nullable=False),
        sa.Column("max_aliases", sa.Integer(), nullable=False),
        sa.Column("max_quota_bytes", sa.BigInteger(), nullable=False),
        sa.Column("signup_enabled", sa.Boolean(), nullable=False),
        sa.Column("anonmail_enabled", sa.Boolean(), nullable=False),
        *_audited(),
        sa.PrimaryKeyConstraint("name", name="domain_pkey"),
        **MYSQL_TABLE,
    )
    op.create_table(
        "relay",
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("smtp", sa.String(80), nullable=True),
        *_audited(),
        sa.PrimaryKeyConstraint("name", name="relay_pkey"),
        **MYSQL_TABLE,
    )
    op.create_table(
        "config",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("value", sa.String(255), nullable=True),
        *_audited(),
        sa.PrimaryKeyConstraint("name", name="config_pkey"),
        **MYSQL_TABLE,
    )
    generation = op.create_table(
        "roost_generation",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="roost_generation_pkey"),
        **MYSQL_TABLE,
    )
    op.bulk_insert(generation, [{"id": 1, "generation": 0}])
    op.create_table(
        "alternative",
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("domain_name", sa.String(80), nullable=False),
        *_audited(),
        _cascade_fk("domain_name", "alternative", "domain.name"),
        sa.PrimaryKeyConstraint("name", name="alternative_pkey"),
        **MYSQL_TABLE,
    )
    op.create_table(
        "user",
        sa.Column("email", sa.String(255), nullable=False),
        sa.Column("localpart", sa.String(80), nullable=False),
        sa.Column("domain_name", sa.String(80), nullable=False),
        sa.Column("password", sa.String(255), nullable=False),
        sa.Column("quota_bytes", sa.BigInteger(), nullable=False),
        sa.Column("quota_bytes_used", sa.BigInteger(), nullable=False),
        sa.Column("global_admin", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("change_pw_next_login", sa.Boolean(), nullable=False),
        sa.Column("enable_imap", sa.Boolean(), nullable=False),
        sa.Column("enable_pop", sa.Boolean(), nullable=False),
        sa.Column("allow_spoofing", sa.Boolean(), nullable=False),
        sa.Column("forward_enabled", sa.Boolean(), nullable=False),
        sa.Column("forward_destination", sa.String(4096), nullable=True),
        sa.Column("forward_keep", sa.Boolean(), nullable=False),
        sa.Column("reply_enabled", sa.Boolean(), nullable=False),
        sa.Column("reply_subject", sa.String(255), nullable=True),
        sa.Column("reply_body", sa.Text(), nullable=True),
        sa.Column("reply_startdate", sa.Date(), nullable=False),
        sa.Column("reply_enddate", sa.Date(), nullable=False),
        sa.Column("displayed_name", sa.String(160), nullable=False),
        sa.Column("spam_enabled", sa.Boolean(), nullable=False),
        sa.Column("spam_mark_as_read", sa.Boolean(), nullable=False),
        sa.Column("spam_threshold", sa.Integer(), nullable=False),
        *_audited(),
        _cascade_fk("domain_name", "user", "domain.name"),
        sa.PrimaryKeyConstraint("email", name="user_pkey"),
        **MYSQL_TABLE,
    )
    op.create_table(
        "manager",
        sa.Column("domain_name", sa.String(80), nullable=True),
        sa.Column("user_email", sa.String(255), nullable=True),
        _cascade_fk("domain_name", "manager", "domain.name"),
        _cascade_fk("user_email", "manager", "user.email"),
        **MYSQL_TABLE,
    )
    op.create_table(
        "alias",
        sa.Column("email", sa.String(255), nullable=False),
        sa.Column("localpart", sa.String(80), nullable=False),
        sa.Column("domain_name", sa.String(80), nullable=False),
        sa.Column("wildcard", sa.Boolean(), nullable=False),
        sa.Column("destination", sa.String(4096), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=True),
        sa.Column("owner_email", sa.String(255), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        *_audited(),
        _cascade_fk("domain_name", "alias", "domain.name"),
        _cascade_fk("owner_email", "alias", "user.email"),
        sa.PrimaryKeyConstraint("email", name="alias_pkey"),
        **MYSQL_TABLE,
    )
    op.create_table(
        "token",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("user_email", sa.String(255), nullable=False),
        sa.Column("password", sa.String(255), nullable=False),
        sa.Column("ip", sa.String(4096), nullable=True),
        *_audited(),
        _cascade_fk("user_email", "token", "user.email"),
        sa.PrimaryKeyConstraint("id", name="token_pkey"),
        **MYSQL_TABLE,
    )
    op.create_table(
        "fetch",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("user_email", sa.String(255), nullable=False),
        sa.Column("protocol", PROTOCOL, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("tls", sa.Boolean(), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("password", sa.String(255), nullable=False),
        sa.Column("keep", sa.Boolean(), nullable=False),
        sa.Column("scan", sa.Boolean(), nullable=False),
        sa.Column("invisible", sa.Boolean(), nullable=False),
        sa.Column("folders", sa.String(4096), nullable=True),
        sa.Column("last_check", sa.DateTime(), nullable=True),
        sa.Column("error", sa.String(1023), nullable=True),
        *_audited(),
        _cascade_fk("user_email", "fetch", "user.email"),
        sa.PrimaryKeyConstraint("id", name="fetch_pkey"),
        **MYSQL_TABLE,
    )
    op.create_table(
        "domain_access",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("domain_name", sa.String(80), nullable=False),
        sa.Column("user_email", sa.String(255), nullable=True),
        *_audited(),
        _cascade_fk("domain_name", "domain_access", "domain.name"),
        _cascade_fk("user_email", "domain_access", "user.email"),
        sa.PrimaryKeyConstraint("id", name="domain_access_pkey"),
        sa.UniqueConstraint("domain_name", "user_email", name="uq_domain_access_user"),
        **MYSQL_TABLE,
    )


def downgrade() -> None:
    for table in (
        "domain_access",
        "fetch",
        "token",
        "alias",
        "manager",
        "user",
        "alternative",
        "roost_generation",
        "config",
        "relay",
        "domain",
    ):
        op.drop_table(table)
    # PostgreSQL keeps an enum as a type of its own after its last table is gone.
    PROTOCOL.drop(op.get_bind(), checkfirst=True)
