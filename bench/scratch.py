"""Scratch databases for the benchmarks: a fresh one per run, removed afterwards."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text


@contextmanager
def scratch_database(backend: str, tmp: Path, admin_url: str,
                     sqlite_name: str = "bench.db") -> Iterator[str]:
    """A fresh, empty database for one run (a file in `tmp`, or `tgw_bench_<random>` on the
    PostgreSQL server of `admin_url`), dropped afterwards; yields its URL."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp / sqlite_name}"
        return
    name = f"tgw_bench_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
