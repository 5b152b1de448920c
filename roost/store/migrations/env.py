"""Alembic environment for Roost: migrate the connection that ``Store`` hands over.

There is no ``alembic.ini``: ``roost.store.db.alembic_config`` builds the configuration in
code and passes an open connection (already inside the transaction Store manages), so the
same code path runs from a source checkout and from an installed package.
"""

from __future__ import annotations

from alembic import context

from roost.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "Roost's migrations run through roost.store.db (Store.upgrade, or alembic_config "
        "with a connection); offline --sql mode is not supported"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)

with context.begin_transaction():
    context.run_migrations()
