"""The stages for one stored mail: parse -> classify -> route -> apply, in the caller's
transaction.

In: a received-mail row (raw bytes and envelope, already committed by intake). Out: an
`Outcome` (created | appended | ignored | rejected | quarantined, the reason and the rule)
and the ticket changes it caused, all in the same transaction.

Guarantees: a mail that breaks a parser limit is quarantined with the reason (not retried);
any other exception propagates, so the worker rolls back, counts the attempt and keeps the
mail. `understand` + `checked` + `route_message` are also what `ticketgw explain` runs,
without `apply`. Who may act as staff and who is the customer is decided by routing, from
what `checked` puts into the mail's context (docs/admin.md 5.2); `tickets/staff_mail.py`
then carries a staff answer out or keeps it as a note.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from gateway.classify.loops import classify_parsed
from gateway.config.settings import Settings
from gateway.config.sync import ConfiguredIds
from gateway.errors import InvalidInput
from gateway.faq.mail import answer_question
from gateway.files.exchange import create_area_for_address
from gateway.inbound.directory import (
    DatabaseDirectory,
    look_up_customers,
    look_up_message_ids,
)
from gateway.inbound.intake import stored_raw
from gateway.mail.attachment_scan import ScannedFile
from gateway.mail.message import ParsedAttachment, ParsedMessage, ParseLimitExceeded
from gateway.mail.parse import parse_message
from gateway.outbound import answers, bouncing, digest
from gateway.outbound.answers import Answering
from gateway.routing.addressbook import AddressBook
from gateway.routing.authentication import check_sender
from gateway.routing.context import MailContext
from gateway.routing.decisions import (
    AppendDecision,
    Decision,
    IgnoreDecision,
    NewTicketDecision,
    RejectDecision,
)
from gateway.routing.mail_fields import guide_answers
from gateway.routing.rules import route_message
from gateway.store.blobs import BlobStore, StoredBlob
from gateway.store.models import ReceivedMail, table_of, utcnow
from gateway.tickets import participants, staff_mail
from gateway.tickets.actions import change_state, end_customer_wait
from gateway.tickets.facts import TicketFacts, new_ticket_facts, ticket_facts
from gateway.tickets.guide import record_guide_reply
from gateway.tickets.numbers import Numbering
from gateway.tickets.service_levels import start_clock
from gateway.tickets.ticket import (
    NewArticle,
    NewAttachment,
    NewTicket,
    State,
    add_article,
    create_ticket,
    record_change,
    remember_message_ids,
)

_received = table_of(ReceivedMail)


@dataclass(frozen=True)
class Stages:
    """What the stages of one mail use, built by the composition root (`App.stages`): the
    settings, the address book, the blob store for attachments, the ticket numbering, what
    answers need, and the ids of configured queues and templates (a per-process cache)."""

    settings: Settings
    addressbook: AddressBook
    blobs: BlobStore
    numbering: Numbering
    answering: Answering
    configured_ids: ConfiguredIds


@dataclass(frozen=True)
class Outcome:
    outcome: str                 # created | appended | ignored | rejected | quarantined
    reason: str
    rule: str
    ticket_id: int | None = None
    ticket_number: str | None = None
    message_id: str | None = None
    from_address: str | None = None
    subject: str | None = None


@dataclass(frozen=True)
class Understood:
    parsed: ParsedMessage
    context: MailContext
    bounced: tuple[tuple[str, str, bool], ...] = ()   # (address, status, permanent)
    truncated_from: int | None = None     # over the size limit: only its beginning was kept
    left_out: tuple[ScannedFile, ...] = ()   # and the attachments it had, none of them kept
    # the hop that handed it to us may be believed (inbound/hops.py): only then does an
    # Authentication-Results header count (RFC 8601 §5)
    hop_trusted: bool = True
    # its attachments' content, already in the blob store (`store_attachments`), by the
    # id() of each of `parsed.attachments` (alive as long as this is)
    stored: Mapping[int, StoredBlob] = field(default_factory=dict)


def understand(raw: bytes, *, received: datetime, envelope_from: str | None,
               envelope_to: Sequence[str], addressbook: AddressBook) -> Understood:
    """Parse and classify; raises `ParseLimitExceeded` for a hostile mail."""
    parsed = parse_message(raw, received=received)
    verdict = classify_parsed(parsed, envelope_from=envelope_from, our_addresses=addressbook,
                              our_domains=tuple(addressbook.domains))
    recipients = tuple(envelope_to) or tuple(a.address for a in (*parsed.to, *parsed.cc)
                                             if a.address)
    bounce = verdict.bounce
    context = MailContext(
        recipients=recipients, automatic=not verdict.may_auto_answer,
        automatic_kind=verdict.kind.value, automatic_rule=verdict.rule,
        automatic_reason=verdict.reason,
        original_message_ids=tuple(verdict.original.message_ids) if verdict.original else ())
    bounced = tuple((r.address, r.status, r.permanent) for r in bounce.recipients) if bounce else ()
    return Understood(parsed, context, bounced)


def understand_stored(addressbook: AddressBook, *, raw: bytes, received: datetime,
                      envelope_from: str | None, envelope_to: Sequence[str],
                      truncated_from: int | None = None,
                      left_out: tuple[ScannedFile, ...] = (),
                      hop_trusted: bool = True) -> Understood | Outcome:
    """The pure half for one stored mail (no database): what it is, or the quarantine
    outcome when it breaks a parser limit. Runs before the write transaction, so parsing
    never holds a lock. Of a mail cut at the size limit only the text counts: its
    attachments are incomplete and are left out (`left_out` names them, as the listener saw
    them pass). `hop_trusted`: see `Understood`."""
    try:
        understood = understand(raw, received=received, envelope_from=envelope_from,
                                envelope_to=envelope_to, addressbook=addressbook)
    except ParseLimitExceeded as exc:
        return Outcome("quarantined", f"parser limit: {exc}", "parse-limit")
    if not hop_trusted:
        understood = replace(understood, hop_trusted=False)
    if truncated_from is None:
        return understood
    return replace(understood, parsed=replace(understood.parsed, attachments=()),
                   truncated_from=truncated_from, left_out=left_out)


def store_attachments(blobs: BlobStore, understood: Understood) -> Understood:
    """Put the mail's attachments into the blob store now, before the write transaction
    that records them (the worker calls this outside it): hashing, writing and fsyncing
    an attachment then no longer holds SQLite's write lock while received mail waits for
    its `250`. The blob rows are recorded with the article (`_article`). A mail that becomes
    no article leaves its blobs unreferenced; the blob sweep removes them after its grace
    period (the store's contract: content first, then the row that names it)."""
    attachments = understood.parsed.attachments
    if not attachments:
        return understood
    return replace(understood, stored={id(attachment): blobs.put(attachment.chunks())
                                       for attachment in attachments})


def route_and_apply(session: Session, stages: Stages, understood: Understood,
                    mail_id: int | None) -> Outcome:
    """The half that needs the database: route against it and apply the decision, in the
    caller's transaction."""
    understood = checked(understood, stages.settings.inbound.authserv_id)
    decision = route_message(understood.parsed, understood.context, settings=stages.settings,
                             addressbook=stages.addressbook, directory=DatabaseDirectory(session))
    return apply_decision(session, stages, decision, understood, mail_id)


def before_applying(session: Session, batch: Sequence[Understood]) -> None:
    """What applying these mails in the caller's transaction would ask the database for
    each of them, asked once for all: which of their Message-IDs are articles already
    (`directory.look_up_message_ids`), who of their senders is a customer
    (`directory.look_up_customers`) and which senders have a bounce record to clear
    (`bouncing.look_up_senders`)."""
    look_up_message_ids(session, [u.parsed.message_id for u in batch if u.parsed.message_id])
    look_up_customers(session, [u.parsed.from_.address for u in batch if u.parsed.from_])
    bouncing.look_up_senders(session, [u.parsed.from_.address for u in batch
                                       if u.parsed.from_ and _shows_life(u)])


def _shows_life(understood: Understood) -> bool:
    """A person wrote from its sender, or its out-of-office answered one of our mails: the
    mailbox exists, automatic answers may go there again."""
    return not understood.context.automatic or understood.context.automatic_kind == "auto_reply"


def checked(understood: Understood, authserv_id: str) -> Understood:
    """The mail with what our border MTA vouches for about its From in its context
    (`routing/authentication.py`), which routing needs to decide who may act as staff and
    who is the customer. Authentication-Results count only from a hop we trust
    (`hop_trusted`); `ticketgw explain` runs this too."""
    parsed = understood.parsed
    # without an authserv-id no header is looked at (the shipped default): skip reading them
    headers = [str(h) for h in parsed.mime.get_all("Authentication-Results", [])] \
        if authserv_id and parsed.mime is not None else []
    check = check_sender(headers, parsed.from_.address if parsed.from_ else "", authserv_id,
                         hop_trusted=understood.hop_trusted)
    return replace(understood, context=replace(understood.context, sender_check=check))


def apply_decision(session: Session, stages: Stages, decision: Decision, understood: Understood,
                   mail_id: int | None) -> Outcome:
    parsed = understood.parsed
    sender = parsed.from_.address if parsed.from_ else ""

    def outcome(kind: str, ticket_id: int | None = None,
                ticket_number: str | None = None) -> Outcome:
        return Outcome(kind, decision.reason, decision.rule, ticket_id, ticket_number,
                       parsed.message_id, sender, parsed.subject)

    automatic = understood.context.automatic
    store = _attachment_store(stages.blobs, understood)
    if _shows_life(understood):
        bouncing.clear_on_mail_from(session, sender)
    if isinstance(decision, NewTicketDecision):
        created = [_create(session, stages, store, new, parsed, mail_id)
                   for new in (decision, *decision.also)]
        for facts, new in created:
            answers.ticket_created(session, stages.answering, facts, parsed, automatic=automatic,
                                   answers=new.guide_answers, missing=new.missing_required,
                                   unverified=new.unverified, claimed_ticket=new.claimed_ticket)
        first = created[0][0]
        result = outcome("created", first.id, first.number)
        if not automatic and not decision.unverified:
            noted = [participants.add_from_cc(
                session, stages.settings, stages.addressbook, facts.id,
                [(a.name, a.address) for a in parsed.cc if a.address], queue=new.queue,
                actor=f"mail:{sender}", customer_address=facts.address)
                for facts, new in created]
            if any(noted):
                result = replace(result, reason="; ".join([result.reason, *filter(None, noted)]))
        if decision.also:
            result = replace(result, reason=f"{result.reason}: "
                                            f"{', '.join(f.number for f, _ in created)}")
        return _offer_upload(session, stages, understood, result, first.id, sender)
    if isinstance(decision, AppendDecision) and decision.sender_role == "staff" \
            and (not decision.internal or decision.held_back):
        article = _article(store, parsed, mail_id, sender="staff", internal=False)
        if decision.held_back:
            note = staff_mail.keep_as_note(
                session, stages.answering, decision.ticket.id, parsed, article,
                path=decision.rule, detail=understood.context.sender_check.detail,
                automatic=automatic)
        else:
            note = staff_mail.carry_out(session, stages.answering, decision.ticket.id, parsed,
                                        article)
        return replace(outcome("appended", decision.ticket.id, decision.ticket.number),
                       reason=f"{decision.reason}; {note}")
    if isinstance(decision, AppendDecision):
        article = _article(store, parsed, mail_id, sender="customer",
                           internal=decision.internal)
        add_article(session, decision.ticket.id, article)
        joined = _join_colleague(session, stages, decision, parsed) \
            if decision.sender_role == "participant" and not decision.internal else ""
        if decision.reopen:
            change_state(session, stages.answering, decision.ticket.id, State.OPEN,
                         actor=f"mail:{sender}")
        elif not decision.internal:
            end_customer_wait(session, stages.answering, decision.ticket.id,
                              actor=f"mail:{sender}")
        if decision.internal:
            return outcome("appended", decision.ticket.id, decision.ticket.number)
        # read once for both: neither the guide answers nor the end of a wait change them
        facts = ticket_facts(session, stages.answering.settings, decision.ticket.id)
        guide = record_guide_reply(session, stages.answering, decision.ticket.id, parsed,
                                   sender_role=decision.sender_role, automatic=automatic,
                                   facts=facts)
        answers.customer_replied(session, stages.answering, decision.ticket.id, parsed,
                                 automatic=automatic, guide_answers=guide.recorded if guide else (),
                                 facts=facts)
        result = outcome("appended", decision.ticket.id, decision.ticket.number)
        if joined:
            result = replace(result, reason=f"{result.reason}; {joined}")
        if guide is not None and guide.note():
            result = replace(result, reason=f"{result.reason}; {guide.note()}")
        return _offer_upload(session, stages, understood, result, decision.ticket.id, sender)
    if isinstance(decision, IgnoreDecision) and decision.staff_list:
        listed = digest.answer_list_request(session, stages.answering, staff_address=sender,
                                            queues=decision.staff_list, now=utcnow(),
                                            in_reply_to=parsed.message_id)
        return replace(outcome("ignored"), reason=f"{decision.reason}: {listed.outcome}, "
                                                  f"{len(listed.tickets)} tickets")
    if isinstance(decision, IgnoreDecision) and decision.faq_question:
        reason = answer_question(session, stages.answering, parsed, mail_id)
        return replace(outcome("ignored"), reason=reason)
    if isinstance(decision, IgnoreDecision):
        ticket = decision.ticket
        if ticket is not None:        # a bounce: kept on its ticket, nothing reopened
            add_article(session, ticket.id,
                        _article(store, parsed, mail_id, sender="system", internal=True))
        unverified = bouncing.record_bounces(session, understood.bounced,
                                             understood.context.original_message_ids,
                                             decision.reason, ticket.id if ticket else None)
        result = outcome("ignored", ticket.id if ticket else None,
                         ticket.number if ticket else None)
        return replace(result, reason=f"{result.reason}; {unverified}") if unverified else result
    assert isinstance(decision, RejectDecision)
    if decision.answer and decision.rule in REJECT_REASONS:
        template = next((t for t in stages.settings.template if t.id == decision.template), None)
        answers.rejected(session, stages.answering, parsed, reason=decision.rule, template=template,
                         language=decision.language, queue=decision.queue)
    return outcome("rejected")


REJECT_REASONS = ("no-subject", "unknown-sender", "template-not-available")


def _join_colleague(session: Session, stages: Stages, decision: AppendDecision,
                    parsed: ParsedMessage) -> str:
    """A colleague of the customer's organisation who may write (`participants =
    "organisation"`) becomes a participant with their first reply, so later answers reach
    them too; what was done, for the log ("" when they are one already)."""
    sender = parsed.from_.address if parsed.from_ else ""
    try:
        added = participants.add_participant(
            session, stages.settings, stages.addressbook, decision.ticket.id, sender,
            name=parsed.from_.name if parsed.from_ else "", source="organisation",
            actor=f"mail:{sender}")
    except InvalidInput as exc:
        return f"not kept as a participant: {exc}"
    return f"{sender} is now a participant" if added else ""


def _offer_upload(session: Session, stages: Stages, understood: Understood, result: Outcome,
                  ticket_id: int, sender: str) -> Outcome:
    """A mail over the size limit kept only its text: its sender gets a file-exchange link
    for the attachments instead of a bounce (never an automatic sender)."""
    size = understood.truncated_from
    if size is None:
        return result
    note = f"over the size limit ({size} bytes): only its text was kept"
    if understood.context.automatic or not sender:
        return replace(result, reason=f"{result.reason}; {note}, nothing sent")
    area = create_area_for_address(session, stages.answering, ticket_id, sender, too_large=size,
                                   left_out=understood.left_out)
    sent = f"file-exchange link mailed to {area.mailed_to}" if area.mailed_to else \
        f"no file-exchange link: {sender} cannot be written to"
    return replace(result, reason=f"{result.reason}; {note}, {sent}")


def _create(session: Session, stages: Stages, store: AttachmentStore,
            decision: NewTicketDecision, parsed: ParsedMessage,
            mail_id: int | None) -> tuple[TicketFacts, NewTicketDecision]:
    """The new ticket, what its answers need to know about it (without reading back what
    was just written), and the decision with the guide answers it got. A "not solved"
    reply to an FAQ answer starts the ticket with the stored question, then adds the reply,
    and remembers our answer's Message-ID, so later replies to it join this ticket."""
    ids = stages.configured_ids
    first, first_mail_id = parsed, mail_id
    if decision.question is not None:
        first_mail_id = decision.question.received_mail_id
        stored = session.execute(select(_received.c.raw, _received.c.size,
                                        _received.c.raw_sha256, _received.c.received)
                                 .where(_received.c.id == first_mail_id)).one()
        first = parse_message(stored_raw(stages.blobs, stored.raw, stored.size, stored.raw_sha256),
                              received=stored.received)
        template = next((t for t in stages.settings.template if t.id == decision.template), None)
        given, missing = guide_answers(first, template)
        decision = replace(decision, guide_answers=given, missing_required=missing)
    reply_token, staff_token = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    ref = create_ticket(session, NewTicket(
        title=decision.title, queue_id=ids.queue(session, decision.queue),
        priority=decision.priority,
        template_id=ids.template(session, decision.template) if decision.template else None,
        customer_user_id=decision.customer.id if decision.customer else None,
        contact_email=decision.contact, reply_token=reply_token, staff_token=staff_token,
        guide_answers=decision.guide_answers, follows=decision.related_ticket,
        first_article=_article(store, first, first_mail_id, sender="customer",
                               internal=False)),
        numbering=stages.numbering, actor=f"mail:{decision.contact}")
    due = start_clock(session, stages.settings, ref.id)
    if decision.unverified:       # what `ticket show` tells staff besides the notice
        record_change(session, ref.id, f"mail:{decision.contact}", "unverified", None,
                      decision.unverified)
    thread = [first.message_id]
    if decision.question is not None:
        add_article(session, ref.id, _article(store, parsed, mail_id, sender="customer",
                                              internal=False))
        remember_message_ids(session, ref.id, [decision.question.answer_message_id])
        thread.append(parsed.message_id)
    customer = decision.customer
    return new_ticket_facts(
        stages.settings, ref.id, number=ref.number, title=decision.title,
        priority=decision.priority,
        queue=decision.queue, template=decision.template,
        customer_name=customer.name if customer else "", registered=customer is not None,
        address=(customer.email if customer else "") or decision.contact,
        customer_language=customer.language if customer else None, reply_token=reply_token,
        staff_token=staff_token, thread=tuple(m for m in thread if m),
        first_response_due=due.first_response, solution_due=due.solution), decision


AttachmentStore = Callable[[ParsedAttachment], StoredBlob]


def _attachment_store(blobs: BlobStore, understood: Understood) -> AttachmentStore:
    """Where an article's attachment goes: the blob stored for it before the transaction
    (`store_attachments`), else into the blob store now (a mail stored before the first
    article, or a caller that did not store ahead)."""
    def store(attachment: ParsedAttachment) -> StoredBlob:
        stored = understood.stored.get(id(attachment))
        return stored if stored is not None else blobs.put(attachment.chunks())

    return store


def _article(store: AttachmentStore, parsed: ParsedMessage, mail_id: int | None, *,
             sender: str, internal: bool) -> NewArticle:
    attachments = []
    for attachment in parsed.attachments:
        blob = store(attachment)
        attachments.append(NewAttachment(
            filename=attachment.filename, content_type=attachment.content_type,
            sha256=blob.sha256, size=blob.size, content_id=attachment.content_id,
            inline=attachment.inline))
    return NewArticle(
        direction="in", channel="mail", sender=sender, internal=internal,
        from_address=parsed.from_.formatted() if parsed.from_ else "",
        to_addresses=", ".join(a.formatted() for a in (*parsed.to, *parsed.cc)),
        subject=parsed.subject, body=parsed.body_text, body_html=parsed.body_html,
        remote_images=parsed.remote_images,
        quote_start=parsed.quote_start, message_id=parsed.message_id,
        received_mail_id=mail_id, attachments=tuple(attachments))
