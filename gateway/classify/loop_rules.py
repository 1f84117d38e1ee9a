"""The named rules that recognise automatic mail.

In: a `Mail` (`loop_mail`: headers, MIME tree, text, envelope sender and our addresses,
normalised once).
Out: each rule returns a `Found` (kind + what it saw) or None. The order the rules run in,
and the public result, live in `loops`. Every rule is a pure function named after its
kebab-case name (`rule_null_sender` is "null-sender"). A rule may raise on a mail nobody
foresaw; `loops.classify_message` catches that, so rules stay short and direct.
"""

from __future__ import annotations

import re
from dataclasses import replace

from gateway.classify.bounce_text import has_status_code, looks_like_bounce, read_bounce_text
from gateway.classify.bounces import (
    Bounce,
    BouncedRecipient,
    read_delivery_status,
    read_report_fields,
)
from gateway.classify.loop_mail import NULL_SENDER, Found, Mail, MailKind
from gateway.classify.out_of_office import out_of_office_subject
from gateway.mail.addresses import addresses_in
from gateway.mail.mime_text import header_items
from gateway.mail.originals import OriginalMessage, merge_originals

# -- the rules ------------------------------------------------------------------------------

def rule_own_address(mail: Mail) -> Found | None:
    """Mail from one of our own addresses (or carrying our X-Loop) is a loop."""
    for name, label in (("from", "From"), ("sender", "Sender"), ("x-loop", "X-Loop")):
        for address in addresses_in([mail.header(name)]):
            if mail.is_ours(address):
                return Found(MailKind.LOOP, f"{label} {address} is our own address")
    if mail.envelope and mail.is_ours(mail.envelope):
        return Found(MailKind.LOOP, f"{mail.envelope_source} {mail.envelope} is our own address")
    return None


# reports: complaints, bounces, receipts

def rule_arf(mail: Mail) -> Found | None:
    """An abuse/feedback report, RFC 5965 (`multipart/report; report-type=feedback-report`)."""
    report = _report(mail, "message/feedback-report", "feedback-report")
    if report is None:
        return None
    fields, original = report
    kind = fields.get("feedback-type", "") or "unknown"
    return Found(MailKind.COMPLAINT, f"feedback report (RFC 5965), Feedback-Type: {kind}"
                 + _about(original), Bounce((), original), original)


def rule_dsn(mail: Mail) -> Found | None:
    """A delivery status notification, RFC 3464 (`message/delivery-status`)."""
    is_report = mail.report_type == "delivery-status"
    trusted = is_report or mail.from_mail_system
    status = read_delivery_status(mail.mime, text_fallback=trusted, nested=trusted)
    if status is None and not is_report:
        return None
    original = mail.original()
    if status is not None and status.inner is not None:   # the innermost original first
        inner = Mail(dict(header_items(status.inner)), status.inner, "", envelope_from=None,
                     our_addresses=(), our_domains=mail.our_domains)
        original = merge_originals([inner.original(), original], (), mail.our_domains)
    recipients = list(status.recipients) if status is not None else []
    if status is not None and status.named and not recipients:
        return Found(MailKind.AUTOMATIC, "delivery status notification (RFC 3464): delivered,"
                     " nothing failed" + _about(original), None, original)
    if not recipients:      # the status part names no address: read the MTA's prose instead
        recipients = prose_recipients(mail, original)
        if status is not None and len(status.unnamed) == 1:   # but trust the DSN's status
            recipients = [replace(r, status=status.unnamed[0].status or r.status,
                                  action=status.unnamed[0].action) for r in recipients]
    bounce = Bounce(tuple(recipients), original)
    return Found(MailKind.BOUNCE, "delivery status notification (RFC 3464)" + _summary(bounce),
                 bounce, original)


def rule_read_receipt(mail: Mail) -> Found | None:
    """A read receipt (message disposition notification, RFC 8098)."""
    report = _report(mail, "message/disposition-notification", "disposition-notification")
    if report is None:
        return None
    fields, original = report
    disposition = fields.get("disposition", "") or "unknown"
    return Found(MailKind.AUTOMATIC, f"read receipt (RFC 8098), Disposition: {disposition}"
                 + _about(original), None, original)


def rule_bounce_heuristic(mail: Mail) -> Found | None:
    """A bounce without RFC 3464 fields: sent from the null sender or a mail daemon (or with
    `X-Failed-Recipients`) and reading like a bounce (subject, wording, status codes)."""
    failed = mail.header("x-failed-recipients")
    sender = ("null sender" if mail.envelope == NULL_SENDER else
              f"sender {mail.daemon_sender}" if mail.daemon_sender else
              "X-Failed-Recipients" if failed else "")
    if not sender or out_of_office_subject(mail.subject) == "strong":
        return None
    evidence = looks_like_bounce(mail.subject, mail.texts, failed)
    if not evidence:
        return None
    if (mail.envelope_is_a_person and not failed and not evidence.startswith("subject")
            and not has_status_code(mail.texts)):
        return None     # postmaster@ writing by hand about delivery problems: a person
    original = mail.original()
    bounce = Bounce(tuple(prose_recipients(mail, original)), original)
    return Found(MailKind.BOUNCE, f"non-standard bounce ({sender}, {evidence})"
                 + _summary(bounce), bounce, original)


def prose_recipients(mail: Mail, original: OriginalMessage) -> list[BouncedRecipient]:
    """The recipients a bounce's prose names; never the original's sender (us) nor the
    bounce's own From/To."""
    not_recipients = set(original.from_addresses)
    for name in ("from", "to", "cc", "sender", "reply-to", "return-path"):
        not_recipients.update(addresses_in([mail.header(name)]))
    if mail.envelope:
        not_recipients.add(mail.envelope)
    return read_bounce_text(mail.texts, not_recipients=not_recipients, subject=mail.subject,
                            failed_header=mail.header("x-failed-recipients"))


# headers

def rule_auto_submitted(mail: Mail) -> Found | None:
    """`Auto-Submitted` other than `no` (RFC 3834 §5): auto-replied is an auto-reply,
    auto-generated/auto-notified (and extensions) other machine mail."""
    raw = mail.header("auto-submitted")
    value = re.sub(r"\([^)]*\)", "", raw).split(";", 1)[0].strip().lower()
    if not value or value == "no":
        return None
    if value == "auto-replied" or out_of_office_subject(mail.subject):
        return Found(MailKind.AUTO_REPLY, f"Auto-Submitted: {raw}")
    return Found(MailKind.AUTOMATIC, f"Auto-Submitted: {raw}")


AUTOREPLY_HEADERS = {"x-autoreply": "X-Autoreply", "x-autorespond": "X-Autorespond",
                     "x-autoresponder": "X-Autoresponder"}


def rule_out_of_office(mail: Mail) -> Found | None:
    """Out-of-office and other auto-replies without `Auto-Submitted`: X-Autoreply-style
    headers, `Precedence: auto_reply`, a subject prefix mail programs write ("Automatic
    reply:", "Automatische Antwort:"), or an absence subject ("Out of Office", "Urlaub")
    together with a header only software sets. A person writing "out of office" stays human."""
    for name, label in AUTOREPLY_HEADERS.items():
        value = mail.header(name)
        if name in mail.headers and value.lower() not in ("no", "false", "0"):
            return Found(MailKind.AUTO_REPLY, f"{label}: {value}")
    if precedence(mail) == "auto_reply":
        return Found(MailKind.AUTO_REPLY, f"Precedence: {mail.header('precedence')}")
    strength = out_of_office_subject(mail.subject)
    if strength == "strong":
        return Found(MailKind.AUTO_REPLY, f"subject {mail.subject[:60]!r}")
    if strength == "weak":
        signal = software_signal(mail)
        if signal:
            return Found(MailKind.AUTO_REPLY, f"subject {mail.subject[:60]!r} and {signal}")
    return None


def rule_auto_response_suppress(mail: Mail) -> Found | None:
    """`X-Auto-Response-Suppress` (Microsoft, MS-OXCMAIL 2.2.3.2.20) other than None: the
    sender asks not to be auto-answered; in practice only software sets it."""
    value = mail.header("x-auto-response-suppress")
    tokens = {t.strip().lower() for t in value.split(",") if t.strip()}
    if not tokens or tokens == {"none"}:
        return None
    return Found(MailKind.AUTOMATIC, f"X-Auto-Response-Suppress: {value}")


def rule_precedence(mail: Mail) -> Found | None:
    """`Precedence: bulk | junk | list` (RFC 3834 §3.1.8, RFC 2076)."""
    if precedence(mail) in ("bulk", "junk", "list"):
        return Found(MailKind.LIST, f"Precedence: {mail.header('precedence')}")
    return None


LIST_HEADERS = {"list-id": "List-Id", "list-unsubscribe": "List-Unsubscribe",
                "list-post": "List-Post", "list-help": "List-Help",
                "list-subscribe": "List-Subscribe", "list-owner": "List-Owner",
                "list-archive": "List-Archive", "mailing-list": "Mailing-List",
                "x-mailman-version": "X-Mailman-Version", "x-beenthere": "X-BeenThere",
                "x-mlserver": "X-MLServer", "x-ml-name": "X-ML-Name"}
# The reverse-paths list servers use: owner-LIST (LISTSERV, Majordomo), LIST-bounces[+...]
# (Mailman), LIST-request (SmartList). Only the envelope is checked: "product-owner@" in a
# From header may well be a person.
LIST_SENDER = re.compile(r"^(?:owner-.+|.+-(?:owner|request|bounces)(?:\+.*)?)$", re.I)


def rule_list_id(mail: Mail) -> Found | None:
    """Mailing-list mail: `List-Id` and the other RFC 2369/2919 headers, list managers' own
    headers (Mailman, fml, ezmlm), or a list server's envelope sender (owner-x@)."""
    for name, label in LIST_HEADERS.items():
        if name in mail.headers:
            return Found(MailKind.LIST, f"{label}: {mail.header(name)[:80]}")
    if mail.envelope and LIST_SENDER.match(mail.envelope.rpartition("@")[0]):
        return Found(MailKind.LIST, f"{mail.envelope_source} {mail.envelope} is a list "
                     "server's address")
    return None


def rule_null_sender(mail: Mail) -> Found | None:
    """The null reverse-path `<>`: only automatic mail is sent with it (RFC 5321 §4.5.5,
    RFC 3834 §3.3)."""
    if mail.envelope == NULL_SENDER:
        return Found(MailKind.AUTOMATIC, f"{mail.envelope_source} <> (null sender)")
    return None


def rule_mailer_daemon(mail: Mail) -> Found | None:
    """Sent by MAILER-DAEMON or postmaster (any case): a mail system, not a person."""
    if mail.daemon_sender:
        return Found(MailKind.AUTOMATIC, f"sender {mail.daemon_sender}")
    return None


NO_REPLY_LOCAL = re.compile(r"^(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|donotreply|"
                            r"no[-_.]?reply[-_.+].*|bounces?(?:[-_+].*)?)$", re.I)


def rule_no_reply(mail: Mail) -> Found | None:
    """A `noreply@`/`do-not-reply@` sender: software that says it reads no answers."""
    for label, value in (("From", mail.header("from")), ("Reply-To", mail.header("reply-to"))):
        for address in addresses_in([value]):
            if NO_REPLY_LOCAL.match(address.rpartition("@")[0]):
                return Found(MailKind.AUTOMATIC, f"{label} {address} takes no replies")
    return None


# -- helpers --------------------------------------------------------------------------------

def _report(mail: Mail, part_type: str, report_type: str,
            ) -> tuple[dict[str, str], OriginalMessage] | None:
    """A report is known by its fields part (`part_type`) or by the multipart/report's
    report-type (RFC 6522): its fields ({} if none) and the original it is about."""
    fields = read_report_fields(mail.mime, (part_type,))
    if not fields and mail.report_type != report_type:
        return None
    return fields, mail.original(fields)


def precedence(mail: Mail) -> str:
    words = mail.header("precedence").lower().split()
    return words[0].strip(";,") if words else ""


def software_signal(mail: Mail) -> str:
    """A header that mail software sets and people do not: the second signal a weak
    out-of-office subject needs ("" if there is none)."""
    if mail.envelope == NULL_SENDER:
        return f"{mail.envelope_source} <>"
    if precedence(mail) in ("bulk", "junk", "list"):
        return f"Precedence: {mail.header('precedence')}"
    for name, label in (("x-auto-response-suppress", "X-Auto-Response-Suppress"),
                        ("x-ms-exchange-inbox-rules-loop", "X-MS-Exchange-Inbox-Rules-Loop"),
                        ("x-ms-exchange-generated-message-source",
                         "X-MS-Exchange-Generated-Message-Source")):
        value = mail.header(name)
        if value and value.lower() != "none":
            return f"{label}: {value}"
    return ""


def _summary(bounce: Bounce) -> str:
    if not bounce.recipients:
        return ", no recipient found" + _about(bounce.original)
    shown = ", ".join(f"{r.address} {r.action}" + (f" {r.status}" if r.status else "")
                      for r in bounce.recipients[:3])
    more = f" and {len(bounce.recipients) - 3} more" if len(bounce.recipients) > 3 else ""
    return f": {shown}{more}" + _about(bounce.original)


def _about(original: OriginalMessage) -> str:
    return f"; about {original.message_ids[0]}" if original.message_ids else ""
