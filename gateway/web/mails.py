"""The portal's own mails: the password-lost token link and the new password.

In: the caller's session, an `answers.Answering` (settings and renderer), the customer user.
Out: a queued mail (outbox row) in the caller's transaction, so the token or password change
and its mail commit together.

Both go to the address stored for the user, never to an address typed into a form, from the
gateway's default identity, in the user's language; an address we cannot write is logged
and skipped (as in `answers`).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlmodel import Session

from gateway.outbound.answers import Answering
from gateway.outbound.headers import HeaderError, MailIdentity
from gateway.outbound.outbox import enqueue
from gateway.web.sessions import PortalUser

log = logging.getLogger(__name__)


def _send(session: Session, answering: Answering, event: str, user: PortalUser,
          context: dict[str, object]) -> bool:
    try:
        mail = answering.renderer.compose(
            event, user.language, {"customer_name": user.name, "username": user.username,
                                   **context},
            sender=MailIdentity.parse(answering.settings.outbound.from_),
            to=[(user.name, user.email)])
    except HeaderError as exc:
        log.warning("%s mail for %s not written: %s", event, user.username, exc)
        return False
    enqueue(session, mail,
            deadline=timedelta(hours=answering.settings.outbound.delivery_deadline_hours))
    return True


def send_password_token(session: Session, answering: Answering, user: PortalUser, token: str,
                        expires: datetime) -> bool:
    """The link's text says what confirming it does: `[web] password_mode`."""
    return _send(session, answering, "password-token", user, {
        "token": token, "expires": expires,
        "password_mode": answering.settings.web.password_mode})


def send_new_password(session: Session, answering: Answering, user: PortalUser,
                      password: str) -> bool:
    return _send(session, answering, "new-password", user, {"password": password})
