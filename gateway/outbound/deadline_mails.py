"""The mails of the periodic deadline check: service-level reminders and escalations to
staff, and the customer's reminder and closing notice while a ticket waits for them.

In: the session of the check's transaction, an `Answering`, the ticket's facts and what
is due. Out: rows in the outbox (nothing sent yet), committed with the history entry the
check writes for them, so a mail and its record exist together or not at all.

Guarantees: the same rules as every answer (`answers.py`): from the queue's identity, staff
mail with the ticket's staff reply address as Reply-To and in each staff member's language,
customer mail in the customer's language with the ticket's reply address; automatic-mail
headers (Auto-Submitted: auto-generated); a mail to a dead address is held back by the
outbox (`bouncing.SUPPRESSED_EVENTS`); customer mail counts against
`[outbound] max_auto_replies_per_hour` like an acknowledgment. An address that cannot be
written is logged and skipped. It composes with `answers.py`'s own helpers (identity,
render-and-queue, staff language), so these mails cannot drift from the other answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session

from gateway.outbound.answers import (
    Answering,
    _queue_identity,
    _queue_mail,
    _staff_language,
    claim_auto_answer,
    reply_address,
    staff_reply_address,
)
from gateway.tickets.facts import TicketFacts


def _staff_name(answering: Answering, address: str) -> str:
    return next((s.name for s in answering.settings.staff if s.email == address), "")


def service_level_due(session: Session, answering: Answering, facts: TicketFacts, *,
                      recipients: Sequence[str], target: str, due: datetime,
                      missed: bool, assignee: str = "") -> list[str]:
    """`sla-reminder` (due soon) or `sla-escalation` (`missed`) to each recipient, in their
    language; the addresses it was queued for."""
    event = "sla-escalation" if missed else "sla-reminder"
    context: dict[str, object] = {"title": facts.title, "priority": facts.priority,
                                  "target": target, "due": due}
    if missed:
        context["assignee"] = assignee
    queued = []
    for address in recipients:
        if _queue_mail(session, answering, event, _staff_language(answering, facts, address),
                       context, sender=_queue_identity(facts.queue),
                       to=[(_staff_name(answering, address), address)], facts=facts,
                       reply_to=staff_reply_address(facts)):
            queued.append(address)
    return queued


def customer_wait(session: Session, answering: Answering, facts: TicketFacts, *, closed: bool,
                  close_on: datetime | None = None, days: int = 0) -> str:
    """`pending-reminder` or (`closed`) `pending-closed` to the ticket's customer; what
    happened, for the ticket's history: "mailed to ADDRESS" or why not."""
    if not facts.address:
        return "not mailed: the ticket has no customer address"
    event = "pending-closed" if closed else "pending-reminder"
    if not claim_auto_answer(session, answering, facts.address, event):
        return (f"not mailed: {facts.address} had the limit of automatic mails per hour "
                "([outbound] max_auto_replies_per_hour)")
    context: dict[str, object] = {"customer_name": facts.customer_name, "title": facts.title}
    context.update({"days": days} if closed else {"close_on": close_on})
    message_id = _queue_mail(
        session, answering, event, facts.language, context,
        sender=_queue_identity(facts.queue), to=[(facts.customer_name, facts.address)],
        facts=facts, in_reply_to=facts.thread[-1] if facts.thread else None,
        reply_to=reply_address(answering, facts))
    return f"mailed to {facts.address}" if message_id else \
        f"not mailed: {facts.address} cannot be written to"
