"""`INSERT … ON CONFLICT` for the dialect of a session (SQLite and PostgreSQL spell it alike)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session


def upsert_for(session: Session) -> Callable[..., Any]:
    """The dialect's `insert` construct, which has `on_conflict_do_update/nothing`."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert
    return sqlite.insert
