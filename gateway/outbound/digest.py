"""The staff overview by mail (issue #16 item 4): each staff member's open tickets, as the
scheduled digest (`send_digests`, run by `jobs.py` on `[digest] schedule` and by `ticketgw
digest send`) or as the answer to a `list` mail (`answer_list_request`).

In: the session of the caller's transaction, an `Answering`, and the moment `now` the
overview is for (the caller's clock: tests and `--as-of` pass it). Out: `staff-digest`
mails in the outbox, in the staff member's language (`[[staff]] language`), from the
gateway's own address (`[outbound] from`), each ticket with its staff reply address, so
that answering from the digest is a staff answer (docs/admin.md 5.2). Nothing is sent yet.

Guarantees: a mail only to an address in a `[[queue]] staff` list, never to anyone a mail
names; at most `[outbound] max_auto_replies_per_hour` of them per address (RFC 3834 §2,
like acknowledgments); the scheduled digest skips a staff member with nothing open; the
outbox holds mail to a dead address back. A `dry_run` writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr

from sqlalchemy import select
from sqlmodel import Session

from gateway.config.settings import QueueSettings, Settings
from gateway.mail.addresses import address_key
from gateway.outbound.answers import Answering, claim_auto_answer
from gateway.outbound.headers import HeaderError, MailIdentity
from gateway.outbound.outbox import enqueue_many
from gateway.routing.addressbook import split_plus
from gateway.store.models import OutboundMail, table_of
from gateway.tickets.overview import OverviewEntry, open_overview, staff_queues

EVENT = "staff-digest"
_outbound = table_of(OutboundMail)


@dataclass(frozen=True)
class DigestResult:
    """What happened for one staff member, for the log, the CLI and its `--json`."""

    staff: str
    language: str
    queues: tuple[str, ...]
    tickets: tuple[str, ...]          # the numbers, in the mail's order
    outcome: str                      # queued | nothing-open | dry-run | limit | not-written
    message_id: str | None = None


def staff_members(settings: Settings) -> list[tuple[str, str, str]]:
    """(address, name, language) of everyone in a `[[queue]] staff` list, each once, in
    config order; the language of `[[staff]]`, else of their first queue."""
    people = {address_key(s.email).lower(): s for s in settings.staff}
    found: dict[str, tuple[str, str, str]] = {}
    for queue in settings.queue:
        for address in queue.staff:
            person = people.get(address_key(address).lower())
            found.setdefault(address_key(address).lower(), (
                address, person.name if person else "",
                person.language if person else queue.language))
    return list(found.values())


def send_digests(session: Session, answering: Answering, now: datetime, *,
                 dry_run: bool = False, only: str | None = None,
                 unless_sent_since: datetime | None = None) -> list[DigestResult]:
    """The digest for every staff member (or the one address `only`), as of `now`.
    `unless_sent_since`: skip whoever got a digest queued since then (the schedule fires on
    every instance; the first one sends, the others find its mail)."""
    results = []
    had_one = _digest_recipients_since(session, unless_sent_since) \
        if unless_sent_since is not None else set()
    for address, name, language in staff_members(answering.settings):
        if only is not None and address_key(only).lower() != address_key(address).lower():
            continue
        if address_key(address).lower() in had_one:
            results.append(DigestResult(address, language, (), (), "sent-already"))
            continue
        queues = staff_queues(answering.settings, address)
        entries = open_overview(session, queues, now)
        result = DigestResult(address, language, tuple(queues),
                              tuple(e.number for e in entries), "dry-run")
        if not entries:
            result = DigestResult(address, language, tuple(queues), (), "nothing-open")
        elif not dry_run:
            result = _mail(session, answering, result, name, entries, now)
        results.append(result)
    return results


def _digest_recipients_since(session: Session, since: datetime) -> set[str]:
    rows = session.execute(select(_outbound.c.recipients).where(
        _outbound.c.event == EVENT, _outbound.c.created >= since)).scalars()
    return {address_key(r).lower() for recipients in rows for r in recipients}


def answer_list_request(session: Session, answering: Answering, *, staff_address: str,
                        queues: Sequence[str], now: datetime, in_reply_to: str) -> DigestResult:
    """The overview of `queues` to a staff member who asked for it by mail (routing made
    sure they are one and our MTA vouches for the From); sent even when nothing is open."""
    person = next(((a, n, lang) for a, n, lang in staff_members(answering.settings)
                   if address_key(a).lower() == address_key(staff_address).lower()), None)
    address, name, language = person or (staff_address, "", "de")
    entries = open_overview(session, queues, now)
    result = DigestResult(address, language, tuple(queues), tuple(e.number for e in entries),
                          "queued")
    return _mail(session, answering, result, name, entries, now, in_reply_to=in_reply_to)


def _mail(session: Session, answering: Answering, result: DigestResult, name: str,
          entries: Sequence[OverviewEntry], now: datetime,
          in_reply_to: str | None = None) -> DigestResult:
    settings = answering.settings
    if not claim_auto_answer(session, answering, result.staff, EVENT):
        return DigestResult(result.staff, result.language, result.queues, result.tickets,
                            "limit")
    queues = {q.id: q for q in settings.queue}
    context = {
        "staff_name": name or result.staff, "queues": [queues[q].name or q
                                                       for q in result.queues if q in queues],
        "as_of": now, "requested": in_reply_to is not None,
        "entries": [_entry(e, queues.get(e.queue), now) for e in entries]}
    identity = MailIdentity.parse(settings.outbound.from_)
    try:
        mail = answering.renderer.compose(EVENT, result.language, context, sender=identity,
                                         to=[(name, result.staff)], in_reply_to=in_reply_to,
                                         references=[in_reply_to] if in_reply_to else (),
                                         # the answer to a `list` mail answers that mail
                                         # (RFC 3834 §5); the scheduled digest answers none
                                         auto_submitted="auto-replied" if in_reply_to
                                         else "auto-generated")
    except HeaderError:
        return DigestResult(result.staff, result.language, result.queues, result.tickets,
                            "not-written")
    enqueue_many(session, [mail],
                 deadline=timedelta(hours=settings.outbound.delivery_deadline_hours))
    return DigestResult(result.staff, result.language, result.queues, result.tickets,
                        "queued", mail.message_id)


def _entry(entry: OverviewEntry, queue: QueueSettings | None, now: datetime) -> dict[str, object]:
    return {"number": entry.number, "title": entry.title, "state": entry.state,
            "priority": entry.priority, "queue": entry.queue, "customer": entry.customer,
            "created": entry.created, "age_hours": int(entry.age.total_seconds() // 3600),
            "assignee": entry.assignee, "due": entry.due, "urgency": entry.urgency,
            "staff_address": staff_reply_address(queue, entry.staff_token)}


def staff_reply_address(queue: QueueSettings | None, token: str | None) -> str:
    """`queue+s-TOKEN@domain`, as `answers.staff_reply_address` makes it for a ticket's
    facts (the digest has no facts, only the row); the queue's address without a token."""
    if queue is None:
        return ""
    address = parseaddr(queue.from_)[1]
    if not token:
        return address
    local, _, domain = split_plus(address)[0].rpartition("@")
    return f"{local}+s-{token}@{domain}"
