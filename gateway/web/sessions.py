"""Portal sessions and CSRF tokens.

In: the cookie values of a request and the database. Out: the logged-in `PortalUser` (or
none) and the CSRF token every form must send back.

Guarantees:
- A session id is 256 bits from `secrets`; the database keeps only its SHA-256. A new id is
  issued at every login (the old one is deleted: no session fixation).
- A session ends after `session_idle_minutes` without use, `session_max_hours` after login,
  at logout, when the user is deactivated, and when the password changes (every session of
  the user is deleted then, and one older than `password_changed` is refused anyway).
- Cookies are HttpOnly, SameSite=Lax, and Secure when the base URL is https.
- CSRF: the token is an HMAC (secret key) of the session id, or, before login, of a random
  per-browser cookie; compared in constant time. A POST without the right token is refused
  (403) before anything else happens.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlmodel import Session

from gateway.store.models import CustomerUser, Organisation, WebSession, table_of, utcnow

SESSION_COOKIE = "tgw_session"
BROWSER_COOKIE = "tgw_browser"
TOUCH_EVERY = timedelta(minutes=1)   # last_seen is written at most this often

_session = table_of(WebSession)
_customer = table_of(CustomerUser)
_organisation = table_of(Organisation)


@dataclass(frozen=True)
class PortalUser:
    id: int
    username: str
    email: str
    name: str
    language: str
    organisation_id: int | None
    organisation: str            # its key, "" if none
    must_change_password: bool

    def display_name(self) -> str:
        return self.name or self.username


@dataclass(frozen=True)
class SessionPolicy:
    idle: timedelta
    maximum: timedelta


def hash_id(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()


def csrf_token(secret: bytes, anchor: str) -> str:
    return hmac.new(secret, f"csrf:{anchor}".encode("utf-8", "replace"),
                    hashlib.sha256).hexdigest()


def csrf_valid(secret: bytes, anchor: str, sent: str | None) -> bool:
    return bool(anchor and sent) and hmac.compare_digest(csrf_token(secret, anchor), sent or "")


def _user_columns() -> tuple[object, ...]:
    return (_customer.c.id, _customer.c.username, _customer.c.email, _customer.c.name,
            _customer.c.language, _customer.c.organisation_id,
            _organisation.c.key.label("organisation"), _customer.c.must_change_password)


def _to_user(row: object) -> PortalUser:
    r = row  # a Row with the columns of _user_columns
    return PortalUser(r.id, r.username, r.email, r.name, r.language,  # type: ignore[attr-defined]
                      r.organisation_id, r.organisation or "",  # type: ignore[attr-defined]
                      bool(r.must_change_password))  # type: ignore[attr-defined]


def load_user(session: Session, user_id: int) -> PortalUser | None:
    row = session.execute(
        select(*_user_columns())  # type: ignore[call-overload]
        .select_from(_customer.outerjoin(_organisation,
                                         _organisation.c.id == _customer.c.organisation_id))
        .where(_customer.c.id == user_id, _customer.c.active.is_(True))).one_or_none()
    return _to_user(row) if row else None


def start_session(session: Session, user_id: int, *, replaces: str | None = None,
                  now: datetime | None = None) -> str:
    """A new session for the user; the cookie value (only its hash is stored)."""
    now = now or utcnow()
    if replaces:
        session.execute(delete(_session).where(_session.c.id_hash == hash_id(replaces)))
    value = secrets.token_urlsafe(32)
    session.execute(insert(_session).values(id_hash=hash_id(value), customer_user_id=user_id,
                                            created=now, last_seen=now))
    return value


def resume_session(session: Session, value: str, policy: SessionPolicy, *,
                   now: datetime | None = None) -> PortalUser | None:
    """The user of a live session, touching it; None (and the row deleted) when it ended."""
    now = now or utcnow()
    row = session.execute(
        select(_session.c.created, _session.c.last_seen, _session.c.customer_user_id,
               _customer.c.password_changed, _customer.c.active)
        .join(_customer, _customer.c.id == _session.c.customer_user_id)
        .where(_session.c.id_hash == hash_id(value))).one_or_none()
    if row is None:
        return None
    ended = (now - row.last_seen > policy.idle or now - row.created > policy.maximum
             or not row.active
             or (row.password_changed is not None and row.password_changed > row.created))
    if ended:
        session.execute(delete(_session).where(_session.c.id_hash == hash_id(value)))
        return None
    if now - row.last_seen > TOUCH_EVERY:
        session.execute(update(_session).where(_session.c.id_hash == hash_id(value))
                        .values(last_seen=now))
    return load_user(session, row.customer_user_id)


def end_session(session: Session, value: str) -> None:
    session.execute(delete(_session).where(_session.c.id_hash == hash_id(value)))


def end_all_sessions(session: Session, user_id: int) -> None:
    session.execute(delete(_session).where(_session.c.customer_user_id == user_id))


def sweep_sessions(session: Session, policy: SessionPolicy, *,
                   now: datetime | None = None) -> int:
    """Delete sessions past either timeout; how many."""
    now = now or utcnow()
    result = session.execute(delete(_session).where(
        (_session.c.last_seen < now - policy.idle) | (_session.c.created < now - policy.maximum)))
    return int(result.rowcount)  # type: ignore[attr-defined]
