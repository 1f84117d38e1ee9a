"""The database handle: engines, transactions, schema checks.

In: a SQLAlchemy URL (SQLite or PostgreSQL). Out: a `Database` whose `write()` and `read()`
context managers give a `Session` inside one transaction.

Guarantees:
- `write()` commits when the block ends and rolls back on any exception. On SQLite it starts
  with `BEGIN IMMEDIATE`, so two writers queue on the busy timeout instead of failing with
  "database is locked" when a reader tries to become a writer (SQLite's deferred default).
- SQLite runs in WAL mode with `synchronous=FULL`: a commit is on disk when it returns,
  which is what lets us answer `250` after it. Foreign keys are enforced.
- `write(durable=False)` is for bookkeeping whose loss can only cause a repetition, never a
  loss (leases, attempt counters, the outbox's "sent" records): its commit survives a crash
  of any process but not a power failure or an OS crash, which may forget the last such
  commits (about a second's worth). SQLite commits it with `synchronous=NORMAL` (WAL: no
  fsync; the next durable commit syncs it too), PostgreSQL with `synchronous_commit=off`.
  Received mail, tickets and queued answers are always written durably.
- `on_mail_queued`, when set, is called after a write transaction that queued outgoing
  mail (`note_mail_queued`) has committed, never before and never after a rollback; it
  must not block (a doorbell ring). `serve` uses it to wake the outbox at once instead of
  at its next poll.
- PostgreSQL: a pooled connection that sat idle is tested before use (`_ping_when_idle`).
- Operational errors (server down, locked past the timeout) surface as `TemporaryFailure`
  from `write()`/`read()`, so callers answer 4xx / exit 75 without knowing the driver.
- `require_current_schema()` refuses an unmigrated database with a message naming
  `ticketgw db upgrade`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlmodel import Session

from gateway.errors import DatabaseNotReady, TemporaryFailure
from gateway.store.priority import WriteTurns

SQLITE_BUSY_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_S = 10      # an unreachable host fails in time for a 4xx, never hangs
PING_AFTER_IDLE_S = 2.0     # PostgreSQL: a pooled connection idle longer is tested first
_MAIL_QUEUED = "ticketgw.mail_queued"     # Session.info: this transaction queued outgoing mail


def note_mail_queued(session: Session) -> None:
    """Mark the session's transaction as one that queued outgoing mail: once it commits,
    the database's `on_mail_queued` is called."""
    session.info[_MAIL_QUEUED] = True


def display_url(url: str) -> str:
    """The URL without its password, safe for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


class Database:
    """One engine per process; sessions are short and never shared between threads."""

    def __init__(self, url: str, *, echo: bool = False,
                 busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self._lazy_engine: Engine | None = None
        if self.is_sqlite:
            self.engine = self._sqlite_engine(url, echo, busy_timeout_ms)
            lazy = self.engine          # synchronous is switched per transaction (below)
        else:
            self.engine = self._postgres_engine(url, echo, pool_size=5)
            # a pool of its own whose sessions commit without waiting for the WAL flush:
            # a per-transaction SET LOCAL would cost a round trip each time
            self._lazy_engine = lazy = self._postgres_engine(
                url, echo, pool_size=2, options="-c synchronous_commit=off")
        # the same pool, but transactions that will write take the SQLite write lock at BEGIN
        self._write_engine = self.engine.execution_options(tgw_write=True)
        self._lazy_write_engine = lazy.execution_options(tgw_write=True, tgw_lazy=True)
        # SQLite: every writer of the file takes turns, received mail first (priority.py)
        self.turns: WriteTurns | None = None
        self.on_mail_queued: Callable[[], None] | None = None
        database = parsed.database
        if self.is_sqlite and database and database != ":memory:":
            self.turns = WriteTurns(Path(database))

    @staticmethod
    def _postgres_engine(url: str, echo: bool, *, pool_size: int, options: str = "") -> Engine:
        connect_args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S}
        if options:
            connect_args["options"] = options
        engine = create_engine(url, echo=echo, pool_size=pool_size, max_overflow=pool_size,
                               connect_args=connect_args)
        _ping_when_idle(engine)
        return engine

    @staticmethod
    def _sqlite_engine(url: str, echo: bool, busy_timeout_ms: int) -> Engine:
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo,
                               connect_args={"timeout": busy_timeout_ms / 1000,
                                             "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _configure(dbapi_connection: Any, record: Any) -> None:
            # let us emit BEGIN ourselves (pysqlite's implicit BEGIN is always DEFERRED)
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            record.info["tgw_synchronous"] = "FULL"
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            options = connection.get_execution_options()
            if not options.get("tgw_write", False):
                connection.exec_driver_sql("BEGIN")
                return
            # synchronous is per connection and may change between transactions; WAL keeps
            # a NORMAL commit across crashes of any process, only not across power loss
            wanted = "NORMAL" if options.get("tgw_lazy", False) else "FULL"
            info = connection.connection.info
            if info.get("tgw_synchronous") != wanted:
                connection.exec_driver_sql(f"PRAGMA synchronous={wanted}")
                info["tgw_synchronous"] = wanted
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    @contextmanager
    def write(self, *, urgent: bool = False, durable: bool = True,
              patient: bool = False) -> Iterator[Session]:
        """One read-write transaction: committed at the end, rolled back on error. On SQLite
        writers take turns, `urgent` ones (received mail: a client waits for the answer)
        go first, `patient` ones (bookkeeping nobody waits for) try less often (see
        `store/priority.py`). `durable=False`: see the module's docstring; only for writes
        whose loss in a power failure repeats work."""
        engine = self._write_engine if durable else self._lazy_write_engine
        turn: AbstractContextManager[None] = (
            nullcontext() if self.turns is None
            else self.turns.turn(urgent=urgent, patient=patient))
        with turn, self._session(engine) as session:
            yield session
        # reached only after the commit (an exception in the block skips it)
        if self.on_mail_queued is not None and session.info.get(_MAIL_QUEUED):
            self.on_mail_queued()

    @contextmanager
    def one_statement(self) -> Iterator[Connection]:
        """For bookkeeping (as `write(durable=False, patient=True)`) that is one statement,
        atomic by itself, e.g. a guarded UPDATE. PostgreSQL runs it in autocommit, without
        the BEGIN and COMMIT round trips; SQLite in an ordinary `write(durable=False,
        patient=True)`."""
        if self._lazy_engine is None:
            with self.write(durable=False, patient=True) as session:
                yield session.connection()
            return
        with _as_temporary_failures(), self._lazy_engine.connect() as connection:
            yield connection.execution_options(isolation_level="AUTOCOMMIT")

    @contextmanager
    def read(self) -> Iterator[Session]:
        """One read-only transaction (never takes SQLite's write lock)."""
        with self._session(self.engine) as session:
            yield session

    @contextmanager
    def _session(self, engine: Engine) -> Iterator[Session]:
        with _as_temporary_failures(), Session(engine, expire_on_commit=False) as session, \
                session.begin():
            yield session

    def ping(self) -> None:
        """Raise `DatabaseNotReady` when the database cannot be reached."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except OperationalError as exc:
            raise DatabaseNotReady(
                f"cannot connect to the database {display_url(self.url)}: {_short(exc)}"
            ) from exc

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at, or None for an empty database."""
        self.ping()
        with self.engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()

    def require_current_schema(self) -> None:
        """Refuse to work on a database that is not at the schema this code expects."""
        from gateway.store.migrate import head_revision

        current, head = self.schema_revision(), head_revision()
        if current != head:
            state = "empty (no tables)" if current is None else f"at revision {current}"
            raise DatabaseNotReady(
                f"the database {display_url(self.url)} is {state}, this version needs {head}: "
                "run `ticketgw db upgrade` first"
            )

    def dispose(self) -> None:
        self.engine.dispose()
        if self._lazy_engine is not None:
            self._lazy_engine.dispose()


@contextmanager
def _as_temporary_failures() -> Iterator[None]:
    """A server that is down, a lock held past the timeout or a lost connection becomes
    `TemporaryFailure`; other errors pass unchanged."""
    try:
        yield
    except OperationalError as exc:
        raise TemporaryFailure(f"database unavailable: {_short(exc)}") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise TemporaryFailure(f"database connection lost: {_short(exc)}") from exc
        raise


def _ping_when_idle(engine: Engine) -> None:
    """Test a pooled connection before use when it sat unused for `PING_AFTER_IDLE_S`: a
    server restart or an idle timeout in between is then noticed before any statement, and
    a fresh connection is used. A connection used just before is not pinged (SQLAlchemy's
    `pool_pre_ping` costs a round trip per transaction, several per mail); if the server
    went away in that moment, that one transaction fails (`TemporaryFailure`: 451, retried)
    and the pool is refreshed."""
    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _used(_dbapi_connection: Any, record: Any) -> None:
        record.info["tgw_used"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("tgw_used", 0.0) < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:   # the pool retries with a new connection
            raise DisconnectionError(f"stale pooled connection: {_short(exc)}") from exc


def _short(exc: BaseException) -> str:
    """The driver's first line, without the SQL statement SQLAlchemy appends."""
    original = getattr(exc, "orig", None) or exc
    return str(original).strip().splitlines()[0] if str(original).strip() else type(exc).__name__
