"""Alembic environment: runs migrations online against the URL set by `store.migrate`."""

from alembic import context
from sqlalchemy import text

from gateway.store.db import Database
from gateway.store.schema import include_name, metadata

target_metadata = metadata
MIGRATION_LOCK_ID = 0x7467_0002


def run_migrations_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "store.migrate sets sqlalchemy.url"
    database = Database(url)
    engine = database.engine.execution_options(tgw_write=True)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=target_metadata,
                              render_as_batch=database.is_sqlite, compare_type=True,
                              include_name=include_name)
            with context.begin_transaction():
                if not database.is_sqlite:
                    # instances upgrading at once take turns; the later ones then find the
                    # schema current (PostgreSQL DDL is transactional)
                    connection.execute(text("SELECT pg_advisory_xact_lock(:id)"),
                                       {"id": MIGRATION_LOCK_ID})
                context.run_migrations()
            connection.commit()
    finally:
        database.dispose()


run_migrations_online()
