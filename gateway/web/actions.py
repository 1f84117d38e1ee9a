"""What the portal's forms change: a ticket from a template, a reply to a ticket.

In: the caller's session, an `answers.Answering` (settings and renderer), the ticket
numbering, the logged-in `PortalUser`, the form's values and the attachments (already stored
as blobs, see `uploads`). Out: the ticket changes and their mails, in the caller's
transaction.

Guarantees (issue #5): a ticket made here is the ticket the same mail to the template's
address would make — same queue, priority, guide answers, a first article whose body has
the guide's `Label: answer` lines then the free text, a reply address — and
`answers.ticket_created` sends the same acknowledgment and staff notification. A reply is
what a mail reply gives: an article from the customer, the staff notified
(`answers.customer_replied`), the ticket reopened if closed (with its status mail), or
refused when `[tickets] reopen_on_reply` is off (a mail would open a new ticket then; the
portal asks for one). Articles carry channel "web" and a Message-ID of ours, so staff mail
threads with them like with any other.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from gateway.config.settings import TemplateSettings
from gateway.errors import InvalidInput
from gateway.mail.message import MailAddress, ParsedMessage
from gateway.outbound import answers, bouncing
from gateway.outbound.answers import Answering
from gateway.outbound.headers import MailIdentity, new_message_id
from gateway.store.models import Queue, Template, table_of, utcnow
from gateway.tickets.actions import change_state, end_customer_wait
from gateway.tickets.numbers import Numbering
from gateway.tickets.service_levels import start_clock
from gateway.tickets.ticket import (
    NewArticle,
    NewAttachment,
    NewTicket,
    State,
    TicketRef,
    add_article,
    create_ticket,
)
from gateway.web.sessions import PortalUser

_queue = table_of(Queue)
_template = table_of(Template)


class ReplyRefused(Exception):
    """The ticket is closed and replies do not reopen tickets."""


@dataclass(frozen=True)
class TemplateForm:
    subject: str
    text: str
    priority: int
    answers: tuple[tuple[str, str], ...]     # (guide key, answer), in guide order


def available(template: TemplateSettings, user: PortalUser) -> bool:
    """The template's availability: every customer, or the listed organisations."""
    return not template.organisations or user.organisation in template.organisations


def localised(labels: Mapping[Any, str], language: str, default: str = "") -> str:
    """The text in `language`, else any (a template may name itself in one language)."""
    return labels.get(language) or next(iter(labels.values()), default)


def guide_labels(template: TemplateSettings, language: str) -> dict[str, str]:
    return {q.key: localised(q.label, language, q.key) for q in template.guide}


def body_of(template: TemplateSettings, form: TemplateForm, language: str) -> str:
    """The first article's text as a mail would carry it: `Label: answer` lines, the text."""
    labels = guide_labels(template, language)
    lines = [f"{labels.get(key, key)}: {value}" for key, value in form.answers]
    return "\n".join(lines) + ("\n\n" if lines and form.text else "") + form.text


def _message(answering: Answering, user: PortalUser, subject: str, body: str) -> ParsedMessage:
    """The form as the mail it stands for (what `answers` reads: Message-ID, text)."""
    domain = MailIdentity.parse(answering.settings.outbound.from_).address.rpartition("@")[2]
    now = utcnow()
    sender = MailAddress(user.name, user.email)
    return ParsedMessage(
        message_id=new_message_id(domain or "localhost"), message_id_generated=True,
        subject=subject, from_=sender, sender=None, reply_to=(), to=(), cc=(), date=now,
        date_from_header=False, in_reply_to=(), references=(), headers={}, body_text=body,
        body_html=None, quote_start=None, attachments=(), content_type="text/plain")


def _article(user: PortalUser, message: ParsedMessage,
             attachments: Sequence[NewAttachment]) -> NewArticle:
    return NewArticle(direction="in", channel="web", sender="customer", internal=False,
                      from_address=MailAddress(user.name, user.email).formatted(),
                      subject=message.subject, body=message.body_text,
                      message_id=message.message_id, attachments=tuple(attachments))


def create_from_template(session: Session, answering: Answering, numbering: Numbering,
                         user: PortalUser,
                         template: TemplateSettings, form: TemplateForm,
                         attachments: Sequence[NewAttachment]) -> tuple[TicketRef, bool]:
    """The new ticket, and whether an acknowledgment is on its way to the customer: not
    when none was queued (the hourly limit of automatic mails) or their address is dead
    (the outbox holds the mail back, `outbound/bouncing.py`)."""
    if not available(template, user):
        raise InvalidInput(f"template {template.id} is not available to this user")
    subject = " ".join(form.subject.split())
    message = _message(answering, user, subject, body_of(template, form, user.language))
    queue_id = session.execute(select(_queue.c.id).where(_queue.c.key == template.queue)
                               ).scalar_one()
    template_id = session.execute(select(_template.c.id).where(_template.c.key == template.id)
                                  ).scalar_one()
    answered = {key for key, _ in form.answers}
    missing = tuple(q.key for q in template.guide if q.required and q.key not in answered)
    ref = create_ticket(session, NewTicket(
        title=subject, queue_id=queue_id, priority=form.priority, template_id=template_id,
        customer_user_id=user.id, contact_email=user.email,
        reply_token=secrets.token_urlsafe(18), guide_answers=form.answers,
        first_article=_article(user, message, attachments)),
        numbering=numbering, actor=f"web:{user.username}")
    start_clock(session, answering.settings, ref.id)
    acknowledged = answers.ticket_created(session, answering, ref.id, message, automatic=False,
                                          answers=form.answers, missing=missing)
    return ref, acknowledged and bouncing.dead_address(session, user.email) is None


def reply(session: Session, answering: Answering, user: PortalUser, ticket_id: int, number: str,
          title: str, state: str, text: str, attachments: Sequence[NewAttachment]) -> None:
    if state == State.CLOSED.value and not answering.settings.tickets.reopen_on_reply:
        raise ReplyRefused(number)
    message = _message(answering, user, f"Re: {title}", text)
    add_article(session, ticket_id, _article(user, message, attachments))
    if state == State.CLOSED.value:
        change_state(session, answering, ticket_id, State.OPEN, actor=f"web:{user.username}")
    else:
        end_customer_wait(session, answering, ticket_id, actor=f"web:{user.username}")
    answers.customer_replied(session, answering, ticket_id, message, automatic=False)
