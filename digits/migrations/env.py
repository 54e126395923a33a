"""Alembic's environment: the engine comes from digits.db (the app's, or `flask db upgrade`'s)."""

from __future__ import annotations

from alembic import context

from digits import db

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=db.metadata,
        render_as_batch=db.is_sqlite(engine),  # SQLite alters a table by copying it
    )
    with context.begin_transaction():
        context.run_migrations()
