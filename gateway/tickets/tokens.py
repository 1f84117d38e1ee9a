"""One-time tokens of customer users (password lost): issued, checked, consumed, revoked;
`hash_token` is also how the file exchange stores its link tokens.

In: a session inside the caller's transaction, a customer user id, a purpose. Out: the token
text, which is mailed and never stored; the table keeps its SHA-256 only.

Guarantees:
- 256 bits from `secrets` (`token_urlsafe(32)`); bound to one user and one purpose; expires.
- `consume` is one conditional UPDATE (`used IS NULL AND expires > now`): of two parallel
  confirmations exactly one changes the row and succeeds, on SQLite and PostgreSQL alike.
- `issue` ends every open token of the same user and purpose before it adds the new one,
  with the user's row locked: a mailbox that leaked an older link (a forwarded mail, a
  shared inbox) cannot use it once a new one was asked for, and of two parallel requests
  only the later one's link stays valid.
- `revoke_all` ends every open token of a user (called when the password changes).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlmodel import Session

from gateway.store.models import CustomerUser, Token, table_of, utcnow

_token = table_of(Token)
_customer = table_of(CustomerUser)
PASSWORD_LOST = "password-lost"   # noqa: S105 (a purpose, not a password)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires: datetime


def issue(session: Session, customer_user_id: int, purpose: str, *, minutes: int,
          now: datetime | None = None) -> IssuedToken:
    """A new token; every older open token of this user and purpose ends (`used` is set)."""
    now = now or utcnow()
    # The lock orders parallel requests of one user (PostgreSQL; SQLite writers take turns
    # anyway): the second waits, then its UPDATE sees the first's token and ends it too.
    session.execute(select(_customer.c.id).where(_customer.c.id == customer_user_id)
                    .with_for_update())
    session.execute(update(_token).where(_token.c.customer_user_id == customer_user_id,
                                         _token.c.purpose == purpose, _token.c.used.is_(None))
                    .values(used=now))
    token = secrets.token_urlsafe(32)
    expires = now + timedelta(minutes=minutes)
    session.execute(insert(_token).values(
        purpose=purpose, token_hash=hash_token(token), customer_user_id=customer_user_id,
        created=now, expires=expires, used=None))
    return IssuedToken(token, expires)


def peek(session: Session, token: str, purpose: str, *,
         now: datetime | None = None) -> int | None:
    """The user id of a valid (unused, unexpired) token, without using it."""
    now = now or utcnow()
    return session.execute(
        select(_token.c.customer_user_id).where(
            _token.c.token_hash == hash_token(token), _token.c.purpose == purpose,
            _token.c.used.is_(None), _token.c.expires > now)).scalar_one_or_none()


def consume(session: Session, token: str, purpose: str, *,
            now: datetime | None = None) -> int | None:
    """Use the token once: its user id, or None when unknown, used, expired or for another
    purpose."""
    now = now or utcnow()
    user_id = peek(session, token, purpose, now=now)
    if user_id is None:
        return None
    result = session.execute(
        update(_token).where(
            _token.c.token_hash == hash_token(token), _token.c.purpose == purpose,
            _token.c.used.is_(None), _token.c.expires > now).values(used=now))
    return user_id if result.rowcount == 1 else None   # type: ignore[attr-defined]


def revoke_all(session: Session, customer_user_id: int, *, now: datetime | None = None) -> None:
    session.execute(update(_token).where(_token.c.customer_user_id == customer_user_id,
                                         _token.c.used.is_(None))
                    .values(used=now or utcnow()))
