"""The confirmation that a ticket's conversation guide is complete (`guide-complete`).

In: the session of the transaction that recorded the customer's answers, an `Answering`, the
ticket's facts and its guide answers. Out: one mail in the outbox, in that transaction.

Guarantees: the rules of `answers.py` (the customer's language, the queue's identity, the
ticket's reply address; RFC 3834 "auto-replied"; counted against the customer's
`max_auto_replies_per_hour`; held back by the outbox for a dead address). Sent at most once
per ticket: the caller (`tickets/guide.py`) records that it was sent.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session

from gateway.outbound.answers import (
    Answering,
    _labels,
    _queue_identity,
    _queue_mail,
    claim_auto_answer,
    reply_address,
)
from gateway.outbound.render import GuideAnswer
from gateway.tickets.facts import TicketFacts


def guide_completed(session: Session, answering: Answering, facts: TicketFacts,
                    answers: Sequence[tuple[str, str]], in_reply_to: str | None) -> bool:
    """Tell the customer that every required answer is there; False when nothing was queued
    (no address, the hourly limit reached, or an address we cannot write)."""
    if not facts.address or not claim_auto_answer(session, answering, facts.address,
                                                  "guide-complete"):
        return False
    labels = _labels(facts.template, facts.language)
    message_id = _queue_mail(session, answering, "guide-complete", facts.language, {
        "customer_name": facts.customer_name, "title": facts.title,
        "answers": [GuideAnswer(labels.get(k, k), v) for k, v in answers]},
        sender=_queue_identity(facts.queue), to=[(facts.customer_name, facts.address)],
        facts=facts, in_reply_to=in_reply_to, reply_to=reply_address(answering, facts))
    return message_id is not None
