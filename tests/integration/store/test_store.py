"""The store on both databases: migrations, refusal of old schemas, claims, blobs."""

from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, insert, select, text

from gateway.app import App
from gateway.errors import DatabaseNotReady, TemporaryFailure
from gateway.store import db as db_module
from gateway.store.blob_files import FileBlobStore
from gateway.store.blobs import record_blob
from gateway.store.claims import claim_due
from gateway.store.db import Database
from gateway.store.migrate import head_revision, upgrade
from gateway.store.models import Blob, ReceivedMail, table_of, utcnow
from gateway.store.schema import include_name, metadata
from tests.conftest import drop_connections

_received = table_of(ReceivedMail)


def test_migrations_create_exactly_the_models(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_name": include_name})
        diff = compare_metadata(context, metadata)
    engine.dispose()
    assert diff == []


def test_upgrade_is_repeatable(database_url: str) -> None:
    upgrade(database_url)
    database = Database(database_url)
    assert database.schema_revision() == head_revision()
    database.dispose()


@pytest.mark.backends("sqlite")
def test_sqlite_runs_in_wal_with_full_sync(database_url: str) -> None:
    database = Database(database_url)
    with database.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2   # FULL
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    database.dispose()


def _sync_setting(database: Database, session: object) -> str:
    connection = session.connection()  # type: ignore[attr-defined]
    if database.is_sqlite:
        return {1: "NORMAL", 2: "FULL"}.get(
            connection.exec_driver_sql("PRAGMA synchronous").scalar(), "other")
    return str(connection.exec_driver_sql("SHOW synchronous_commit").scalar())


def test_only_bookkeeping_writes_skip_the_sync_and_it_does_not_stick(app: App) -> None:
    """`write(durable=False)` commits without waiting for the disk; the next ordinary
    write on the same pooled connection is durable again, and both are committed."""
    database = app.db
    durable = "FULL" if database.is_sqlite else "on"
    lazy = "NORMAL" if database.is_sqlite else "off"
    with database.write() as session:
        assert _sync_setting(database, session) == durable
    with database.write(durable=False) as session:
        assert _sync_setting(database, session) == lazy
        mail_id = _add_received(session, b"Subject: lazy\r\n\r\nx\r\n")
    with database.write() as session:
        assert _sync_setting(database, session) == durable
    with database.read() as session:
        assert session.execute(select(_received.c.id).where(_received.c.id == mail_id)
                               ).scalar_one() == mail_id


def test_one_statement_bookkeeping_is_committed_by_itself(app: App) -> None:
    """`one_statement()`: on PostgreSQL in autocommit on the bookkeeping pool (no BEGIN and
    COMMIT round trips: visible to others at once), on SQLite an ordinary lazy write."""
    database = app.db
    with database.write() as session:
        mail_id = _add_received(session, b"Subject: x\r\n\r\nx\r\n")
    with database.one_statement() as connection:
        connection.execute(_received.update().where(_received.c.id == mail_id)
                           .values(attempts=7))
        if not database.is_sqlite:
            assert connection.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
            with database.read() as other:        # already committed
                assert other.execute(select(_received.c.attempts).where(
                    _received.c.id == mail_id)).scalar_one() == 7
    with database.read() as session:
        assert session.execute(select(_received.c.attempts)
                               .where(_received.c.id == mail_id)).scalar_one() == 7


@pytest.mark.backends("postgresql")
def test_a_restarted_server_costs_at_most_one_transaction(
        app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pooled connections that the server dropped (a restart, an idle timeout): after an
    idle moment they are tested and replaced before use; right after use, one transaction
    may fail as a `TemporaryFailure` (451 for SMTP), and the next one works."""
    def one_write() -> None:
        with app.db.write() as session:
            _add_received(session, b"Subject: x\r\n\r\nx\r\n")

    one_write()
    drop_connections(app.db.url)
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_S", 0.0)   # "it sat idle": pinged
    one_write()
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_S", 3600.0)  # "just used": not pinged
    drop_connections(app.db.url)
    with pytest.raises(TemporaryFailure):
        one_write()                           # the one transaction that fails
    one_write()                               # the pool was refreshed
    with app.db.read() as session:
        assert len(session.execute(select(_received.c.id)).all()) >= 3


def test_an_empty_database_is_refused_with_what_to_run(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path}/empty.db")
    with pytest.raises(DatabaseNotReady, match=r"is empty \(no tables\).*ticketgw db upgrade"):
        database.require_current_schema()
    database.dispose()


def test_an_older_schema_is_refused(database_url: str) -> None:
    database = Database(database_url)
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    try:
        with pytest.raises(DatabaseNotReady, match=r"at revision 0000.*ticketgw db upgrade"):
            database.require_current_schema()
    finally:
        with database.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :v"),
                               {"v": head_revision()})
        database.dispose()


def test_unreachable_database_is_a_clear_temporary_failure() -> None:
    database = Database("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    expected = "cannot connect to the database postgresql+psycopg://postgres@127.0.0.1:1/nowhere"
    with pytest.raises(DatabaseNotReady, match=re.escape(expected)):
        database.ping()
    with pytest.raises(TemporaryFailure, match="database unavailable"), \
            database.write() as session:
        session.execute(text("SELECT 1"))


def test_a_failed_transaction_leaves_nothing(app: App) -> None:
    with pytest.raises(RuntimeError), app.db.write() as session:
        _add_received(session, b"x")
        raise RuntimeError("boom")
    with app.db.read() as session:
        assert session.execute(select(_received.c.id)).all() == []


def _add_received(session: object, raw: bytes) -> int:
    from sqlmodel import Session

    assert isinstance(session, Session)
    return int(session.execute(insert(_received).values(
        received=utcnow(), source="ingest", envelope_from="", envelope_to=[], raw=raw,
        raw_sha256=hashlib.sha256(raw).hexdigest(), size=len(raw), status="pending",
        attempts=0, next_attempt=utcnow()).returning(_received.c.id)).scalar_one())


def test_claims_take_due_rows_oldest_first(app: App) -> None:
    with app.db.write() as session:
        ids = [_add_received(session, f"m{i}".encode()) for i in range(3)]
    with app.db.write() as session:
        rows = claim_due(session, _received, status="pending", now=utcnow(), limit=2)
        assert [r.id for r in rows] == ids[:2]


@pytest.mark.backends("postgresql")
def test_two_instances_never_claim_the_same_row(app: App) -> None:
    """SKIP LOCKED: while one transaction holds its claims, another gets the other rows."""
    with app.db.write() as session:
        for i in range(6):
            _add_received(session, f"m{i}".encode())
    other = Database(app.db.url)      # a second instance: its own engine and connections
    first_claimed = threading.Event()
    release = threading.Event()
    claimed: dict[str, list[int]] = {}

    def instance_a() -> None:
        with app.db.write() as session:
            claimed["a"] = [r.id for r in claim_due(session, _received, status="pending",
                                                    now=utcnow(), limit=4)]
            first_claimed.set()
            release.wait(10)

    thread = threading.Thread(target=instance_a)
    thread.start()
    assert first_claimed.wait(10)
    with other.write() as session:
        claimed["b"] = [r.id for r in claim_due(session, _received, status="pending",
                                                now=utcnow(), limit=4)]
    release.set()
    thread.join()
    other.dispose()
    assert len(claimed["a"]) == 4 and len(claimed["b"]) == 2
    assert set(claimed["a"]).isdisjoint(claimed["b"])


def test_blobs_are_stored_once_by_content(app: App, tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "attachments")
    first = store.put(b"same bytes")
    second = store.put([b"same ", b"bytes"])
    assert first == second
    assert first.sha256 == hashlib.sha256(b"same bytes").hexdigest()
    files = [p for p in (tmp_path / "attachments").rglob("*") if p.is_file()]
    assert files == [store.path_for(first.sha256)]      # no leftover temporary file
    with store.open(first.sha256) as handle:
        assert handle.read() == b"same bytes"
    with app.db.write() as session:
        record_blob(session, first)
        record_blob(session, second)
    with app.db.read() as session:
        assert session.execute(select(table_of(Blob).c.size)).scalars().all() == [10]


def test_a_failed_blob_write_leaves_no_file(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "attachments")

    def chunks() -> object:
        yield b"partial"
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        store.put(chunks())  # type: ignore[arg-type]
    assert [p for p in (tmp_path / "attachments").rglob("*") if p.is_file()] == []


@pytest.mark.backends("postgresql")
def test_instances_upgrading_at_once_on_a_fresh_database(postgres_url: str) -> None:
    """Replicas that all run `ticketgw db upgrade` at start (separate processes): one
    migrates, the others wait for it and find the schema current."""
    import subprocess
    import sys

    from sqlalchemy.engine import make_url

    admin = create_engine(make_url(postgres_url).set(database="postgres"),
                          isolation_level="AUTOCOMMIT")
    name = f"{make_url(postgres_url).database}_fresh"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    try:
        env = {"PATH": "/usr/bin:/bin", "TICKETGW_DATABASE_URL": url}
        replicas = [subprocess.Popen([sys.executable, "-m", "gateway", "db", "upgrade"],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True) for _ in range(4)]
        outcomes = [(p.wait(timeout=120), p.communicate()[1]) for p in replicas]
        assert [code for code, _ in outcomes] == [0, 0, 0, 0], outcomes
        database = Database(url)
        assert database.schema_revision() == head_revision()
        database.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
