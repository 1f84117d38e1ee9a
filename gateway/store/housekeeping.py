"""Periodic clean-up of rows that have served their purpose."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_
from sqlmodel import Session

from gateway.store.models import Token, table_of

_token = table_of(Token)


def purge_expired_tokens(session: Session, now: datetime,
                         keep: timedelta = timedelta(days=1)) -> int:
    """Delete tokens that expired (or were used) more than `keep` ago; returns how many.
    A token is refused as soon as it expires or is used; keeping it a while longer only
    lets a refusal say "expired" rather than "unknown"."""
    cutoff = now - keep
    result = session.execute(delete(_token).where(
        or_(_token.c.expires < cutoff, _token.c.used < cutoff)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
