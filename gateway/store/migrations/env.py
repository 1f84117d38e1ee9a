"""Alembic environment: runs migrations online against the URL set by `store.migrate`."""

from alembic import context
from sqlmodel import SQLModel

import gateway.store.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from gateway.store.db import Database

target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "store.migrate sets sqlalchemy.url"
    database = Database(url)
    engine = database.engine.execution_options(tgw_write=True)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=target_metadata,
                              render_as_batch=database.is_sqlite, compare_type=True)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
    finally:
        database.dispose()


run_migrations_online()
