"""Rate limits of the portal's login and password-lost forms, per username and per address.

In: the kind of attempt and its keys ("user:NAME", "addr:IP"). Out: whether another attempt
is allowed now. Attempts are rows in `web_attempt` (shared by every instance); a key's rows
older than the window are deleted when it is recorded again.

Guarantees: the same answer for known and unknown usernames (the username is counted as
typed, whether it exists or not); counting and recording happen in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select
from sqlmodel import Session

from gateway.store.models import WebAttempt, table_of, utcnow

_attempt = table_of(WebAttempt)


@dataclass(frozen=True)
class Limit:
    window: timedelta
    per_user: int
    per_address: int


def attempt_keys(username: str, address: str) -> list[str]:
    return [f"user:{username[:200]}", f"addr:{address}"]


def allowed(session: Session, kind: str, keys: Sequence[str], limit: Limit, *,
            now: datetime | None = None) -> bool:
    now = now or utcnow()
    for key in keys:
        most = limit.per_user if key.startswith("user:") else limit.per_address
        count = session.execute(select(func.count()).select_from(_attempt).where(
            _attempt.c.kind == kind, _attempt.c.key == key,
            _attempt.c.at > now - limit.window)).scalar_one()
        if int(count) >= most:
            return False
    return True


def record(session: Session, kind: str, keys: Sequence[str], limit: Limit, *,
           now: datetime | None = None) -> None:
    now = now or utcnow()
    for key in keys:
        session.execute(delete(_attempt).where(_attempt.c.kind == kind, _attempt.c.key == key,
                                               _attempt.c.at <= now - limit.window))
        session.execute(insert(_attempt).values(kind=kind, key=key, at=now))


def forget(session: Session, kind: str, key: str) -> None:
    """Clear a key's attempts (a successful login clears its username's failures)."""
    session.execute(delete(_attempt).where(_attempt.c.kind == kind, _attempt.c.key == key))
