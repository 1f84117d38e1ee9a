"""A staff member's mail to a ticket, after routing decided who may act: carried out, or kept.

In: the session of the caller's transaction, an `Answering`, the ticket, the parsed mail and
its article (attachments already in the blob store). `carry_out` is for a mail routing let
act as staff (the ticket's staff reply address, a configured staff From our MTA vouches
for); `keep_as_note` for a staff From routing held back (another path, or no DMARC/DKIM pass).
Out: the article and the mails it causes, queued in the same transaction; a line for the
processing log.

Guarantees (docs/admin.md 5.2):
- the answer goes to the customer from the queue's address, never from the agent's own, and
  without the quoted history;
- all or nothing: a command block with a line that is not a valid command, or a command
  that cannot be carried out, runs nothing (the commands run in a savepoint that is rolled
  back), sends nothing to the customer, keeps the mail as an internal note and mails the
  staff member what was wrong (`command-failed`);
- `#internal` in the block or anywhere in the text keeps the text from the customer;
- an answer sent to the customer moves a `new` ticket to `open` (no status mail: the
  customer has the answer), as the first response of its service level;
- a held-back mail is an internal note and its sender, a configured staff address, is told
  why (`kept-as-note`), unless the mail is automatic (RFC 3834 §2) or they had their
  `[outbound] max_auto_replies_per_hour` of such mails already.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from sqlmodel import Session

from gateway.config.settings import StaffSettings
from gateway.errors import InvalidInput
from gateway.files.exchange import files_command
from gateway.mail.addresses import address_key
from gateway.mail.message import ParsedMessage
from gateway.outbound import answers
from gateway.outbound.answers import Answering
from gateway.routing.addressbook import AddressBook
from gateway.tickets import participants
from gateway.tickets.actions import assign, change_priority, change_state, start_work
from gateway.tickets.commands import Command, parse_commands
from gateway.tickets.facts import ticket_facts
from gateway.tickets.service_levels import note_first_response
from gateway.tickets.ticket import (
    NewArticle,
    State,
    add_article,
    remember_message_ids,
)


def carry_out(session: Session, answering: Answering, ticket_id: int, parsed: ParsedMessage,
              article: NewArticle) -> str:
    """Commands run, then the answer goes to the customer, or stays an internal note.
    Returns what was done, for the log."""
    sender = parsed.from_.address if parsed.from_ else ""
    agent = agent_name(answering.settings.staff, parsed)
    remember_message_ids(session, ticket_id, [parsed.message_id])
    text = parsed.body_text[:parsed.quote_start] if parsed.quote_start else parsed.body_text
    command_mail = parse_commands(text)
    failed = [(e.line, e.reason) for e in command_mail.errors]
    done: list[str] = []
    if not failed:
        savepoint = session.begin_nested()
        try:
            results = [_run_command(session, answering, ticket_id, command, sender)
                       for command in command_mail.commands]
        except BaseException:
            savepoint.rollback()
            raise
        failed = [(line, reason) for line, _, reason in (r.partition(": ") for r in results)
                  if reason]
        if failed:
            savepoint.rollback()        # all or nothing: not one command of the block counts
        else:
            savepoint.commit()
            done = results
    if failed:
        add_article(session, ticket_id, replace(article, internal=True))
        answers.command_failed(session, answering, ticket_id, staff_address=sender,
                               agent_name=agent, errors=failed, in_reply_to=parsed.message_id)
        return "; ".join([f"{line}: {reason}" for line, reason in failed]
                         + ["nothing carried out: kept as an internal note, nothing sent to "
                            "the customer, the staff member is told what was wrong"])
    if command_mail.internal or not command_mail.text.strip():
        add_article(session, ticket_id, replace(
            article, internal=True, channel="note", body=command_mail.text, quote_start=None))
        done.append("internal note, nothing sent to the customer")
        return "; ".join(done)
    message_id = answers.staff_answered(session, answering, ticket_id, agent_name=agent,
                                        text=command_mail.text, in_reply_to=parsed.message_id)
    add_article(session, ticket_id, replace(
        article, direction="out", body=command_mail.text, quote_start=None, body_html=None,
        message_id=message_id, from_address=agent))   # never the agent's own address
    done.append("answer sent to the customer" if message_id else
                "answer kept: the ticket has no customer address to send it to")
    if message_id:
        note_first_response(session, ticket_id)
        if start_work(session, answering, ticket_id, actor=f"mail:{sender}"):
            done.append("new -> open")
    return "; ".join(done)


def keep_as_note(session: Session, answering: Answering, ticket_id: int, parsed: ParsedMessage,
                 article: NewArticle, *, path: str, detail: str, automatic: bool) -> str:
    """A staff From that may not act here: its mail as an internal note, no command run,
    nothing sent to the customer; the staff member learns why and how to do it right.
    `path`: the routing rule the mail came by; `detail`: what our MTA said, when `path` is
    the staff reply address. Returns what was done, for the log."""
    sender = parsed.from_.address if parsed.from_ else ""
    add_article(session, ticket_id, replace(article, internal=True))
    if automatic:
        return "automatic mail: the staff member is not told"
    if not answers.claim_auto_answer(session, answering, sender, "kept-as-note"):
        return f"{sender} was not told: the limit of automatic mails per hour is reached"
    answers.kept_as_note(session, answering, ticket_id, staff_address=sender,
                         agent_name=agent_name(answering.settings.staff, parsed), path=path,
                         detail=detail, in_reply_to=parsed.message_id)
    return f"{sender} is told why by mail"


def _run_command(session: Session, answering: Answering, ticket_id: int, command: Command,
                 sender: str) -> str:
    """What was done; "LINE: why" when it could not be done."""
    actor = f"staff:{sender}"
    if command.name == "state":
        changed = change_state(session, answering, ticket_id, State(command.value),
                               actor=actor)
        return f"#state {command.value}" + ("" if changed else " (unchanged)")
    if command.name == "priority":
        change_priority(session, answering.settings, ticket_id, int(command.value), actor=actor)
        return f"#priority {command.value}"
    if command.name == "assign":
        try:
            return f"#assign {assign(session, ticket_id, command.value, actor=actor)}"
        except InvalidInput as exc:
            return f"#assign {command.value}: {exc}"
    if command.name == "take":      # the sender: routing let them act as staff
        try:
            return f"#take {assign(session, ticket_id, sender, actor=actor)}"
        except InvalidInput as exc:
            return f"#take: {exc}"
    if command.name == "files":
        return files_command(session, answering, ticket_id, command.value, actor=actor)
    if command.name == "cc":
        return _cc_command(session, answering, ticket_id, command.value, actor=actor)
    return f"#{command.name}"


def _cc_command(session: Session, answering: Answering, ticket_id: int, value: str, *,
                actor: str) -> str:
    """`#cc add|remove ADDRESS`: what was done, or "LINE: why" when it cannot be."""
    action, _, address = value.partition(" ")
    facts = ticket_facts(session, answering.settings, ticket_id)
    try:
        if participants.queue_level(answering.settings, facts.queue.id) == "none":
            raise InvalidInput(f"queue {facts.queue.id} has no participants "
                               "(participants = \"none\")")
        if action == "remove":
            participants.remove_participant(session, ticket_id, address, actor=actor)
        else:
            participants.add_participant(
                session, answering.settings, AddressBook(answering.settings), ticket_id,
                address, source="staff", actor=actor, customer_address=facts.address)
    except InvalidInput as exc:
        return f"#cc {value}: {exc}"
    return f"#cc {value}"


def agent_name(staff: Sequence[StaffSettings], parsed: ParsedMessage) -> str:
    """The configured name of the staff member who wrote, else their mail's display name."""
    sender = parsed.from_.address if parsed.from_ else ""
    configured = next((s.name for s in staff
                       if address_key(s.email).lower() == address_key(sender).lower()), "")
    return configured or (parsed.from_.name if parsed.from_ else "") or sender
