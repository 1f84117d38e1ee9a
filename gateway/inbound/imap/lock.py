"""One poller per mailbox across instances: a PostgreSQL session advisory lock.

In: the database (its URL) and a mailbox name. Out: `acquire()` True while this
instance holds the mailbox's lock. The lock is `pg_try_advisory_lock(key)` (key: 64 bits of
SHA-256 of the name) on a connection of its own, outside the pool, held as long as the
instance polls; PostgreSQL releases it when that connection ends, also when the process
dies or the network to it breaks, so a standing-by instance takes over at its next try.
`alive()` checks the connection before each check; a lost lock ends the polling session.
On SQLite (one instance by nature) the lock is always held.

Correctness never rests on this lock: the import records' unique key keeps a mail single
even if two instances poll at once. The lock keeps them from doing the work twice.
"""

from __future__ import annotations

import logging

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from gateway.store.claims import advisory_key
from gateway.store.db import Database

log = logging.getLogger(__name__)


class MailboxLock:
    """PostgreSQL: `pg_try_advisory_lock` on a connection of its own (not from the pool:
    it is held for as long as this instance polls). Released when the connection ends,
    also when the process dies. SQLite: always held."""

    def __init__(self, db: Database, name: str) -> None:
        self.name = name
        self.url = None if db.is_sqlite else db.url
        self._failing = False
        self.key = advisory_key(f"ticketgw:imap:{name}")
        self._engine: Engine | None = None
        self._connection: Connection | None = None

    def acquire(self) -> bool:
        if self.url is None:
            return True
        if self._connection is not None:
            return self.alive()
        try:
            if self._engine is None:
                self._engine = create_engine(self.url, poolclass=NullPool,
                                             connect_args={"connect_timeout": 10})
            connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                  {"key": self.key}).scalar():
                self._connection = connection
                self._failing = False
                return True
            connection.close()
        except Exception as exc:   # the database is down: no lock, try again later
            log.log(logging.DEBUG if self._failing else logging.WARNING,
                    "mailbox %s: cannot take its lock: %s", self.name,
                    str(exc).splitlines()[0])
            self._failing = True
            return False
        self._failing = False
        return False

    def alive(self) -> bool:
        if self.url is None:
            return True
        try:
            assert self._connection is not None
            self._connection.execute(text("SELECT 1"))
            return True
        except Exception:
            self.release()
            return False

    def release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()   # ends the session, and the lock with it
            except Exception:
                log.debug("closing the lock connection failed", exc_info=True)
            self._connection = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
