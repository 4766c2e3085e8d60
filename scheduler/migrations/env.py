"""Alembic environment: duban passes an open connection in `config.attributes`."""

from alembic import context

from scheduler.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - `alembic` CLI use: build an engine from the settings
    from scheduler.db import make_engine
    from scheduler.settings import load_settings

    connection = make_engine(load_settings().database_url).connect()

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
