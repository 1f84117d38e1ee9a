"""Automatic mail: is this mail written by a person, and may the gateway answer it?

In: one received mail as the parser sees it — `headers` (lower-cased names -> decoded value of
the first occurrence), the stdlib MIME tree (compat32 or default policy; None if unavailable),
the decoded readable text — plus the SMTP envelope sender (`""` is the null reverse-path `<>`;
None means unknown, e.g. a mail read from a file or IMAP: then Return-Path, then an mbox
`From ` line stand in), our own addresses (a collection, or anything with `is_ours(address)`
such as `AddressBook`) and our domains (they put our own Message-IDs first in a bounce).

Out: a `Classification` (frozen): the `kind` of mail, `may_auto_answer`, the kebab-case `rule`
that decided, and a one-line `reason` for the processing log that starts with that rule name
("auto-submitted: Auto-Submitted: auto-replied"). Bounces carry a `Bounce` (who bounced, RFC
3463 status, hard or not, the original's Message-IDs); complaints carry a `Bounce` without
recipients; bounces, complaints and read receipts carry the `OriginalMessage` they are about,
so the caller can find the ticket of the mail concerned. None of them ever opens a ticket.

The rules run in the order of `RULES`; the first that matches decides. Reports come before
header rules because MTAs mark their bounces `Auto-Submitted: auto-replied` and lists relay
bounces with `Precedence: bulk`: the more specific reading wins. Only `human` mail may be
answered automatically (RFC 3834 §2: never answer automatic mail).

Guarantees: pure (no I/O), bounded work, never raises. A rule that fails on a strange mail is
skipped and the others still run; if none of them decided, the mail is treated as human but
not answered (rule `classifier-error`): an unanswered person is a smaller harm than a loop.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from email.message import Message

from gateway.classify.bounces import Bounce, BouncedRecipient
from gateway.classify.loop_mail import AddressOwner, Found, Mail, MailKind
from gateway.classify.loop_rules import (
    rule_arf,
    rule_auto_response_suppress,
    rule_auto_submitted,
    rule_bounce_heuristic,
    rule_dsn,
    rule_list_id,
    rule_mailer_daemon,
    rule_no_reply,
    rule_null_sender,
    rule_out_of_office,
    rule_own_address,
    rule_precedence,
    rule_read_receipt,
)
from gateway.mail.message import ParsedMessage
from gateway.mail.originals import OriginalMessage

__all__ = ["RULES", "AddressOwner", "Bounce", "BouncedRecipient", "Classification", "MailKind",
           "OriginalMessage", "classify_message", "classify_parsed"]


@dataclass(frozen=True)
class Classification:
    kind: MailKind
    may_auto_answer: bool          # True only for human mail
    rule: str                      # kebab-case name of the deciding rule; "human" if none
    reason: str                    # "<rule>: <what was seen>", one line, for the log
    bounce: Bounce | None = None   # BOUNCE, and COMPLAINT (then without recipients)
    original: OriginalMessage | None = None   # the mail a bounce/complaint/receipt is about

    def __post_init__(self) -> None:
        if self.may_auto_answer and self.kind is not MailKind.HUMAN:
            raise ValueError("only human mail may be answered automatically")


RULES = (
    ("own-address", rule_own_address),          # our own mail came back: a loop
    ("arf", rule_arf),                          # RFC 5965 complaint
    ("dsn", rule_dsn),                          # RFC 3464 delivery status notification
    ("read-receipt", rule_read_receipt),        # RFC 8098 disposition notification
    ("bounce-heuristic", rule_bounce_heuristic),  # an MTA's bounce in prose
    ("auto-submitted", rule_auto_submitted),    # RFC 3834
    ("out-of-office", rule_out_of_office),      # X-Autoreply, "Automatic reply:", ...
    ("auto-response-suppress", rule_auto_response_suppress),
    ("precedence", rule_precedence),            # bulk / junk / list
    ("list-id", rule_list_id),                  # RFC 2369/2919 and list servers
    ("null-sender", rule_null_sender),          # MAIL FROM:<>
    ("mailer-daemon", rule_mailer_daemon),      # MAILER-DAEMON@, postmaster@
    ("no-reply", rule_no_reply),                # noreply@, do-not-reply@
)


def classify_message(headers: Mapping[str, str], mime: Message | None, body_text: str, *,
                     envelope_from: str | None,
                     our_addresses: Collection[str] | AddressOwner,
                     our_domains: Collection[str] = ()) -> Classification:
    """Classify one mail; see the module docstring. Never raises."""
    failed: list[str] = []
    try:
        mail = Mail(headers, mime, body_text, envelope_from=envelope_from,
                    our_addresses=our_addresses, our_domains=our_domains)
    except Exception as exc:   # unusable input (not a mapping...): be safe, do not answer
        return _error_result([f"reading the mail ({exc.__class__.__name__})"])
    for name, rule in RULES:
        try:
            found: Found | None = rule(mail)
        except Exception as exc:   # one rule tripping over a strange mail must not stop the rest
            failed.append(f"{name} ({exc.__class__.__name__})")
            continue
        if found is not None:
            return Classification(found.kind, False, name, f"{name}: {found.detail}",
                                  found.bounce, found.original)
    if failed:
        return _error_result(failed)
    return Classification(MailKind.HUMAN, True, "human", "human: no sign of automatic mail")


def _error_result(failed: list[str]) -> Classification:
    return Classification(MailKind.HUMAN, False, "classifier-error",
                          f"classifier-error: {', '.join(failed)} failed on this mail; "
                          "treated as human but not answered")


def classify_parsed(parsed: ParsedMessage, *, envelope_from: str | None,
                    our_addresses: Collection[str] | AddressOwner,
                    our_domains: Collection[str] = ()) -> Classification:
    """`classify_message` for a `ParsedMessage` (its headers, tree and readable text)."""
    return classify_message(parsed.headers, parsed.mime, parsed.body_text,
                            envelope_from=envelope_from, our_addresses=our_addresses,
                            our_domains=our_domains)
