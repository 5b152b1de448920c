"""Two-factor login: a user's TOTP state and a domain's requirement (Roost's own columns).

Revision ID: 0002
Revises: 0001
Created: 2025-01-02

Every existing user starts without two-factor login and every domain without the
requirement; the boolean columns get a server default so rows written by a Mailu tool
that does not know them still read as off. Written out in full, not imported from
``models`` (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("domain") as batch:
        batch.add_column(
            sa.Column("totp_required", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("user") as batch:
        batch.add_column(
            sa.Column("totp_enabled", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("totp_secret", sa.String(255), nullable=True))
        batch.add_column(sa.Column("totp_last_step", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("totp_recovery_codes", sa.String(4096), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("user") as batch:
        for column in ("totp_recovery_codes", "totp_last_step", "totp_secret", "totp_enabled"):
            batch.drop_column(column)
    with op.batch_alter_table("domain") as batch:
        batch.drop_column("totp_required")
