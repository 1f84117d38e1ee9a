"""Which mails a ticket event causes, composed and queued in the caller's transaction.

In: the session of the transaction that made the change, an `Answering` (the settings and the
renderer), and what happened (a ticket created from a mail, a customer reply, a rejection, a
state change, a staff answer).
Out: rows in the outbox (`outbound.outbox.enqueue`), nothing sent yet: the change and its
mails commit together or not at all.

Rules every answer follows:
- the customer's language decides, else the queue's;
- from the queue's identity; Reply-To is the ticket's own reply address when configured, so a
  reply threads even when a mail client drops In-Reply-To;
- every mail to staff about a ticket (notices, command-failed, kept-as-note, delivery-failed)
  has the ticket's staff reply address as Reply-To, a secret the customer never sees: only
  mail to it may act as staff (docs/admin.md 5.2);
- nothing automatic (acknowledgment, follow-up receipt, rejection, FAQ answer) goes to a
  sender that is itself automatic, and at most `max_auto_replies_per_hour` per address
  (RFC 3834 §2);
- an acknowledgment suggests up to `[faq] max_suggestions` FAQ articles that match the
  ticket well (one indexed query, see `faq/search.suggest`);
- an address we cannot write (e.g. a non-ASCII local part) is logged and skipped: a mail we
  cannot send must not undo the ticket change.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, Integer, String, bindparam, func, insert, select
from sqlmodel import Session

from gateway.config.settings import QueueSettings, Settings, TemplateSettings
from gateway.faq import search as faq_search
from gateway.mail.addresses import address_key
from gateway.mail.attachment_scan import ScannedFile
from gateway.mail.message import ParsedMessage
from gateway.outbound.headers import HeaderError, MailIdentity
from gateway.outbound.mail import OutgoingMail
from gateway.outbound.outbox import QueuedMail, enqueue_many
from gateway.outbound.render import FaqArticle, GuideAnswer, MailRenderer
from gateway.routing.addressbook import split_plus
from gateway.store.models import AutoAnswer, table_of, utcnow
from gateway.tickets.facts import TicketFacts, ticket_facts

log = logging.getLogger(__name__)

_auto = table_of(AutoAnswer)
# one statement checks the sender's limit and takes a slot: INSERT … SELECT … WHERE count < limit
_CLAIM_AUTO_ANSWER = insert(_auto).from_select(
    ["address_key", "event", "sent"],
    select(bindparam("key", type_=String), bindparam("event", type_=String),
           bindparam("now", type_=DateTime)).where(
        select(func.count()).select_from(_auto).where(
            _auto.c.address_key == bindparam("key", type_=String),
            _auto.c.sent > bindparam("since", type_=DateTime)).scalar_subquery()
        < bindparam("limit", type_=Integer))).returning(_auto.c.id)


@dataclass(frozen=True)
class Answering:
    """What composing an answer uses: the settings (identities, staff, queues, templates,
    limits) and the renderer (templates, base URL, DKIM). Built by the composition root."""

    settings: Settings
    renderer: MailRenderer


def _queue_identity(queue: QueueSettings) -> MailIdentity:
    return _identity(queue.from_, queue.name or queue.id)


@functools.lru_cache(maxsize=256)
def _identity(mailbox: str, fallback_name: str) -> MailIdentity:
    """A queue's From identity, parsed once (every answer of the queue needs it)."""
    identity = MailIdentity.parse(mailbox)
    return MailIdentity(identity.name or fallback_name, identity.address)


def reply_address(answering: Answering, facts: TicketFacts) -> str | None:
    """`support+r-TOKEN@domain`: the ticket's own address (routing's `reply-token` rule)."""
    if not answering.settings.outbound.reply_addresses or not facts.reply_token:
        return None
    return _plus_address(facts.queue, f"r-{facts.reply_token}")


def staff_reply_address(facts: TicketFacts) -> str:
    """`support+s-TOKEN@domain`: the ticket's staff reply address (routing's `staff-token`
    rule), whatever `reply_addresses` says: without it staff could not act by mail. The
    queue's address for a ticket without a token (then staff mail is kept as a note)."""
    if not facts.staff_token:
        return _queue_identity(facts.queue).address
    return _plus_address(facts.queue, f"s-{facts.staff_token}")


def _plus_address(queue: QueueSettings, tag: str) -> str:
    local, _, domain = split_plus(_queue_identity(queue).address)[0].rpartition("@")
    return f"{local}+{tag}@{domain}"


def claim_auto_answer(session: Session, answering: Answering, address: str, event: str) -> bool:
    """Take one of the sender's automatic answers of the hour (RFC 3834 §2), in the caller's
    transaction; False when the limit is reached. Every automatic answer (ack, follow-up,
    reject, faq-answer) is sent only after this said yes."""
    now = utcnow()
    result = session.execute(_CLAIM_AUTO_ANSWER, {
        "key": address_key(address), "event": event, "now": now,
        "since": now - timedelta(hours=1),
        "limit": answering.settings.outbound.max_auto_replies_per_hour})
    return result.first() is not None


def _compose(answering: Answering, event: str, language: str, context: dict[str, object], *,
             sender: MailIdentity, to: Sequence[tuple[str, str]], facts: TicketFacts | None,
             in_reply_to: str | None = None, reply_to: str | None = None
             ) -> OutgoingMail | None:
    """The mail, composed for the outbox (its texts are rendered at delivery,
    `MailRenderer.compose`), or None (logged) when it cannot be written."""
    references = (*facts.thread, *( [in_reply_to] if in_reply_to else [])) if facts else ()
    try:
        return answering.renderer.compose(
            event, language, context, sender=sender, to=to, reply_to=reply_to,
            ticket_number=facts.number if facts else None, in_reply_to=in_reply_to,
            references=references, ticket_id=facts.id if facts else None)
    except HeaderError as exc:
        log.warning("%s mail to %s not written: %s", event, [a for _, a in to], exc)
        return None


def _enqueue(session: Session, answering: Answering, mails: Sequence[OutgoingMail | None]) -> None:
    """Queue the mails one event causes together (`outbox.enqueue_many`)."""
    enqueue_many(session, [mail for mail in mails if mail is not None],
                 deadline=timedelta(hours=answering.settings.outbound.delivery_deadline_hours))


def _queue_mail(session: Session, answering: Answering, event: str, language: str,
                context: dict[str, object], *, sender: MailIdentity,
                to: Sequence[tuple[str, str]], facts: TicketFacts | None,
                in_reply_to: str | None = None, reply_to: str | None = None) -> str | None:
    """Compose and enqueue one mail; its Message-ID, or None when it cannot be written."""
    mail = _compose(answering, event, language, context, sender=sender, to=to, facts=facts,
                    in_reply_to=in_reply_to, reply_to=reply_to)
    _enqueue(session, answering, [mail])
    return mail.message_id if mail else None


def _localised(labels: Mapping[Any, str], language: str) -> str:
    """The label in `language`, else any (a template may name itself in one language)."""
    return labels.get(language) or next(iter(labels.values()), "")


def _labels(template: TemplateSettings | None, language: str) -> dict[str, str]:
    if template is None:
        return {}
    return {q.key: _localised(q.label, language) for q in template.guide}


def _template_name(template: TemplateSettings | None, language: str) -> str:
    return _localised(template.name, language) if template else ""


# -- the events -------------------------------------------------------------------------------

def ticket_created(session: Session, answering: Answering, ticket: int | TicketFacts,
                   parsed: ParsedMessage | None, *, automatic: bool,
                   answers: Sequence[tuple[str, str]], missing: Sequence[str],
                   unverified: str = "", claimed_ticket: str | None = None) -> bool:
    """Acknowledge to the customer (unless automatic, rate-limited or `unverified`); notify
    the staff; True when an acknowledgment was queued (the portal says so only then).
    `ticket`: its id, or its facts when the caller has them (`new_ticket_facts`).
    `unverified`: why the sender failed DMARC (the notice says so, and which ticket the mail
    was addressed to): no acknowledgment goes to an address that was likely forged."""
    facts = (ticket if isinstance(ticket, TicketFacts)
             else ticket_facts(session, answering.settings, ticket))
    in_reply_to = parsed.message_id if parsed else None
    body = parsed.body_text if parsed else ""
    mails: list[OutgoingMail | None] = []
    if (facts.address and not automatic and not unverified
            and claim_auto_answer(session, answering, facts.address, "ack")):
        labels = _labels(facts.template, facts.language)
        mails.append(_compose(answering, "ack", facts.language, {
            "customer_name": facts.customer_name, "title": facts.title,
            "template_name": _template_name(facts.template, facts.language),
            "priority": facts.priority,
            "answers": [GuideAnswer(labels.get(k, k), v) for k, v in answers],
            "missing": [labels.get(k, k) for k in missing],
            "faq": faq_suggestions(session, answering, facts, parsed)},
            sender=_queue_identity(facts.queue), to=[(facts.customer_name, facts.address)],
            facts=facts, in_reply_to=in_reply_to, reply_to=reply_address(answering, facts)))
    acknowledged = bool(mails) and mails[0] is not None
    mails += _staff_notices(answering, facts, kind="new", body=body, in_reply_to=in_reply_to,
                            unverified=unverified, claimed_ticket=claimed_ticket, guide=answers)
    _enqueue(session, answering, mails)
    return acknowledged


def faq_suggestions(session: Session, answering: Answering, facts: TicketFacts,
                    parsed: ParsedMessage | None) -> list[FaqArticle]:
    """Up to `[faq] max_suggestions` FAQ articles in the ticket's language that match its
    title and first text well (one indexed query; none when nothing fits or the FAQ is
    empty)."""
    limit = answering.settings.faq.max_suggestions
    if limit <= 0:
        return []
    body = parsed.body_text[:parsed.quote_start] if parsed and parsed.quote_start else (
        parsed.body_text if parsed else "")
    hits = faq_search.suggest(session, f"{facts.title}\n{body[:1000]}", limit=limit,
                              language=facts.language,
                              visibilities=faq_search.CUSTOMERS if facts.registered
                              else faq_search.PUBLIC)
    return [FaqArticle(hit.title, hit.snippet.text, f"{answering.renderer.base_url}/faq/{hit.key}")
            for hit in hits]


def faq_answered(session: Session, answering: Answering, parsed: ParsedMessage, *, language: str,
                 articles: Sequence[FaqArticle], other_language: bool = False) -> str | None:
    """The answer to a question sent to the FAQ address, from that address; its Message-ID.
    `other_language`: no article in `language` matched, `articles` are in other languages
    (the mail says so). The caller claims the answer first (`claim_auto_answer`)."""
    sender = parsed.from_.address if parsed.from_ else ""
    name = parsed.from_.name if parsed.from_ else ""
    identity = MailIdentity.parse(answering.settings.outbound.from_)
    return _queue_mail(session, answering, "faq-answer", language, {
        "customer_name": name, "question": parsed.subject or "FAQ", "articles": list(articles),
        "other_language": other_language},
        sender=MailIdentity(identity.name, answering.settings.faq.address), to=[(name, sender)],
        facts=None, in_reply_to=parsed.message_id)


def customer_replied(session: Session, answering: Answering, ticket_id: int, parsed: ParsedMessage,
                     *, automatic: bool, guide_answers: Sequence[tuple[str, str]] = (),
                     facts: TicketFacts | None = None) -> None:
    """A follow-up receipt (when the queue wants one) and the staff notices; these show
    `guide_answers`, the (key, answer) pairs the reply recorded (`tickets/guide.py`).
    `facts`: the ticket's as read after the reply's article was added, if the caller has
    them."""
    facts = facts or ticket_facts(session, answering.settings, ticket_id)
    mails = []
    if (facts.queue.acknowledge_follow_ups and facts.address and not automatic
            and claim_auto_answer(session, answering, facts.address, "follow-up")):
        mails.append(_compose(answering, "follow-up", facts.language,
                              {"customer_name": facts.customer_name, "title": facts.title},
                              sender=_queue_identity(facts.queue),
                              to=[(facts.customer_name, facts.address)], facts=facts,
                              in_reply_to=parsed.message_id,
                              reply_to=reply_address(answering, facts)))
    text = parsed.body_text[:parsed.quote_start] if parsed.quote_start else parsed.body_text
    mails += _staff_notices(answering, facts, kind="reply", body=text,
                            in_reply_to=parsed.message_id, guide=guide_answers)
    _enqueue(session, answering, mails)


def notify_staff(session: Session, answering: Answering, facts: TicketFacts, *, kind: str,
                 body: str, in_reply_to: str | None) -> None:
    """Queue a notice to each of the queue's staff (`_staff_notices`)."""
    _enqueue(session, answering, _staff_notices(answering, facts, kind=kind, body=body,
                                          in_reply_to=in_reply_to))


def _staff_notices(answering: Answering, facts: TicketFacts, *, kind: str, body: str,
                   in_reply_to: str | None, unverified: str = "",
                   claimed_ticket: str | None = None,
                   guide: Sequence[tuple[str, str]] = ()) -> list[OutgoingMail | None]:
    """To each of the queue's staff; their reply goes to the ticket's staff reply address
    and threads by the References this mail carries. The notice says the same to everyone
    of a language (nothing in it names its recipient), so its context is built once per
    language; each staff member still gets a mail of their own (own Message-ID)."""
    staff = {s.email: s for s in answering.settings.staff}
    reply_to = staff_reply_address(facts)
    sender = _queue_identity(facts.queue)
    contexts: dict[str, dict[str, object]] = {}
    notices = []
    for email in facts.queue.staff:
        person = staff.get(email)
        language = person.language if person else facts.queue.language
        if language not in contexts:
            contexts[language] = {
                "kind": kind, "customer_name": facts.customer_name,
                "customer_address": facts.address, "title": facts.title, "body": body,
                "priority": facts.priority,
                "template_name": _template_name(facts.template, language),
                "unverified": unverified or None, "claimed_ticket": claimed_ticket,
                "assignee": facts.assignee or None,
                "answers": [GuideAnswer(_labels(facts.template, language).get(k, k), v)
                            for k, v in guide],
                "first_response_due": facts.first_response_due,
                "solution_due": facts.solution_due}
        notices.append(_compose(answering, "staff-notify", language, contexts[language],
                                sender=sender, to=[(person.name if person else "", email)],
                                facts=facts, in_reply_to=in_reply_to, reply_to=reply_to))
    return notices


def rejected(session: Session, answering: Answering, parsed: ParsedMessage, *, reason: str,
             template: TemplateSettings | None, language: str, queue: str | None = None) -> None:
    """Explain a refusal to the sender, from the address of `queue` (the queue of the route
    or template the mail was for), else the gateway's default identity."""
    sender = parsed.from_.address if parsed.from_ else ""
    if not sender or not claim_auto_answer(session, answering, sender, "reject"):
        return
    _queue_mail(session, answering, "reject", language, {
        "customer_name": parsed.from_.name if parsed.from_ else "", "reason": reason,
        "original_subject": parsed.subject,
        "template_name": _template_name(template, language)},
        sender=_rejecting_identity(answering.settings, queue),
        to=[(parsed.from_.name if parsed.from_ else "", sender)], facts=None,
        in_reply_to=parsed.message_id)


def _rejecting_identity(settings: Settings, queue: str | None) -> MailIdentity:
    configured = next((q for q in settings.queue if q.id == queue), None) if queue else None
    return (_queue_identity(configured) if configured
            else MailIdentity.parse(settings.outbound.from_))


def state_changed(session: Session, answering: Answering, ticket_id: int, old: str,
                  new: str, *, to_customer: bool = True) -> None:
    """The status mail to the customer and each participant; `to_customer=False`: to the
    participants only (the customer got a mail of its own about the change)."""
    if new not in answering.settings.outbound.status_mail_states:
        return
    facts = ticket_facts(session, answering.settings, ticket_id)
    recipients = _customer_and_participants(facts) if to_customer else facts.participants
    for name, address in recipients:
        _queue_mail(session, answering, "status", facts.language, {
            "customer_name": name, "title": facts.title, "old_state": old,
            "new_state": new}, sender=_queue_identity(facts.queue),
            to=[(name, address)], facts=facts,
            in_reply_to=facts.thread[-1] if facts.thread else None,
            reply_to=reply_address(answering, facts))


def _customer_and_participants(facts: TicketFacts) -> list[tuple[str, str]]:
    """Who gets a ticket's answers: its customer, then each participant in a mail of their
    own (with the ticket's Reply-To and thread, so their reply joins the ticket)."""
    customer = [(facts.customer_name, facts.address)] if facts.address else []
    return customer + list(facts.participants)


def staff_answered(session: Session, answering: Answering, ticket_id: int, *, agent_name: str,
                   text: str, in_reply_to: str | None) -> str | None:
    """The staff member's answer to the customer, from the queue's address; its Message-ID."""
    facts = ticket_facts(session, answering.settings, ticket_id)
    if not facts.address:
        return None
    sent = [_queue_mail(session, answering, "staff-answer", facts.language, {
        "customer_name": name, "title": facts.title,
        "agent_name": agent_name, "body": text}, sender=_queue_identity(facts.queue),
        to=[(name, address)], facts=facts,
        in_reply_to=facts.thread[-1] if facts.thread else in_reply_to,
        reply_to=reply_address(answering, facts))
        for name, address in _customer_and_participants(facts)]
    return sent[0]


def delivery_failed(session: Session, answering: Answering, *, ticket_id: int | None,
                    recipient: str, original_subject: str, diagnostic: str) -> None:
    """Tell the queue's staff that a mail of ours was refused."""
    facts = ticket_facts(session, answering.settings, ticket_id) if ticket_id else None
    queues = answering.settings.queue
    queue = facts.queue if facts else (queues[0] if queues else None)
    if queue is None:
        return
    staff = {s.email: s for s in answering.settings.staff}
    for email in queue.staff:
        person = staff.get(email)
        _queue_mail(session, answering, "delivery-failed",
                    person.language if person else queue.language, {
                        "recipient": recipient, "original_subject": original_subject,
                        "diagnostic": diagnostic},
                    sender=_queue_identity(queue), to=[(person.name if person else "", email)],
                    facts=facts, reply_to=staff_reply_address(facts) if facts else None)


def tell_staff_on_failure(answering: Answering) -> Callable[[Session, QueuedMail, str], None]:
    """The outbox's `on_failed` hook: a mail of ours was refused (5xx) or its deadline
    passed; the queue's staff get a `delivery-failed` mail in the recording transaction."""

    def hook(session: Session, mail: QueuedMail, error: str) -> None:
        delivery_failed(session, answering, ticket_id=mail.ticket_id,
                        recipient=", ".join(mail.recipients), original_subject=mail.subject,
                        diagnostic=error)

    return hook


def command_failed(session: Session, answering: Answering, ticket_id: int, *, staff_address: str,
                   agent_name: str, errors: Sequence[tuple[str, str]],
                   in_reply_to: str | None) -> None:
    """Tell a staff member which lines of their command block were wrong, and that nothing
    of their mail was carried out or sent (it is kept as an internal note)."""
    facts = ticket_facts(session, answering.settings, ticket_id)
    _queue_mail(session, answering, "command-failed", _staff_language(answering, facts,
                                                                      staff_address),
                {"agent_name": agent_name, "title": facts.title, "errors": list(errors)},
                sender=_queue_identity(facts.queue), to=[(agent_name, staff_address)],
                facts=facts, in_reply_to=in_reply_to, reply_to=staff_reply_address(facts))


def kept_as_note(session: Session, answering: Answering, ticket_id: int, *, staff_address: str,
                 agent_name: str, path: str, detail: str, in_reply_to: str | None) -> None:
    """Tell a staff member that their mail was kept as an internal note instead of being
    carried out, and why: it came by `path` (a routing rule) instead of the staff reply
    address, or on that address without our MTA vouching for it (`detail`)."""
    facts = ticket_facts(session, answering.settings, ticket_id)
    _queue_mail(session, answering, "kept-as-note", _staff_language(answering, facts,
                                                                    staff_address),
                {"agent_name": agent_name, "title": facts.title, "path": path,
                 "detail": detail},
                sender=_queue_identity(facts.queue), to=[(agent_name, staff_address)],
                facts=facts, in_reply_to=in_reply_to, reply_to=staff_reply_address(facts))


def _staff_language(answering: Answering, facts: TicketFacts, staff_address: str) -> str:
    key = address_key(staff_address).lower()
    person = next((s for s in answering.settings.staff
                   if address_key(s.email).lower() == key), None)
    return person.language if person else facts.queue.language


def file_link(session: Session, answering: Answering, ticket_id: int, *, to_address: str,
              token: str, expires: datetime, too_large: int | None = None,
              left_out: Sequence[ScannedFile] = ()) -> str | None:
    """A file-exchange link for a ticket, from the queue's address, in the customer's language
    when `to_address` is the ticket's customer (else the queue's); its Message-ID, or None
    when the address cannot be written. `too_large`/`left_out`: the size of a mail over the
    limit and the attachments it had, which the mail lists for the customer to upload."""
    facts = ticket_facts(session, answering.settings, ticket_id)
    is_customer = bool(facts.address) and address_key(to_address) == address_key(facts.address)
    name = facts.customer_name if is_customer else ""
    language = facts.language if is_customer else facts.queue.language
    return _queue_mail(session, answering, "file-link", language,
                       {"customer_name": name, "token": token, "expires": expires,
                        "too_large": too_large, "left_out": list(left_out),
                        "max_size": answering.settings.inbound.max_message_size
                        if too_large else None},
                       sender=_queue_identity(facts.queue), to=[(name, to_address)],
                       facts=facts, in_reply_to=facts.thread[-1] if facts.thread else None,
                       reply_to=reply_address(answering, facts))
