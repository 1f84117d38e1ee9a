"""`ticketgw explain`: the pipeline's own stages, run read-only, turned into a report."""

from __future__ import annotations

from typing import Any

from gateway.app import App
from gateway.inbound.directory import DatabaseDirectory
from gateway.mail.message import ParsedMessage, ParseLimitExceeded
from gateway.mail.peek import peek_from_subject
from gateway.outbound import bouncing
from gateway.pipeline import checked, understand
from gateway.routing.decisions import (
    AppendDecision,
    IgnoreDecision,
    NewTicketDecision,
    RejectDecision,
)
from gateway.routing.rules import route_message
from gateway.store.models import utcnow
from gateway.tickets.commands import parse_commands
from gateway.tickets.ticket import priority_label


def explain_mail(app: App, raw: bytes, *, recipients: tuple[str, ...],
                 sender: str | None) -> dict[str, Any]:
    """What would happen to `raw`, as a flat report (nothing is written)."""
    try:
        understood = understand(raw, received=utcnow(), envelope_from=sender,
                                envelope_to=recipients, addressbook=app.addressbook)
    except ParseLimitExceeded as exc:
        from_address, subject = peek_from_subject(raw)
        return {"from": from_address, "subject": subject, "outcome": "quarantined",
                "rule": "parse-limit", "reason": str(exc)}
    understood = checked(understood, app.settings.inbound.authserv_id)
    parsed, context = understood.parsed, understood.context
    with app.db.read() as session:
        decision = route_message(parsed, context, settings=app.settings,
                                 addressbook=app.addressbook,
                                 directory=DatabaseDirectory(session))
        dead_sender = bouncing.dead_address(session, parsed.from_.address if parsed.from_ else "")
    report: dict[str, Any] = {
        "message_id": parsed.message_id + (" (generated)" if parsed.message_id_generated else ""),
        "from": parsed.from_.formatted() if parsed.from_ else _no_sender(parsed.defects),
        "subject": parsed.subject,
        "recipients": ", ".join(context.recipients),
        "automatic": (f"yes: {context.automatic_kind} ({context.automatic_reason})"
                      if context.automatic else "no"),
        "sender_check": f"{context.sender_check.result}: {context.sender_check.detail}",
    }
    if isinstance(decision, NewTicketDecision):
        report |= {
            "outcome": "created (a new ticket"
                       + (" from an unverified sender)" if decision.unverified else ")"),
            "rule": decision.rule,
            "reason": decision.reason, "queue": decision.queue,
            "template": decision.template,
            "customer": decision.customer.username if decision.customer else
            f"none (unregistered contact {decision.contact})" if decision.contact else
            "none (no sender)",
            "priority": priority_label(decision.priority),
            "guide_answers": dict(decision.guide_answers),
            "missing_required": ", ".join(decision.missing_required),
        }
        if decision.also:
            report["also_created"] = ", ".join(
                f"{d.template or d.queue} (priority {d.priority})" for d in decision.also)
    elif isinstance(decision, AppendDecision):
        report |= {"outcome": "appended" + (" as an internal note" if decision.internal else ""),
                   "rule": decision.rule, "reason": decision.reason,
                   "ticket": decision.ticket.number, "sender_is": decision.sender_role,
                   "reopens": "yes" if decision.reopen else "no"}
        if decision.sender_role == "staff" and not decision.internal:
            report["staff_commands"] = _staff_commands(parsed)
    elif isinstance(decision, IgnoreDecision):
        report |= {"outcome": "ignored", "rule": decision.rule, "reason": decision.reason,
                   "ticket": decision.ticket.number if decision.ticket else None}
    else:
        assert isinstance(decision, RejectDecision)
        report |= {"outcome": "rejected", "rule": decision.rule, "reason": decision.reason}
    answer = not context.automatic and not isinstance(decision, IgnoreDecision)
    if isinstance(decision, RejectDecision):
        answer = decision.answer
    report["auto_reply"] = ("would be answered" if answer else
                            "no automatic answer (automatic mail, loop or ignored)")
    if isinstance(decision, NewTicketDecision) and decision.unverified:
        report["auto_reply"] = ("no acknowledgment (the sender failed DMARC); the staff "
                                "notice says why")
    if isinstance(decision, AppendDecision) and decision.held_back and answer:
        report["auto_reply"] = "the staff member is told why by mail (kept-as-note)"
    if understood.bounced:
        report["bounced_recipients"] = ", ".join(
            f"{address} {status or '(no status)'} ({'hard' if permanent else 'soft'})"
            for address, status, permanent in understood.bounced)
    if dead_sender is not None:
        report["sender_bouncing"] = (
            f"{dead_sender.explanation()}: automatic mail to it is held back"
            + ("" if context.automatic else "; this mail ends that"))
    if isinstance(decision, IgnoreDecision) and decision.faq_question:
        report["auto_reply"] = ("would be answered with matching FAQ articles (unless the "
                                "sender's limit of automatic answers is reached)")
    return report


def _staff_commands(parsed: ParsedMessage) -> str:
    """What a staff answer's command block would do (the pipeline's own parser)."""
    text = parsed.body_text[:parsed.quote_start] if parsed.quote_start else parsed.body_text
    mail = parse_commands(text)
    if mail.errors:
        return ("not carried out, kept as an internal note, the staff member is told: "
                + "; ".join(f"{e.line}: {e.reason}" for e in mail.errors))
    commands = ", ".join(f"#{c.name} {c.value}".rstrip() for c in mail.commands) or "none"
    sent = ("nothing sent (internal note)" if mail.internal or not mail.text.strip()
            else "the answer goes to the customer")
    return f"{commands}; {sent}" + (", if every command can be carried out (else nothing "
                                    "is)" if mail.commands else "")


def _no_sender(defects: tuple[str, ...]) -> str:
    """Why the mail has no sender, when its From names nobody unambiguously."""
    why = next((d.removeprefix("address: ") for d in defects
                if d.startswith("address: ") and d.endswith("taken as no From")), "")
    return f"none: {why}" if why else ""
