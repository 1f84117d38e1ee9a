"""Routing: one parsed mail in, one decision out, with the name of the rule that decided.

In: the parsed mail, its `context.MailContext` and a `context.Directory`; what the mail's own
text says (title, priority, guide answers, "not solved") is read by `mail_fields`. Out: one
of the frozen `decisions`.

Pure: every fact about the world (tickets, customers, staff) comes through a `Directory`,
so routing is tested with plain `.eml` files and an in-memory directory, and `ticketgw
explain` runs the very same code read-only against the database.

Order of threading (the contract): the ticket's staff reply address (`staff-token`), its
customer reply address (`reply-token`), then In-Reply-To/References against every
Message-ID the ticket sent or received (`in-reply-to`, `references`), then the subject tag
`[Ticket#NUMBER]` (`subject-tag`). A matched mail joins the ticket only if its sender may
write to it (the ticket's customer, a participant, or staff); otherwise it opens a new
ticket and the decision says why.

Who may act as staff (docs/admin.md 5.2): only mail to a ticket's staff reply address, from a
configured staff address that our border MTA vouches for (`context.SenderCheck.vouched`),
is a staff answer whose `#commands` run and whose text goes to the customer. A staff From on
any other path, or one our MTA does not vouch for, is kept as an internal note and the
staff member is told why (`AppendDecision.held_back`); anybody else on the staff address is
treated as on any other path. A From whose domain fails DMARC (`SenderCheck.failed`) is never
taken for the customer or participant it names: such a mail opens a new ticket from an
unverified sender (`NewTicketDecision.unverified`), and staff are told why.

Mail to the FAQ address (`[faq] address`) never opens a ticket by itself: a question is
ignored with `faq_question` set (the pipeline answers it with matching articles), automatic
mail is ignored unanswered. A reply to one of our FAQ answers (found by In-Reply-To or
References) whose new text, above the quoted history, says "not solved" / "nicht gelöst"
opens a ticket with the original question (rule `faq-not-solved`, `question` set); any other
reply to such an answer is ignored (`faq-reply`).
"""

from __future__ import annotations

from dataclasses import replace

from gateway.config.settings import Settings, TemplateSettings
from gateway.mail.addresses import address_key
from gateway.mail.message import ParsedMessage
from gateway.routing.addressbook import (
    AddressBook,
    Destination,
    reply_token_of,
    staff_token_of,
)
from gateway.routing.context import Directory, MailContext, TicketInfo
from gateway.routing.decisions import (
    AppendDecision,
    Decision,
    FaqQuestion,
    IgnoreDecision,
    NewTicketDecision,
    RejectDecision,
)
from gateway.routing.mail_fields import (
    SUBJECT_TAG,
    clean_title,
    guide_answers,
    mail_priority,
    says_not_solved,
)

REPORTS = ("read-receipt", "arf")         # classifier rules for reports about a mail


# -- the rules -------------------------------------------------------------------------------

def route_message(parsed: ParsedMessage, context: MailContext, *, settings: Settings,
                  addressbook: AddressBook, directory: Directory) -> Decision:
    """Decide what to do with one mail. Never raises for a content problem."""
    sender = parsed.from_.address if parsed.from_ else ""
    if directory.is_duplicate(parsed.message_id, parsed.body_text):
        return IgnoreDecision("duplicate", f"{parsed.message_id} was received before with "
                                           "the same content")
    if context.automatic_kind in ("bounce", "complaint") or context.automatic_rule in REPORTS:
        return _route_report(context, directory)
    if addressbook.is_ours(sender):
        return IgnoreDecision("own-address", f"mail from our own address {sender}")

    threaded = _thread(parsed, context, directory)
    if threaded is not None:
        ticket, rule, detail = threaded
        role = _role(ticket, sender, directory, staff_first=rule == "staff-token",
                     participants=_queue_participants(settings, ticket.queue))
        if context.automatic_kind == "auto_reply":
            return AppendDecision("out-of-office", f"{context.automatic_reason}; kept as an "
                                  f"internal note on {ticket.number} ({detail})", ticket,
                                  role or "participant", reopen=False, internal=True)
        if role == "staff":
            return _staff_decision(ticket, rule, detail, sender, context)
        check = context.sender_check
        if role is not None and check.failed:
            return _new_ticket(parsed, context, settings, addressbook, directory,
                               note=f"{detail}, but {sender} is not appended as the {role} "
                                    f"of ticket {ticket.number}: {check.detail}",
                               claimed=ticket.number)
        if role is not None:
            if ticket.state == "closed" and not settings.tickets.reopen_on_reply:
                return _new_ticket(parsed, context, settings, addressbook, directory,
                                   note=f"follows up closed ticket {ticket.number}",
                                   related=ticket.number)
            return AppendDecision(rule, f"{detail}; sender is {role}", ticket, role,
                                  reopen=ticket.state == "closed")
        return _new_ticket(parsed, context, settings, addressbook, directory,
                           note=f"{detail}, but {sender or 'the sender'} may not write to "
                                f"ticket {ticket.number}")
    if context.automatic_kind == "auto_reply":
        return IgnoreDecision("out-of-office", f"{context.automatic_reason}; no ticket to "
                                               "attach it to")
    listing = _staff_list(parsed, context, settings, addressbook, directory, sender)
    if listing is not None:
        return listing
    return _new_ticket(parsed, context, settings, addressbook, directory)


LIST_SUBJECTS = ("list", "#list")


def _staff_list(parsed: ParsedMessage, context: MailContext, settings: Settings,
                addressbook: AddressBook, directory: Directory,
                sender: str) -> IgnoreDecision | None:
    """A mail with the subject `list` to one of our addresses from a staff member of a
    queue, whose From our MTA vouches for (docs/admin.md 5.2: the overview names customers),
    asks for the overview of the queue it was sent to, else of all their queues. None (a
    normal mail) for anyone else: a forged staff From only ever opens a ticket."""
    if parsed.subject.strip().lower() not in LIST_SUBJECTS or context.automatic \
            or not sender or not context.sender_check.vouched or not directory.is_staff(sender):
        return None
    key = address_key(sender).lower()
    mine = [q.id for q in settings.queue if any(address_key(a).lower() == key for a in q.staff)]
    destinations = _destinations(context, addressbook)
    if not mine or not destinations:
        return None
    asked = [template.queue if (template := _template(settings, d)) else d.target
             for d in destinations if d.kind in ("queue", "template")]
    queues = tuple(q for q in mine if q in asked) or tuple(mine)
    return IgnoreDecision("staff-list", f"{sender} is staff of {', '.join(mine)} and asks for "
                                        f"the list: the overview of {', '.join(queues)} is "
                                        "mailed to them", staff_list=queues)


def _route_report(context: MailContext, directory: Directory) -> Decision:
    """Bounces, complaints and receipts never open a ticket; they are kept on the ticket of
    the mail they report on, when it is one of ours."""
    rule = "bounce" if context.automatic_kind == "bounce" else context.automatic_rule or "report"
    found = directory.ticket_by_message_ids(context.original_message_ids)
    if found:
        ticket, message_id = found
        return IgnoreDecision(rule, f"{context.automatic_reason}; about {message_id} of "
                                    f"ticket {ticket.number}", ticket)
    return IgnoreDecision(rule, f"{context.automatic_reason}; not about a mail of ours")


def _staff_decision(ticket: TicketInfo, rule: str, detail: str, sender: str,
                    context: MailContext) -> AppendDecision:
    """A configured staff address wrote to a ticket: a staff answer only on the ticket's
    staff reply address and when our MTA vouches for the From; else an internal note, and
    the staff member is told why."""
    check = context.sender_check
    if rule == "staff-token" and check.vouched:
        return AppendDecision(rule, f"{detail}; sender is staff", ticket, "staff",
                              reopen=False)
    if rule == "staff-token":
        why = (f"{sender} is a staff address, but our mail server does not vouch for it "
               f"({check.detail})")
    else:
        why = (f"{sender} is a staff address, but staff answers and #commands count only on "
               f"the ticket's staff reply address, and this mail came by {rule}")
    return AppendDecision(rule, f"{detail}; {why}: kept as an internal note, no commands "
                                "run, nothing sent to the customer", ticket, "staff",
                          reopen=False, internal=True, held_back=why)


def _thread(parsed: ParsedMessage, context: MailContext,
            directory: Directory) -> tuple[TicketInfo, str, str] | None:
    for recipient in context.recipients:
        token = staff_token_of(recipient)
        if token:
            ticket = directory.ticket_by_staff_token(token)
            if ticket:
                return ticket, "staff-token", f"staff reply address of ticket {ticket.number}"
    for recipient in context.recipients:
        token = reply_token_of(recipient)
        if token:
            ticket = directory.ticket_by_reply_token(token)
            if ticket:
                return ticket, "reply-token", f"reply address of ticket {ticket.number}"
    if parsed.in_reply_to:
        found = directory.ticket_by_message_ids(parsed.in_reply_to)
        if found:
            return found[0], "in-reply-to", f"In-Reply-To {found[1]} is on ticket {found[0].number}"
    if parsed.references:
        found = directory.ticket_by_message_ids(tuple(reversed(parsed.references)))
        if found:
            return found[0], "references", f"References {found[1]} is on ticket {found[0].number}"
    for number in SUBJECT_TAG.findall(parsed.subject):
        ticket = directory.ticket_by_number(number)
        if ticket:
            return ticket, "subject-tag", f"subject tag Ticket#{number}"
    return None


def _role(ticket: TicketInfo, sender: str, directory: Directory, *,
          staff_first: bool = False, participants: str = "cc") -> str | None:
    """Who the sender is to this ticket, or None if they may not write to it. On the staff
    reply address a staff member is staff even on a ticket they opened as its customer.
    `participants`: the queue's level (none | cc | organisation, cumulative): a recorded
    participant may write unless it is "none"; with "organisation" also any registered
    customer of the ticket customer's organisation."""
    if not sender:
        return None
    if staff_first and directory.is_staff(sender):
        return "staff"
    key = address_key(sender)
    customer = directory.customer_by_address(sender)
    if key.lower() == ticket.contact_key.lower() or (
            customer is not None and customer.id == ticket.customer_user_id):
        return "customer"
    if directory.is_staff(sender):
        return "staff"
    if participants != "none" and directory.is_participant(ticket.id, sender):
        return "participant"
    if participants == "organisation" and customer is not None and ticket.organisation \
            and customer.organisation == ticket.organisation:
        return "participant"
    return None


def _queue_participants(settings: Settings, queue: str) -> str:
    return next((q.participants for q in settings.queue if q.id == queue), "cc")


def _destinations(context: MailContext, addressbook: AddressBook) -> list[Destination]:
    """Where the recipients lead, each place once, in recipient order (envelope order, else
    To then Cc)."""
    found: dict[tuple[str, str], Destination] = {}
    for recipient in context.recipients:
        destination = addressbook.lookup(recipient)
        if destination is not None:
            found.setdefault((destination.kind, destination.target), destination)
    return list(found.values())


def _new_ticket(parsed: ParsedMessage, context: MailContext, settings: Settings,
                addressbook: AddressBook, directory: Directory, note: str = "",
                related: str | None = None, claimed: str | None = None) -> Decision:
    """One mail to several template (or queue) addresses opens one ticket, for the first of
    them, unless `[inbound] several_templates = "each"`: then one for each. `claimed`: the
    ticket an unverified sender's mail was addressed to."""
    destinations = _destinations(context, addressbook)
    prefix = f"{note}; " if note else ""
    if not destinations:
        return RejectDecision("no-route", f"{prefix}no recipient is a template, route or queue "
                                          f"address: {', '.join(context.recipients) or 'none'}",
                              answer=False)
    first = _decide(parsed, context, settings, directory, destinations[0], prefix, related,
                    claimed)
    others = destinations[1:]
    if not isinstance(first, NewTicketDecision) or not others:
        return first
    if settings.inbound.several_templates == "first":
        names = ", ".join(d.target for d in others)
        return replace(first, reason=f"{first.reason}; also addressed to {names}: one ticket "
                                     "(several_templates = first)")
    more = [_decide(parsed, context, settings, directory, d, prefix, related, claimed)
            for d in others]
    also = tuple(d for d in more if isinstance(d, NewTicketDecision))
    skipped = [f"{d.rule} ({d.reason})" for d in more if not isinstance(d, NewTicketDecision)]
    reason = f"{first.reason}; one ticket for each of {1 + len(also)} addresses"
    if skipped:
        reason += "; not for: " + ", ".join(skipped)
    return replace(first, reason=reason, also=also)


def _decide(parsed: ParsedMessage, context: MailContext, settings: Settings,
            directory: Directory, destination: Destination, prefix: str,
            related: str | None, claimed: str | None) -> Decision:
    """What a mail to this one destination becomes. A From that fails DMARC is not taken
    for the registered customer it names and is never answered automatically: the answer
    would go to the person whose address was forged."""
    sender = parsed.from_.address if parsed.from_ else ""
    if destination.kind == "faq":
        return _route_faq(parsed, context, settings, directory, sender)
    # an unverified reply must reach staff even without a subject of its own
    title = clean_title(parsed.subject) or (f"Re: {claimed}" if claimed else "")
    check = context.sender_check
    unverified = check.detail if check.failed else ""
    customer = directory.customer_by_address(sender) if sender and not unverified else None
    answer = not context.automatic and not unverified
    template = _template(settings, destination)
    queue = template.queue if template else destination.target
    language = customer.language if customer else _queue_language(settings, queue)
    template_id = template.id if template else None
    if not title:
        return RejectDecision("no-subject", f"{prefix}a ticket needs a subject",
                              answer=answer, template=template_id,
                              language=language, queue=queue)
    if customer is None and destination.unknown_sender == "reject":
        return RejectDecision("unknown-sender", f"{prefix}{sender or 'the sender'} is not a "
                              "registered customer", answer=answer,
                              template=template_id, language=language, queue=queue)
    if template is not None and template.organisations and (
            customer is None or customer.organisation not in template.organisations):
        return RejectDecision("template-not-available", f"{prefix}template {template.id} is "
                              "only for organisations " + ", ".join(template.organisations),
                              answer=answer, template=template_id,
                              language=language, queue=queue)
    answers, missing = guide_answers(parsed, template)
    priority = mail_priority(parsed) or (template.priority if template else 3)
    reason = prefix + (f"opens template {template.id}" if template else f"goes to queue {queue}")
    if unverified:
        reason += "; an unverified sender: no customer account, no acknowledgment" + (
            "" if claimed else f" ({unverified})")
    elif customer is None:
        reason += f"; {sender or 'unknown sender'} is not a registered customer"
    return NewTicketDecision(
        rule=destination.rule, reason=reason, title=title, queue=queue,
        template=template.id if template else None, priority=priority, customer=customer,
        contact=sender, guide_answers=answers, missing_required=missing,
        related_ticket=related, unverified=unverified, claimed_ticket=claimed)


def _route_faq(parsed: ParsedMessage, context: MailContext, settings: Settings,
               directory: Directory, sender: str) -> Decision:
    if context.automatic:
        return IgnoreDecision("faq-address", f"{context.automatic_reason or 'automatic mail'}"
                                             "; FAQ questions from automatic mail are not "
                                             "answered")
    answered = directory.faq_answer_by_message_ids(
        (*parsed.in_reply_to, *reversed(parsed.references)))
    question = IgnoreDecision("faq-address", "a question to the FAQ address",
                              faq_question=True)
    if answered is None or address_key(sender).lower() != answered.address_key.lower():
        return question
    if not says_not_solved(parsed):
        return IgnoreDecision("faq-reply", f"a reply to our FAQ answer {answered.message_id} "
                                           "that does not say \"not solved\"; nothing to do")
    template = next((t for t in settings.template if t.id == settings.faq.template), None)
    queue = (template.queue if template else settings.faq.queue
             or (settings.queue[0].id if settings.queue else ""))
    customer = directory.customer_by_address(sender)
    title = clean_title(answered.subject) or clean_title(parsed.subject) or "FAQ"
    return NewTicketDecision(
        rule="faq-not-solved", reason=f"\"not solved\" in a reply to our FAQ answer "
        f"{answered.message_id}: a ticket with the question in queue {queue}",
        title=title, queue=queue, template=template.id if template else None,
        priority=template.priority if template else 3, customer=customer, contact=sender,
        question=FaqQuestion(answered.received_mail_id, answered.message_id))


def _queue_language(settings: Settings, queue: str) -> str:
    return next((q.language for q in settings.queue if q.id == queue), "de")


def _template(settings: Settings, destination: Destination) -> TemplateSettings | None:
    if destination.kind != "template":
        return None
    return next((t for t in settings.template if t.id == destination.target), None)
