"""A customer's reply that answers the conversation guide: recorded as the ticket's answers.

In: the session of the caller's transaction, an `Answering`, the ticket and the parsed reply
(already appended as an article by the caller). Out: the ticket's `guide_answer` rows, a
`guide` history entry per answer, and, when this reply completed the required answers, one
`guide-complete` mail to the customer; a `GuideUpdate` saying what happened.

Guarantees:
- only the ticket's own customer may answer (`may_answer_guide`, the one check, by the
  role routing gave the sender);
  automatic mail (RFC 3834) never answers;
- what counts as an answer is `guide_answers.parse_guide_reply` (quoted lines never);
  numbered answers refer to the questions the acknowledgment asked: the required ones that
  the ticket was created without, in guide order;
- an answer the ticket already has is replaced only by a line marked as a correction
  (`Label (neu): …`), else it is kept and the new one ignored;
- the confirmation goes out once per ticket at most (a `guide-complete` history entry),
  only when this reply recorded an answer and no required answer is missing afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlmodel import Session

from gateway.mail.message import ParsedMessage
from gateway.outbound.answers import Answering
from gateway.outbound.guide_mail import guide_completed
from gateway.store.models import GuideAnswer, TicketHistory, table_of
from gateway.tickets.facts import TicketFacts, ticket_facts
from gateway.tickets.guide_answers import own_lines, parse_guide_reply
from gateway.tickets.ticket import record_change, storable

_answer = table_of(GuideAnswer)
_history = table_of(TicketHistory)
COMPLETE = "guide-complete"     # the history field that says the confirmation was sent


@dataclass(frozen=True)
class GuideUpdate:
    recorded: tuple[tuple[str, str], ...]   # (key, answer) this reply wrote, in guide order
    kept: tuple[str, ...]                   # keys answered before, not marked as corrections
    complete: bool                          # no required answer is missing now
    confirmed: bool                         # the guide-complete mail was queued by this reply

    def note(self) -> str:
        """What happened, for the processing log."""
        parts = []
        if self.recorded:
            parts.append("guide answers recorded: " + ", ".join(k for k, _ in self.recorded))
        if self.kept:
            parts.append("answered before, kept (no '(neu)'/'(new)'): " + ", ".join(self.kept))
        if self.confirmed:
            parts.append("guide complete: the customer is told")
        return "; ".join(parts)


GUIDE_ROLES = frozenset({"customer"})


def may_answer_guide(sender_role: str) -> bool:
    """Whether a sender may answer the ticket's conversation guide, by the role routing gave
    them on this ticket (`routing/rules._role`: its customer by address or account,
    a participant, staff): only its own customer. The one place to widen when more people
    may (participants, issue #16 item 2: add "participant" to `GUIDE_ROLES`)."""
    return sender_role in GUIDE_ROLES


def record_guide_reply(session: Session, answering: Answering, ticket_id: int,
                       parsed: ParsedMessage, *, sender_role: str, automatic: bool,
                       facts: TicketFacts | None = None) -> GuideUpdate | None:
    """Record the reply's guide answers (the module's rules); None when the reply may not
    answer or the ticket has no guide. `facts`: the ticket's, if the caller has read them
    in this transaction already."""
    if automatic or not may_answer_guide(sender_role):
        return None
    sender = parsed.from_.address if parsed.from_ else ""
    facts = facts or ticket_facts(session, answering.settings, ticket_id)
    if facts.template is None or not facts.template.guide:
        return None
    guide = facts.template.guide
    existing = dict(session.execute(select(_answer.c.key, _answer.c.value)
                                    .where(_answer.c.ticket_id == ticket_id)).all())
    history = session.execute(select(_history.c.field, _history.c.new_value).where(
        _history.c.ticket_id == ticket_id, _history.c.field.in_(("guide", COMPLETE)))).all()
    by_mail = {(h.new_value or "").partition(":")[0] for h in history if h.field == "guide"}
    asked = [q.key for q in guide if q.required and (q.key not in existing or q.key in by_mail)]
    missing_before = [q.key for q in guide if q.required and q.key not in existing]
    reply = parse_guide_reply(own_lines(parsed.body_text, parsed.quote_start), guide, asked)
    recorded, kept = [], []
    for key, value in reply.answers:
        value = storable(value)
        if key in existing and key not in reply.corrections:
            kept.append(key)
            continue
        if existing.get(key) == value:
            continue
        if key in existing:
            session.execute(update(_answer).where(_answer.c.ticket_id == ticket_id,
                                                  _answer.c.key == key).values(value=value))
        else:
            session.execute(insert(_answer).values(ticket_id=ticket_id, key=key, value=value))
        record_change(session, ticket_id, f"mail:{sender}", "guide",
                      f"{key}: {existing[key]}" if key in existing else None, f"{key}: {value}")
        existing[key] = value
        recorded.append((key, value))
    complete = all(q.key in existing for q in guide if q.required)
    confirmed = False
    if recorded and missing_before and complete \
            and not any(h.field == COMPLETE for h in history):
        ordered = [(q.key, existing[q.key]) for q in guide if q.key in existing]
        confirmed = guide_completed(session, answering, facts, ordered, parsed.message_id)
        if confirmed:
            record_change(session, ticket_id, "system", COMPLETE, None, parsed.message_id)
    return GuideUpdate(tuple(recorded), tuple(kept), complete, confirmed)
